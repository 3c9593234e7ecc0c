"""``pnn sim``: the cocotb regression of the generated Verilog against the golden model."""

from __future__ import annotations

import json
import sys

NAME = "sim"
HELP = ("simulate the generated Verilog under cocotb on a bundle's test images at every k and "
        "compare every layer with the integer golden model")


def parse_bits(text: str, nmax: int = 16) -> list[int]:
    """``"1-8"``, ``"1,2,4,8"`` or ``"3"`` -> sorted list of k in [1, ``nmax``].

    Every number is checked against ``nmax`` before a range is expanded, so ``1-100000000`` is
    a one-line error, never a list of a hundred million entries."""
    if not isinstance(text, str):     # argparse turns ``--bits=--`` into []
        text = " ".join(map(str, text)) or "--"
    form = f"--bits must look like 1-{nmax} or 1,2,4,8 (planes k in 1..{nmax}), not {text[:40]!r}"
    out = set()
    for part in text.split(","):
        ends = part.strip().split("-")
        if len(ends) > 2 or not all(e.strip().isdigit() for e in ends):
            raise ValueError(form)
        lo, hi = int(ends[0]), int(ends[-1])
        if lo < 1 or hi > nmax:
            bad = lo if lo < 1 else hi
            raise ValueError(f"--bits asks for k={bad}, planes k must be in 1..{nmax}"
                             f"{' (the bundle has N=' + str(nmax) + ')' if nmax < 16 else ''}")
        if lo > hi:
            raise ValueError(f"--bits range {part.strip()!r} is empty (write low-high)")
        out.update(range(lo, hi + 1))
    return sorted(out)


def add_engine_arguments(p) -> None:
    """Engine parameters shared by the commands that build an engine."""
    g = p.add_argument_group("engine")
    g.add_argument("--rows", type=int, default=8, help="output channels in parallel (R)")
    g.add_argument("--cols", type=int, default=16, help="reduction lanes (C)")
    g.add_argument("--max-reduction", type=int, default=None,
                   help="largest reduction length (default: the bundle's largest layer)")
    g.add_argument("--pp-lanes", type=int, default=0, metavar="P",
                   help="post-processing lanes, dividing R (default 0: one per row)")
    g.add_argument("--board", default=None, metavar="NAME",
                   help="use this board's engine configuration exactly (docs/boards.md: icebreaker,"
                        " ulx3s-85f, ...) instead of --rows/--cols/--max-reduction/--pp-lanes")


