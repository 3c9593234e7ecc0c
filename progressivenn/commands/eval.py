"""``pnn eval``: accuracy per k of a RUN (float, golden with/without BN retraining, agreement) or of
a BUNDLE (integer golden model, on its own test images or on a data set's test split)."""

from __future__ import annotations

from .threads import add_threads_argument, set_threads

NAME = "eval"
HELP = ("accuracy per k of a RUN (integer golden model with/without BN retraining, fake-quant "
        "agreement) or of a BUNDLE (golden model on its test images or on --dataset)")


def add_arguments(p):
    p.add_argument("path", metavar="RUN|BUNDLE",
                   help="run folder (after `pnn retrain-bn`) or bundle folder (`pnn export`)")
    p.add_argument("--json", action="store_true", help="print the results as JSON (fractions)")
    p.add_argument("--test-images", type=int, default=None,
                   help="test images used (default: a run's digits all, else the first 1000; "
                        "a bundle's all it carries, or all of --dataset's test split)")
    p.add_argument("--dataset", default=None,
                   help="BUNDLE only: evaluate on this data set's test split (digits, mnist, "
                        "cifar10, cifar100) instead of the images the bundle carries")
    p.add_argument("--data-dir", default=None, help="folder with the --dataset files")
    p.add_argument("--tables", choices=("retrained", "fixed"), default="retrained",
                   help="BUNDLE only: BN tables, per k or the k=N tables at every k")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="also draw accuracy vs k into this PNG file")
    p.add_argument("--method", choices=("direct", "planes"), default="direct",
                   help="RUN only: golden accumulation, direct (fast) or plane by plane "
                        "(identical results)")
    add_threads_argument(p)


def _is_bundle(path) -> bool:
    from pathlib import Path

    return (Path(path) / "manifest.json").is_file()


def evaluate_path(args) -> dict:
    """The evaluation ``pnn eval`` prints, as a dict (``kind``: ``run`` or ``bundle``)."""
    from .. import api

    if args.test_images is not None and args.test_images < 1:
        raise ValueError(f"--test-images must be >= 1, not {args.test_images}")
    if _is_bundle(args.path):
        bundle = api.load_bundle(args.path)
        images = labels = None
        source = "the bundle's test images"
        if args.dataset:
            from ..model.data import load_dataset

            ds = load_dataset(args.dataset, args.data_dir, abits=bundle.abits)
            if tuple(ds.input_shape) != tuple(bundle.input_shape):
                raise ValueError(f"--dataset {args.dataset} has {tuple(ds.input_shape)} images, "
                                 f"the bundle takes {tuple(bundle.input_shape)}")
            images, labels = ds.test_x, ds.test_y
            source = f"the {args.dataset} test split"
        elif args.data_dir:
            raise ValueError("--data-dir needs --dataset")
        if args.test_images is not None:
            x = bundle.test_x if images is None else images
            y = bundle.test_y if labels is None else labels
            images, labels = x[:args.test_images], y[:args.test_images]
        res = api.evaluate_bundle(bundle, images=images, labels=labels, tables=args.tables)
        res.update(kind="bundle", path=str(args.path), images_from=source)
        return res
    if args.dataset or args.data_dir:
        raise ValueError("--dataset/--data-dir apply to a BUNDLE; a RUN evaluates on its own "
                         "data set (config.json)")
    from ..model.runs import write_json

    run = api.load_run(args.path)
    res = run.evaluate(test_images=args.test_images, method=args.method)
    write_json(run.path / "eval.json", res)
    res.update(kind="run", path=str(args.path))
    return res


def print_table(res: dict) -> None:
    """Percent table (the JSON holds fractions)."""
    acc = res["accuracy"]
    ks = sorted((k for k in acc if k.isdigit()), key=int)
    head = (f"{res['dataset']}: {res['n_test']} test images, N={res['nbits']}, A={res['abits']}")
    if res["kind"] == "bundle":
        print(f"{head} ({res['images_from']}; {res['tables']} BN tables); integer golden model")
        print(f"{'k':>3} {'accuracy %':>11}")
        for k in ks:
            print(f"{k:>3} {100 * acc[k]:>11.2f}")
        return
    print(f"{head}; float (unquantized) accuracy {100 * acc['float']:.2f}%")
    print(f"{'k':>3} {'golden %':>9} {'no BN retrain %':>16} {'fake-quant %':>13} "
          f"{'agreement %':>12}")
    for k in ks:
        print(f"{k:>3} {100 * acc[k]:>9.2f} {100 * res['accuracy_no_bn_retrain'][k]:>16.2f} "
              f"{100 * res['accuracy_fakequant'][k]:>13.2f} {100 * res['agreement'][k]:>12.2f}")


def run(args) -> int:
    import json

    set_threads(args.threads)
    res = evaluate_path(args)
    if args.plot:
        from ..report import plot_accuracy

        plot_accuracy(res, args.plot)
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print_table(res)
        if args.plot:
            print(f"plot: {args.plot}")
    return 0
