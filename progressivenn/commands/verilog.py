"""``pnn verilog``: emit the engine as Verilog (``pnn_engine.v``) plus ``pnn_engine.json``."""

from __future__ import annotations

import dataclasses
import json

NAME = "verilog"
HELP = "generate the engine as Verilog (pnn_engine.v) with its parameters file (pnn_engine.json)"

# (EngineConfig field, option, help); the array size (rows, cols, pp_lanes): array_args
_OPTIONS = (
    ("abits", "--abits", "A: activation code width"),
    ("nbits", "--nbits", "N: weight planes stored per weight (1..16)"),
    ("max_reduction", "--max-reduction", "I_max: largest reduction length (sets the accumulator "
                                          "width)"),
    ("mbits", "--mbits", "signed width of the post-processing multiplier M"),
    ("bbits", "--bbits", "signed width of the post-processing offset B"),
    ("obits", "--obits", "signed width of one result value"),
    ("wdepth", "--wdepth", "weight memory words (each R*C bits)"),
    ("adepth", "--adepth", "activation memory words per bank (each C*A bits)"),
    ("ppdepth", "--ppdepth", "post-processing table words"),
    ("accdepth", "--accdepth", "saved-accumulator words"),
)


def add_arguments(p):
    from progressivenn.hw.isa import EngineConfig   # standard library only: cheap

    from .array_args import add_array_arguments

    defaults = EngineConfig()
    add_array_arguments(p, defaults)
    for field, opt, text in _OPTIONS:
        p.add_argument(opt, dest=field, type=int, default=getattr(defaults, field),
                       metavar="N", help=f"{text} (default {getattr(defaults, field)})")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder to write pnn_engine.v and pnn_engine.json into (with the "
                        "instantiation template, .sdc/.xdc, FuseSoC .core and Verilator .vlt)")
    p.add_argument("--name", default=None, metavar="PREFIX",
                   help="prefix every module: the top becomes PREFIX_pnn_engine, so that two "
                        "configurations coexist in one design (default: no prefix)")
    p.add_argument("--axis", action="store_true",
                   help="also write <top>_axis.v, a wrapper with AXI4-Stream port names "
                        "(s_axis_cmd_tdata, ...) and Vivado X_INTERFACE_INFO attributes")
    p.add_argument("--json", action="store_true",
                   help="print the parameters file (JSON) on stdout instead of a summary")
    p.add_argument("--force", action="store_true",
                   help="replace an existing output folder of the same kind (never another kind's)")


def config_from_args(args):
    from progressivenn.hw.isa import EngineConfig

    names = {f.name for f in dataclasses.fields(EngineConfig)}
    return EngineConfig(**{k: v for k, v in vars(args).items() if k in names})


def run(args) -> int:
    from progressivenn.hw.generate import generate_verilog, top_name

    from pathlib import Path

    from progressivenn.outdir import check_target, output_dir

    cfg = config_from_args(args)        # ValueError names the bad parameter
    check_target(args.out, "verilog", force=args.force)
    with output_dir(args.out, "verilog", force=args.force, command="pnn verilog") as tmp:
        vpath = generate_verilog(cfg, tmp, name=args.name, axis=args.axis)
        params = json.loads((vpath.parent / f"{top_name(args.name)}.json").read_text())
    vpath = Path(args.out) / vpath.name
    if args.json:
        print(json.dumps(params, indent=2))
    else:
        c = params["config"]
        paths = ", ".join(" -> ".join(p) for p in params["comb_paths"]) or "none"
        print(f"{params['top']} R={c['rows']} C={c['cols']} A={c['abits']} N={c['nbits']} "
              f"I_max={c['max_reduction']}: acc {c['acc_width']} b, data {c['data_width']} b, "
              f"result {c['res_width']} b, latency {params['latency']['run_accept_to_last_result']}"
              f" cycles -> {vpath} (+ {params['top']}.json/.sdc/.xdc/.core/.vlt, {vpath.stem}_inst.v;"
              f" combinational paths: {paths})")
    return 0