def engine_config(args, bundle):
    """The engine of the ``--rows/--cols/--max-reduction`` options (and ``--adepth/--accdepth``
    where a command has them), its accumulator sized for ``bundle``'s largest reduction."""
    from ..hw.isa import EngineConfig

    board = getattr(args, "board", None)
    if board:
        from ..hw.boards import board_spec
        return board_spec(board).cfg            # ValueError names the known boards
    max_red = args.max_reduction or max(layer.reduction for layer in bundle.compute_layers())
    extra = {name: getattr(args, name) for name in ("adepth", "accdepth")
             if getattr(args, name, None) is not None}
    lanes = getattr(args, "pp_lanes", 0) or 0
    if lanes and args.rows % lanes == 0:        # room for the same table entries as with P = R
        extra["ppdepth"] = EngineConfig().ppdepth * (args.rows // lanes)
    return EngineConfig(rows=args.rows, cols=args.cols, abits=bundle.abits, nbits=bundle.nbits,
                        mbits=bundle.mbits, max_reduction=max_red, pp_lanes=lanes, **extra)


def summarize(report: dict) -> dict:
    """The regression report in the shape ``pnn sim --json`` promises."""
    per_k = report["per_k"]
    ks = sorted(per_k, key=int)
    n = report["images"]
    top = str(max(int(k) for k in ks))
    total_cycles = sum(per_k[k]["cycles"] for k in ks)
    out = {
        "simulator": report["simulator"],
        "images": n,
        "bits": [int(k) for k in ks],
        "mismatches": report["mismatches"],
        "compared_values": report["compared_values"],
        "first_mismatch": report["first_mismatch"],
        "cycles": {k: per_k[k]["cycles"] for k in ks},
        "compute_cycles": {k: per_k[k]["compute_cycles"] for k in ks},
        "ideal_cycles": {k: per_k[k]["ideal_cycles"] for k in ks},
        "stall_cycles": {k: per_k[k]["stall_cycles"] for k in ks},
        "accuracy": {k: per_k[k]["correct"] / n for k in ks},
        "golden_accuracy": {k: per_k[k]["golden_correct"] / n for k in ks},
        "compute_ratio": {k: per_k[k]["compute_cycles"] / per_k[top]["compute_cycles"] for k in ks},
        "cycles_ratio": {k: per_k[k]["cycles"] / per_k[top]["cycles"] for k in ks},
        "utilization": {k: per_k[k]["ideal_cycles"] / per_k[k]["compute_cycles"] for k in ks},
        "failed_tests": report.get("failed_tests", []),
        "build_seconds": report["build_seconds"],
        "sim_seconds": report["sim_seconds"],
        "sim_cycles_per_s": round(total_cycles / report["sim_seconds"], 1),
        "run_dir": report.get("run_dir"),
    }
    return out


def print_table(s: dict, file=sys.stdout) -> None:
    print(f"{s['simulator']}: {s['images']} images, {s['compared_values']} values compared, "
          f"{s['mismatches']} mismatches", file=file)
    print(" k  accuracy  golden  cycles    compute  ideal     compute/k8  ideal k/8", file=file)
    top = max(s["bits"])
    for k in map(str, s["bits"]):
        print(f"{k:>2}  {s['accuracy'][k]:8.3f}  {s['golden_accuracy'][k]:6.3f}  "
              f"{s['cycles'][k]:<8d}  {s['compute_cycles'][k]:<7d}  {s['ideal_cycles'][k]:<8d}  "
              f"{s['compute_ratio'][k]:10.4f}  {int(k) / top:9.4f}", file=file)
    print(f"build {s['build_seconds']} s, simulation {s['sim_seconds']} s, "
          f"{s['sim_cycles_per_s']:.0f} simulated cycles/s", file=file)
    if s["first_mismatch"]:
        print(f"first mismatch: {s['first_mismatch']}", file=file)


def add_arguments(p) -> None:
    p.add_argument("bundle", help="bundle directory written by `pnn export`")
    p.add_argument("--simulator", choices=["icarus", "verilator"], default="icarus")
    p.add_argument("--images", type=int, default=20, help="test images from the bundle")
    p.add_argument("--bits", default=None,
                   help="planes k to run: 1-8, 1,2,4,8, ... (default: 1..N of the bundle)")
    p.add_argument("--tables", choices=["retrained", "fixed"], default="retrained",
                   help="BN tables: retrained per k, or the k=N tables at every k")
    p.add_argument("--stall", type=float, default=0.1,
                   help="probability of a random valid/ready stall per beat")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--build-dir", default="build/sim", help="simulator builds are kept here")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_engine_arguments(p)


def run(args) -> int:
    from ..model.bundle import load_bundle
    from ..sim.runner import run_regression

    from ..sim.driver import check_fits

    bundle = load_bundle(args.bundle)
    bits = parse_bits(f"1-{bundle.nbits}" if args.bits is None else args.bits, bundle.nbits)
    if not 1 <= args.images <= len(bundle.test_x):
        raise ValueError(f"--images must be in [1, {len(bundle.test_x)}], not {args.images}")
    if not 0 <= args.stall < 1:
        raise ValueError(f"--stall must be in [0, 1), not {args.stall}")
    cfg = engine_config(args, bundle)
    check_fits(bundle, cfg)        # before any Verilog is generated or built
    lanes = f", {cfg.pp_par} post-processing lane(s)" if cfg.pp_slices > 1 else ""
    print(f"pnn sim: {args.simulator}, engine R={cfg.rows} C={cfg.cols}{lanes}, {args.images} images"
          f" x k={','.join(map(str, bits))} ...", file=sys.stderr)
    report = run_regression(args.bundle, cfg, simulator=args.simulator, images=args.images,
                            bits=bits, tables=args.tables, stall=args.stall, seed=args.seed,
                            build_root=args.build_dir)
    s = summarize(report)
    print(f"pnn sim: this run's files: {report['run_dir']}", file=sys.stderr)
    if args.json:
        print(json.dumps(s, indent=1))
    else:
        print_table(s)
    return 0 if s["mismatches"] == 0 and not s["failed_tests"] else 1
