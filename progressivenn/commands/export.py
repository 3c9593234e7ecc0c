"""``pnn export``: fold a RUN into a bundle (integer tables for every k, test images)."""

from __future__ import annotations

NAME = "export"
HELP = "fold a trained, BN-retrained RUN into a bundle (manifest.json + arrays.npz)"


def add_arguments(p):
    p.add_argument("run", metavar="RUN", help="run folder (after `pnn retrain-bn`)")
    p.add_argument("--out", required=True, metavar="BUNDLE", help="bundle folder to write")
    p.add_argument("--mbits", type=int, default=18, help="signed width of M (default 18)")
    p.add_argument("--test-images", type=int, default=None,
                   help="test images to include (default: all for digits, else the first 1000)")


def bundle_for_run(run_dir, *, mbits: int = 18, test_images=None):
    """Fold the RUN into an in-memory Bundle (shared by export and eval)."""
    from progressivenn.model.evaluate import default_limit
    from progressivenn.model.fold import fold_network
    from progressivenn.model.runs import dataset_for, load_retrained, load_trained, read_config

    cfg = read_config(run_dir)
    net = load_retrained(run_dir)
    fixed = load_trained(run_dir)
    ds = dataset_for(cfg)
    limit = default_limit(cfg["dataset"]) if test_images is None else test_images
    if limit is not None and limit < 1:
        raise ValueError(f"--test-images must be >= 1, not {limit}")
    tx, ty = ds.test_x[:limit], ds.test_y[:limit]
    meta = {"run": str(run_dir), "config": cfg,
            "test_images": "all test images" if limit is None or limit >= len(ds.test_x)
            else f"the first {len(tx)} test images"}
    bundle = fold_network(net, fixed_net=fixed, mbits=mbits, test_x=tx, test_y=ty,
                          dataset=cfg["dataset"], meta=meta)
    return bundle, net


def run(args) -> int:
    from progressivenn.model.bundle import save_bundle
    from progressivenn.model.runs import check_run

    run_dir = check_run(args.run)
    bundle, _ = bundle_for_run(run_dir, mbits=args.mbits, test_images=args.test_images)
    path = save_bundle(bundle, args.out)
    nlay = len(bundle.compute_layers())
    print(f"exported {bundle.dataset}: {len(bundle.layers)} layers ({nlay} conv/linear), "
          f"N={bundle.nbits} A={bundle.abits} M={bundle.mbits} bits, "
          f"{len(bundle.test_x)} test images -> {path}")
    return 0
