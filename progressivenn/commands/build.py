"""``pnn build``: synthesis, place-and-route and bitstream for a board with the YoWASP tools."""

from __future__ import annotations

import json
import sys

from ..hw.board_names import BOARD_NAMES
from .array_args import add_array_arguments

NAME = "build"
HELP = ("build the board design (resident engine by default where it fits, or the streamed engine;"
        " UART bridge, board top) for an FPGA board with Yosys + nextpnr from PyPI, report area"
        " and post-route Fmax, and optionally program the board")

#: modes of hw.boards.MODES (not imported here: amaranth is slow to import)
_MODES = ("resident", "streamed")

#: the keys of progressivenn.hw.boards.BOARDS (from hw/board_names.py: hw.boards itself is not
#: imported here, amaranth is slow to import)
_BOARDS = BOARD_NAMES


def add_arguments(p):
    p.add_argument("--board", required=True, choices=_BOARDS,
                   help="target board (its engine configuration: docs/boards.md)")
    p.add_argument("--mode", choices=_MODES,
                   help="design: resident (the whole network on chip; the default where the board"
                        " has a resident configuration) or streamed (the host-fed engine)")
    p.add_argument("--baud", type=int, metavar="B",
                   help="UART baud rate (default the board's fastest exact rate, 3000000; e.g."
                        " 115200); refused if the divisor is off by more than 2%%")
    p.add_argument("--program", action="store_true",
                   help="after a build that fits, load the bitstream into the board (iceprog or"
                        " openFPGALoader, whichever is installed)")
    add_array_arguments(p, override="the board's (docs/boards.md)")
    p.add_argument("--baseline", action="store_true",
                   help="also build the bit-parallel int8 MAC array of the same R x C, with DSP"
                        " multipliers and LUT-only, and print all three side by side (streamed"
                        " mode)")
    p.add_argument("--int8-pipelined", action="store_true",
                   help="with --baseline: the int8 arrays with their products registered before"
                        " the adder trees (MACArray(cfg, pipelined=True))")
    p.add_argument("--policy", action="store_true",
                   help="resident mode: wrap the engine in the on-chip precision policy (escalate /"
                        " hybrid with their gates; pnn run --policy then decides k on the chip)")
    p.add_argument("--counters", choices=("all", "total", "none"), default=None,
                   help="the streamed engine's (and the baseline's) performance counters: all"
                        " six (default), total (the cycle counter only) or none; a lean set is for"
                        " area comparisons (pnn sim reads all six)")
    p.add_argument("--counter-bits", type=int, default=None, metavar="W",
                   help="width of each counter, 16 to 64 (default the board's; below 64 a"
                        " counter saturates)")
    p.add_argument("--dsp", choices=("auto", "on", "off"), default="auto",
                   help="multipliers in DSP blocks (iCE40: synth_ice40 -dsp; default: the"
                        " board's choice)")
    p.add_argument("--out", default="build", metavar="DIR",
                   help="build folder; each design gets DIR/<board>, DIR/<board>-baseline-dsp,"
                        " DIR/<board>-baseline-lut (default build)")
    p.add_argument("--json", action="store_true", help="print the report(s) as JSON on stdout")
    p.add_argument("--force", action="store_true",
                   help="replace an existing DIR/<board> build of the same kind (never another kind's)")


def _summary(r: dict) -> str:
    if not r["fits"]:
        return (f"{r['board']} {r['design']} R={r['rows']} C={r['cols']} on {r['device']}: "
                f"{r['luts']} LUT4, {r['ffs']} FF, {r['dsps']} DSP, {r['brams']} BRAM after"
                f" synthesis; does NOT fit: {r['error']}")
    ok = "met" if r["timing_met"] else "NOT met"
    extra = f", SPRAM {r['spram']}" if r.get("spram") else ""
    return (f"{r['board']} {r['design']} R={r['rows']} C={r['cols']} on {r['device']}: "
            f"{r['luts']} LUT4, {r['ffs']} FF, {r['dsps']} DSP, {r['brams']} BRAM{extra}; "
            f"{r['logic_cells']}/{r['logic_cells_available']} logic cells; Fmax {r['fmax_mhz']}"
            f" MHz vs {r['target_mhz']} MHz target (timing {ok}); UART {r['baud']} baud;"
            f" {r['build_seconds']} s -> {r['bitstream']}")


