"""``pnn asic``: the engine (and the int8 baseline) mapped to sky130 standard cells."""

from __future__ import annotations

import json
import sys

NAME = "asic"
HELP = ("synthesize the engine to SkyWater sky130_fd_sc_hd standard cells with Yosys: gate-level "
        "netlist, cell counts, area (um^2, logic vs memory), logic depth; optionally the int8 "
        "baseline side by side and a gate-level cocotb regression")


def add_arguments(p):
    from progressivenn.hw.isa import EngineConfig

    from .array_args import ARRAY_OPTIONS
    from .verilog import _OPTIONS

    defaults = EngineConfig()
    g = p.add_argument_group("engine (as pnn verilog; with --simulate/--compare, A, N and the M "
                             "width default to the bundle's)")
    for field, opt, text in [(f, o, t) for f, o, _, t in ARRAY_OPTIONS] + list(_OPTIONS):
        g.add_argument(opt, dest=field, type=int, default=None, metavar="N",
                       help=f"{text} (default {getattr(defaults, field)})")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for the netlists, the Liberty file, logs and report.json")
    p.add_argument("--memory", choices=["macro", "ff"], default="macro",
                   help="memories as black-box macros with a modelled area (default) or mapped "
                        "to flip-flops (measured; small configurations)")
    p.add_argument("--baseline", action="store_true",
                   help="also map the int8 bit-parallel MAC array of the same R x C")
    p.add_argument("--compare", metavar="BUNDLE", default=None,
                   help="with --baseline: area x cycles per inference on one test image of "
                        "BUNDLE at k=1,2,4,8 (cycles from the Amaranth simulator)")
    p.add_argument("--simulate", metavar="BUNDLE", default=None,
                   help="run the gate-level netlist under the cocotb regression on BUNDLE")
    p.add_argument("--images", type=int, default=2, help="test images for --simulate (default 2)")
    p.add_argument("--bits", default=None, help="planes k for --simulate: 1-8, 1,2,4,8, ... "
                                                "(default: 1..N of the bundle)")
    p.add_argument("--simulator", choices=["icarus", "verilator"], default="icarus")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--force", action="store_true",
                   help="replace an existing pnn asic output folder (never another kind's)")


def engine_config(args, bundle=None):
    """The ``EngineConfig`` of the options; A, N and the M width from ``bundle`` unless given."""
    import dataclasses

    from progressivenn.hw.isa import EngineConfig

    names = {f.name for f in dataclasses.fields(EngineConfig)}
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    if bundle is not None:
        for field, value in (("abits", bundle.abits), ("nbits", bundle.nbits),
                             ("mbits", bundle.mbits),
                             ("max_reduction", max(l.reduction for l in bundle.compute_layers()))):
            given.setdefault(field, value)
    return EngineConfig(**given)


def _summary(name: str, r: dict) -> str:
    mem = (f"memory {r['memory_bits']} bits = {r['memory_area_um2']:.0f} um^2 "
           f"({'measured' if r['memory'] == 'ff' else 'model'})")
    return (f"{name:9s} {r['area_um2']:>12.0f} um^2: logic {r['logic_area_um2']:.0f} um^2 in "
            f"{r['logic_cell_count']} cells ({r['flip_flops']} flip-flops), {mem}; logic depth "
            f"{r['logic_depth']} cells")


