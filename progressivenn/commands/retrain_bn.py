"""``pnn retrain-bn``: per-k BN retraining of a trained RUN (weights frozen)."""

from __future__ import annotations

import argparse

from .threads import add_threads_argument, set_threads

NAME = "retrain-bn"
HELP = ("retrain one table of per-k parameters per k (weights frozen): BN statistics re-estimated, "
        "gamma/beta and per-k output scales trained against the k=N network, the best table per k "
        "kept on held-out training images")


def add_arguments(p):
    p.add_argument("run", metavar="RUN", help="run folder written by `pnn train`")
    p.add_argument("--plain", action="store_true",
                   help="only re-estimate the BN statistics per k (the paper's BN retraining; no "
                        "training of gamma/beta, no held-out choice)")
    p.add_argument("--no-select", action="store_true",
                   help="keep the trained table at every k, even where the held-out images prefer "
                        "the fixed one")
    p.add_argument("--steps", type=int, default=300,
                   help="Adam steps per k training gamma/beta and the per-k affines (default 300)")
    p.add_argument("--lr", type=float, default=1e-2, help="their learning rate (default 0.01)")
    p.add_argument("--distill", type=float, default=0.7,
                   help="weight of distillation from the k=N network vs the labels (0..1, "
                        "default 0.7)")
    p.add_argument("--holdout", type=float, default=0.2,
                   help="share of the training images held out to choose each k's table (default "
                        "0.2; never the test set)")
    p.add_argument("--finetune", action="store_true", help=argparse.SUPPRESS)  # the default now
    p.add_argument("--max-samples", type=int, default=10000,
                   help="training images used (random seeded subset; default 10000)")
    add_threads_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    import torch

    from progressivenn.model.bn_retrain import retrain_bn
    from progressivenn.model.runs import (RETRAINED, check_run, dataset_for, load_trained,
                                          read_config, write_json)

    run_dir = check_run(args.run)
    if args.steps < 0:
        raise ValueError(f"--steps must be >= 0, not {args.steps}")
    if not 0 <= args.distill <= 1:
        raise ValueError(f"--distill must be in [0, 1], not {args.distill}")
    if not 0 <= args.holdout < 1:
        raise ValueError(f"--holdout must be in [0, 1), not {args.holdout}")
    if not args.lr > 0:
        raise ValueError(f"--lr must be > 0, not {args.lr}")
    if args.max_samples < 1:
        raise ValueError(f"--max-samples must be >= 1, not {args.max_samples}")
    set_threads(args.threads)
    cfg = read_config(run_dir)
    net = load_trained(run_dir)
    ds = dataset_for(cfg)
    log = retrain_bn(net, ds, tune=not args.plain, select=not (args.plain or args.no_select),
                     steps=args.steps, lr=args.lr, distill=args.distill, holdout=args.holdout,
                     max_samples=args.max_samples, seed=cfg.get("seed", 0),
                     progress=not args.quiet)
    # each file replaced atomically (temporary file, then rename): an interrupt leaves the old
    # retrained network or the new one; reports derived from the old one are removed first
    (run_dir / "eval.json").unlink(missing_ok=True)
    tmp = run_dir / f".{RETRAINED}.tmp"
    torch.save(net.state_dict(), tmp)
    tmp.replace(run_dir / RETRAINED)
    write_json(run_dir / ".retrain_bn.json.tmp", log)
    (run_dir / ".retrain_bn.json.tmp").replace(run_dir / "retrain_bn.json")
    kept = " ".join(f"{k}:{e['kept']}" for k, e in log["per_k"].items())
    print(f"retrained the per-k tables for k=1..{cfg['nbits']} on {log['samples']} images"
          f"{' (statistics only)' if args.plain else ''} in {log['seconds']:.1f} s; kept {kept}"
          f" -> {run_dir / RETRAINED}")
    return 0
