"""``pnn export``: fold a RUN into a bundle (integer tables for every k, test images)."""

from __future__ import annotations

NAME = "export"
HELP = "fold a trained, BN-retrained RUN into a bundle (manifest.json + arrays.npz)"


def add_arguments(p):
    p.add_argument("run", metavar="RUN", help="run folder (after `pnn retrain-bn`)")
    p.add_argument("--out", required=True, metavar="BUNDLE", help="bundle folder to write")
    p.add_argument("--force", action="store_true",
                   help="replace an existing output folder of the same kind (never another kind's)")
    p.add_argument("--mbits", type=int, default=18, help="signed width of M (default 18)")
    p.add_argument("--test-images", type=int, default=None,
                   help="test images to include (default: all for digits, else the first 1000)")


def run(args) -> int:
    from progressivenn.api import load_run
    from progressivenn.outdir import check_target

    check_target(args.out, "bundle", force=args.force)        # before reading the run
    # Run.export: refuses another kind's folder, replaces a bundle only with --force, writes into
    # a temporary sibling renamed into place when complete (progressivenn/outdir.py)
    bundle = load_run(args.run).export(args.out, mbits=args.mbits, test_images=args.test_images,
                                       force=args.force, command="pnn export")
    path = args.out
    nlay = len(bundle.compute_layers())
    print(f"exported {bundle.dataset}: {len(bundle.layers)} layers ({nlay} conv/linear), "
          f"N={bundle.nbits} A={bundle.abits} M={bundle.mbits} bits, "
          f"{len(bundle.test_x)} test images -> {path}")
    return 0
