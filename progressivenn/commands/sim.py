"""``pnn sim``: the cocotb regression of the generated Verilog against the golden model."""

from __future__ import annotations

import json
import sys

# the library side (also behind pnn.simulate); re-exported for the other commands
from ..simulation import (check_sim_args, parse_bits, print_table, resident_program,  # noqa: F401
                          summarize)

NAME = "sim"
HELP = ("simulate the generated Verilog under cocotb on a bundle's test images at every k and "
        "compare every layer with the integer golden model")


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


def add_arguments(p) -> None:
    p.add_argument("bundle", help="bundle directory written by `pnn export`")
    p.add_argument("--simulator", "--sim", choices=["icarus", "verilator"], default=None,
                   help="default: verilator in resident mode (its build is reused), icarus in "
                        "streamed mode")
    p.add_argument("--images", type=int, default=20, help="test images from the bundle")
    p.add_argument("--bits", default=None,
                   help="planes k to run: 1-8, 1,2,4,8, ... (default: 1..N of the bundle)")
    p.add_argument("--tables", choices=["retrained", "fixed"], default="retrained",
                   help="BN tables: retrained per k, or the k=N tables at every k")
    p.add_argument("--stall", type=float, default=0.1,
                   help="probability of a random valid/ready stall per beat")
    p.add_argument("--seed", type=int, default=0, help="random seed of the stalls")
    p.add_argument("--build-dir", default="build/sim", help="simulator builds are kept here")
    p.add_argument("--mode", choices=["auto", "resident", "streamed"], default="auto",
                   help="resident: the whole network on chip (docs/resident.md); streamed: the "
                        "host sends every layer; auto (default): resident when the bundle fits")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--waves", action="store_true",
                   help="record every signal: Icarus writes pnn_engine.fst (resident mode: "
                        "pnn_resident_bench.fst), Verilator dump.vcd, in the run's folder (a "
                        "separate simulator build; keep --images small)")
    add_engine_arguments(p)


def run(args) -> int:
    from ..api import simulate
    from ..model.bundle import load_bundle
    from ..sim.driver import check_fits

    bundle = load_bundle(args.bundle)
    bits = parse_bits(f"1-{bundle.nbits}" if args.bits is None else args.bits, bundle.nbits)
    check_sim_args(bundle, bits, args.images, args.stall)
    if getattr(args, "mode", "streamed") != "streamed":
        done = _run_resident(args, bundle, bits)
        if done is not None:
            return done
    if args.simulator is None:
        args.simulator = "icarus"
    cfg = engine_config(args, bundle)
    check_fits(bundle, cfg)        # before anything is printed, generated or built
    lanes = f", {cfg.pp_par} post-processing lane(s)" if cfg.pp_slices > 1 else ""
    print(f"pnn sim: {args.simulator}, engine R={cfg.rows} C={cfg.cols}{lanes}, {args.images} images"
          f" x k={','.join(map(str, bits))}{', recording waves' if args.waves else ''} ...",
          file=sys.stderr)
    with _bar(args, bits) as bar:
        s = simulate(args.bundle, simulator=args.simulator, images=args.images, bits=bits,
                     tables=args.tables, stall=args.stall, seed=args.seed, waves=args.waves,
                     build_dir=args.build_dir, config=cfg, progress=bar)
    print(f"pnn sim: this run's files: {s['run_dir']}", file=sys.stderr)
    if args.json:
        print(json.dumps(dict(s, mode="streamed"), indent=1))
    else:
        print_table(s)
    return 0 if s["mismatches"] == 0 and not s["failed_tests"] else 1


def _bar(args, bits):
    """The progress bar over build + images x k (+ reset test): stderr, only on a terminal,
    off with ``--json``."""
    from ..progress import Progress
    from ..sim.progress_file import sim_steps

    return Progress(sim_steps(args.images, bits), "sim", enabled=not args.json)


def _run_resident(args, bundle, bits):
    """Resident mode (``docs/resident.md``); None when ``--mode auto`` and the bundle does not
    fit (the streamed mode runs it). A bundle that does not fit ``--mode resident`` is refused
    with one line naming the memory, before anything is built."""
    from ..sim.resident_runner import run_resident_cocotb, summarize_resident, print_resident_table

    only = [o for o, v in (("--board", args.board), ("--pp-lanes", args.pp_lanes),
                           ("--max-reduction", args.max_reduction)) if v]
    fitted = resident_program(bundle, mode=args.mode, rows=args.rows, cols=args.cols,
                              tables=args.tables, streamed_only=only)
    if fitted is None:
        return None
    cfg, prog = fitted
    args.simulator = args.simulator or "verilator"
    print(f"pnn sim: {args.simulator}, resident R={cfg.rows} C={cfg.cols}, {args.images} images "
          f"x k={','.join(map(str, bits))}{', recording waves' if args.waves else ''} ...",
          file=sys.stderr)
    with _bar(args, bits) as bar:
        rep = run_resident_cocotb(args.bundle, cfg, simulator=args.simulator, images=args.images,
                                  bits=bits, tables=args.tables, stall=args.stall, seed=args.seed,
                                  build_root=args.build_dir, progress=bar, waves=args.waves)
    s = summarize_resident(rep, prog)
    print(f"pnn sim: this run's files: {s['run_dir']}", file=sys.stderr)
    if args.json:
        print(json.dumps(s, indent=1))
    else:
        print_resident_table(s)
    return 0 if s["mismatches"] == 0 and not s["failed_tests"] else 1
