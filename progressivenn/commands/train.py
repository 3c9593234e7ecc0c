"""``pnn train``: quantization-aware training of a reference network from scratch."""

from __future__ import annotations

from .threads import add_threads_argument, set_threads

NAME = "train"
HELP = "train a BWB network from scratch (QAT at k=N, or --any-k) into a RUN folder"


def add_arguments(p):
    p.add_argument("--dataset", default="digits",
                   help="digits (bundled, default), mnist, cifar10, cifar100")
    p.add_argument("--arch", default=None,
                   help="network: the dataset's reference net (default), or resnet8, resnet20, "
                        "resnet18 (residual BWB nets; docs/paper_scale.md)")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"),
                   help="where to train (default cpu; auto: CUDA when a GPU is present)")
    p.add_argument("--amp", default="auto", choices=("auto", "on", "off"),
                   help="float16 mixed precision (auto: on CUDA only; never on the CPU)")
    p.add_argument("--augment", default="auto", choices=("auto", "on", "off"),
                   help="random flips + crops (auto: on for CIFAR)")
    p.add_argument("--test-limit", type=int, default=None,
                   help="test images for the per-epoch accuracy (default: all)")
    p.add_argument("--data-dir", default=None, help="folder with the MNIST idx / CIFAR-10/100 python "
                                                    "files (never downloaded)")
    p.add_argument("--schedule", default="sandwich", choices=("sandwich", "uniform"),
                   help="--any-k planes per step: sandwich (k=N on the labels, k=1 and one k in "
                        "2..N-1 distilled from it; default) or uniform (one random k, labels only)")
    p.add_argument("--distill", type=float, default=0.5,
                   help="--any-k sandwich: weight of distillation from k=N for the lower k (0..1, "
                        "default 0.5; the rest is the labels)")
    p.add_argument("--label-smoothing", type=float, default=None,
                   help="label smoothing of the cross-entropy on the labels, in [0, 1) (default: "
                        "0.1 with --any-k, 0 at k=N)")
    p.add_argument("--any-k", action="store_true",
                   help="sample k in 1..N every step and train BN table k (default: train at k=N)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs (default: digits 30 (--any-k 80), mnist 2, cifar10/100 10)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the initial weights and the batch order")
    p.add_argument("--nbits", type=int, default=8, help="weight planes N (1..16, default 8)")
    p.add_argument("--abits", type=int, default=8, help="activation bits A (1..16, default 8)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (cosine decay)")
    p.add_argument("--limit", type=int, default=None, help="use only the first LIMIT training images")
    add_threads_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, metavar="RUN", help="run folder to create")
    p.add_argument("--force", action="store_true",
                   help="replace an existing output folder of the same kind (never another kind's)")


def run(args) -> int:
    import torch

    from progressivenn.model.bwb import check_bits
    from progressivenn.model.data import DATASETS, load_dataset
    from progressivenn.model.nets import ARCHS, NETS, build_net
    from progressivenn.model.runs import CONFIG, MODEL, write_json
    from progressivenn.model.train import default_epochs, pick_device, train
    from pathlib import Path

    if args.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {args.dataset!r}; choose one of {', '.join(DATASETS)}")
    check_bits("--nbits", args.nbits)
    check_bits("--abits", args.abits)
    epochs = default_epochs(args.dataset, args.any_k) if args.epochs is None else args.epochs
    if not 0 <= args.distill <= 1:
        raise ValueError(f"--distill must be in [0, 1], not {args.distill}")
    if epochs < 1:
        raise ValueError(f"--epochs must be >= 1, not {epochs}")
    if args.label_smoothing is not None and not 0 <= args.label_smoothing < 1:
        raise ValueError(f"--label-smoothing must be in [0, 1), not {args.label_smoothing}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, not {args.batch_size}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, not {args.limit}")
    set_threads(args.threads)
    from progressivenn.outdir import check_target, output_dir

    out = Path(args.out)
    check_target(out, "run", force=args.force)     # before hours of training, not after
    ds = load_dataset(args.dataset, args.data_dir, abits=args.abits)
    torch.manual_seed(args.seed)  # the initial weights too
    arch = args.arch or (args.dataset if args.dataset in NETS else "resnet18")
    if arch not in ARCHS:
        raise ValueError(f"unknown --arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if arch in NETS and arch != args.dataset:
        raise ValueError(f"--arch {arch} is the {arch} reference net; for --dataset "
                         f"{args.dataset} use {args.dataset if args.dataset in NETS else 'a resnet'}")
    if args.test_limit is not None and args.test_limit < 1:
        raise ValueError(f"--test-limit must be >= 1, not {args.test_limit}")
    device = pick_device(args.device)
    net = build_net(arch, nbits=args.nbits, abits=args.abits, input_scale=ds.input_scale,
                    input_shape=ds.input_shape, num_classes=ds.num_classes)
    amp = None if args.amp == "auto" else args.amp == "on"
    aug = args.dataset.startswith("cifar") if args.augment == "auto" else args.augment == "on"
    log = train(net, ds, epochs=epochs, any_k=args.any_k, seed=args.seed,
                schedule=args.schedule, distill=args.distill, label_smoothing=args.label_smoothing,
                batch_size=args.batch_size, lr=args.lr, limit=args.limit, progress=not args.quiet,
                device=str(device), amp=amp, augment_images=aug, test_limit=args.test_limit)
    cfg = {"dataset": args.dataset, "arch": arch,
           "data_dir": str(Path(args.data_dir).resolve()) if args.data_dir else None,
           "nbits": args.nbits, "abits": args.abits, "input_scale": ds.input_scale,
           "input_shape": list(ds.input_shape), "num_classes": ds.num_classes,
           "any_k": args.any_k, "epochs": epochs,
           **({"schedule": args.schedule, "distill": args.distill} if args.any_k else {}),
           "label_smoothing": log["label_smoothing"],
           "seed": args.seed, "limit": args.limit}
    with output_dir(out, "run", force=args.force, command="pnn train") as tmp:
        torch.save(net.state_dict(), tmp / MODEL)
        write_json(tmp / CONFIG, cfg)
        write_json(tmp / "train.json", log)
    last = log["epochs"][-1]
    acc = next(v for key, v in last.items() if key.startswith("test_acc"))
    print(f"trained {arch} on {args.dataset} ({'any-k' if args.any_k else f'k={args.nbits}'}) "
          f"for {epochs} epochs on {log['device']}{' (amp)' if log['amp'] else ''} in "
          f"{log['seconds']:.1f} s: loss {last['loss']:.4f}, fake-quant test accuracy "
          f"at k={args.nbits} {acc:.4f} -> {out}")
    return 0