def run(args) -> int:
    from progressivenn.hw import sky130
    from pathlib import Path

    from progressivenn.outdir import check_target, output_dir, relocate_files

    if args.compare and not args.baseline:
        raise ValueError("--compare needs --baseline (it compares the engine with the baseline)")
    try:
        sky130.library_dir()
    except (ModuleNotFoundError, FileNotFoundError) as e:
        print(f"pnn asic: error: {e}", file=sys.stderr)
        return 2
    bundle = bits = None
    bundle_path = args.simulate or args.compare
    if bundle_path:
        from progressivenn.model.bundle import load_bundle
        from progressivenn.simulation import check_sim_args, parse_bits

        bundle = load_bundle(bundle_path)
        if args.simulate:
            bits = parse_bits(f"1-{bundle.nbits}" if args.bits is None else args.bits,
                              bundle.nbits)
            check_sim_args(bundle, bits, args.images, 0.1)
    cfg = engine_config(args, bundle)
    if bundle is not None:
        from progressivenn.sim.driver import check_fits
        check_fits(bundle, cfg)        # before minutes of synthesis
    check_target(args.out, "asic", force=args.force)     # before minutes of synthesis
    print(f"pnn asic: engine R={cfg.rows} C={cfg.cols} -> sky130_fd_sc_hd, memories as "
          f"{args.memory} (Yosys; minutes) ...", file=sys.stderr)
    # built in a temporary sibling, renamed over a previous result when complete
    with output_dir(args.out, "asic", force=args.force, command="pnn asic") as tmp:
        _build(args, cfg, bundle, bits, tmp)
        relocate_files(tmp, args.out, ["report.json"])          # the netlists' paths
        rep = json.loads((tmp / "report.json").read_text())
    out = Path(args.out)
    if args.json:
        print(json.dumps(rep, indent=1))
    else:
        _print(rep, out)
    bad = "gate_sim" in rep and (rep["gate_sim"]["mismatches"] or rep["gate_sim"]["failed_tests"])
    return 1 if bad else 0


def _build(args, cfg, bundle, bits, out) -> dict:
    """Synthesize (and compare, simulate) into ``out``; return the report."""
    from progressivenn.hw import asic
    from progressivenn.hw.generate import generate_verilog

    vpath = generate_verilog(cfg, out / "rtl")
    rep = asic.synthesize(vpath, out / "engine", top="pnn_engine", memory=args.memory)
    rep["config"] = cfg.to_dict()
    if args.baseline:
        print("pnn asic: int8 baseline ...", file=sys.stderr)
        bpath = asic.baseline_verilog(cfg, out / "rtl_baseline")
        rep["baseline"] = asic.synthesize(bpath, out / "baseline", top=asic.BASELINE_TOP,
                                          memory=args.memory)
        if args.compare:
            from progressivenn.sim.asic_compare import area_cycles
            rep["area_x_cycles"] = area_cycles(bundle, cfg, rep, rep["baseline"])
    if args.simulate:
        from progressivenn.sim.gate_sim import run_gate_regression
        print(f"pnn asic: gate-level regression on {args.simulator}, {args.images} images x "
              f"k={','.join(map(str, bits))} ...", file=sys.stderr)
        g = run_gate_regression(args.simulate, cfg, out / "engine", simulator=args.simulator,
                                images=args.images, bits=bits)
        rep["gate_sim"] = {"simulator": g["simulator"], "images": args.images, "bits": bits,
                           "mismatches": g["mismatches"], "compared_values":
                           g["compared_values"], "failed_tests": g["failed_tests"],
                           "first_mismatch": g.get("first_mismatch"),
                           "build_seconds": g["build_seconds"], "sim_seconds": g["sim_seconds"],
                           "run_dir": g["run_dir"]}
    (out / "report.json").write_text(json.dumps(rep, indent=1) + "\n")
    return rep


def _print(rep: dict, out) -> None:
    print(_summary("engine", rep))
    if "baseline" in rep:
        print(_summary("baseline", rep["baseline"]))
    if "area_x_cycles" in rep:
        b = rep["area_x_cycles"]["baseline"]
        print(f"area x cycles per inference (engine / int8 baseline, {b['cycles']} cycles):")
        for r in rep["area_x_cycles"]["engine"]:
            print(f"  k={r['k']}: {r['cycles']} cycles, ratio {r['ratio']:.3f} (logic only "
                  f"{r['ratio_logic']:.3f})")
    if "gate_sim" in rep:
        g = rep["gate_sim"]
        print(f"gate level ({g['simulator']}): {g['compared_values']} values compared, "
              f"{g['mismatches']} mismatches")
    print(f"timing: {rep['timing']}")
    print(f"-> {out / 'report.json'}, netlist {rep['netlist']}")
