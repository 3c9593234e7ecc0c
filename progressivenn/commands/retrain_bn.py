"""``pnn retrain-bn``: per-k BN retraining of a trained RUN (weights frozen)."""

from __future__ import annotations

NAME = "retrain-bn"
HELP = "re-estimate one BN table per k (weights frozen); --finetune also trains gamma/beta"


def add_arguments(p):
    p.add_argument("run", metavar="RUN", help="run folder written by `pnn train`")
    p.add_argument("--finetune", action="store_true",
                   help="briefly train each k's gamma/beta (Adam, 1 epoch) before re-estimating")
    p.add_argument("--finetune-epochs", type=int, default=1)
    p.add_argument("--max-samples", type=int, default=10000,
                   help="training images used (random seeded subset; default 10000)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: these small nets gain nothing from more and "
                        "oversubscribed cores slow torch down badly; 0: torch's default)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    import torch

    from progressivenn.model.bn_retrain import retrain_bn
    from progressivenn.model.runs import (RETRAINED, check_run, dataset_for, load_trained,
                                          read_config, write_json)

    run_dir = check_run(args.run)
    if args.finetune_epochs < 1:
        raise ValueError(f"--finetune-epochs must be >= 1, not {args.finetune_epochs}")
    if args.max_samples < 1:
        raise ValueError(f"--max-samples must be >= 1, not {args.max_samples}")
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0, not {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = read_config(run_dir)
    net = load_trained(run_dir)
    ds = dataset_for(cfg)
    log = retrain_bn(net, ds, finetune=args.finetune, finetune_epochs=args.finetune_epochs,
                     max_samples=args.max_samples, seed=cfg.get("seed", 0),
                     progress=not args.quiet)
    torch.save(net.state_dict(), run_dir / RETRAINED)
    write_json(run_dir / "retrain_bn.json", log)
    print(f"retrained BN tables for k=1..{cfg['nbits']} on {log['samples']} images"
          f"{' (with gamma/beta fine-tuning)' if args.finetune else ''} in {log['seconds']:.1f} s"
          f" -> {run_dir / RETRAINED}")
    return 0