def run(args) -> int:
    from pathlib import Path

    from progressivenn.hw.build import ToolMissing, build_board, program_board, programmer
    from progressivenn.outdir import check_target, output_dir, relocate_files

    if args.baseline and args.mode == "resident":
        print("pnn build: error: --baseline builds the streamed design; drop --mode resident",
              file=sys.stderr)
        return 2
    if args.int8_pipelined and not args.baseline:
        print("pnn build: error: --int8-pipelined needs --baseline", file=sys.stderr)
        return 2
    mode = args.mode or ("streamed" if args.baseline else None)
    try:                                      # bad options are named before anything is made
        from progressivenn.hw.boards import board_clock_hz, board_spec
        from progressivenn.hw.uart import divisor_for

        from progressivenn.hw.build import check_policy, with_counters

        spec = board_spec(args.board, rows=args.rows, cols=args.cols, pp_lanes=args.pp_lanes,
                          mode=mode, baud=args.baud)
        spec = with_counters(spec, args.counters, args.counter_bits)
        divisor_for(board_clock_hz(spec), spec.baud)
        check_policy(spec, args.policy)
    except ValueError as e:
        print(f"pnn build: error: {e}", file=sys.stderr)
        return 2
    if args.program:
        try:                                  # a missing programmer is named before the build
            programmer(args.board)
        except ToolMissing as e:
            print(f"pnn build: error: {e}", file=sys.stderr)
            return 2

    dsp = {"auto": None, "on": True, "off": False}[args.dsp]
    tty = sys.stderr.isatty()

    def progress(msg):
        if tty:
            print(f"\r{msg:<70}", end="", file=sys.stderr, flush=True)

    # (baseline?, dsp, folder suffix)
    designs = [(False, dsp, "")]
    if args.baseline:
        designs += [(True, True, "-baseline-dsp"), (True, False, "-baseline-lut")]
    for _, _, suffix in designs:             # every target checked before the first build
        check_target(Path(args.out) / (args.board + suffix), "fpga-build", force=args.force)
    reports = []
    try:
        for baseline, use_dsp, suffix in designs:
            out = Path(args.out) / (args.board + suffix)
            # built in a temporary sibling, renamed over the previous build when complete (an
            # interrupt or a toolchain crash leaves the previous build as it was)
            with output_dir(out, "fpga-build", force=args.force, command="pnn build") as tmp:
                build_board(args.board, rows=args.rows, cols=args.cols, pp_lanes=args.pp_lanes,
                            baseline=baseline, dsp=use_dsp, baud=args.baud, out=tmp, mode=mode,
                            counter_set=args.counters, counter_bits=args.counter_bits,
                            int8_pipelined=baseline and args.int8_pipelined,
                            policy=args.policy, progress=progress)
                relocate_files(tmp, out, ["report.json"], indent=2)   # the bitstream's path
                r = json.loads((tmp / "report.json").read_text())
            if tty:
                print("\r" + " " * 72 + "\r", end="", file=sys.stderr)
            reports.append(r)
            if not args.json:
                print(_summary(r))
    except (ToolMissing, ValueError) as e:       # missing tool; bad --rows/--cols/--pp-lanes
        print(f"pnn build: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"pnn build: error: {e}", file=sys.stderr)
        return 1
    if args.program:
        if not reports[0]["fits"]:
            print("pnn build: error: not programmed: the design does not fit", file=sys.stderr)
            return 1
        try:
            tool = program_board(args.board, Path(args.out) / args.board)
        except (ToolMissing, FileNotFoundError) as e:
            print(f"pnn build: error: {e}", file=sys.stderr)
            return 2
        except Exception as e:                  # the programmer failed (no board attached, ...)
            print(f"pnn build: error: programming {args.board} failed: {e}", file=sys.stderr)
            return 1
        reports[0]["programmed_with"] = tool
        if not args.json:
            print(f"programmed {args.board} with {tool}")
    if args.json:
        print(json.dumps(reports[0] if len(reports) == 1 else reports, indent=2))
    return 0 if reports[0]["fits"] else 1
