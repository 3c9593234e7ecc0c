"""``pnn verilog``: emit the engine as Verilog (``pnn_engine.v``) plus ``pnn_engine.json``."""

from __future__ import annotations

import dataclasses
import json

NAME = "verilog"
HELP = "generate the engine as Verilog (pnn_engine.v) with its parameters file (pnn_engine.json)"

# (EngineConfig field, option, help)
_OPTIONS = (
    ("rows", "--rows", "R: output channels computed in parallel"),
    ("cols", "--cols", "C: reduction lanes (activations per cycle)"),
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
    ("pp_lanes", "--pp-lanes", "post-processing lanes P, dividing R; 0: one per row (a result"
                               " then takes R/P cycles and a table entry R/P words)"),
)


def add_arguments(p):
    from progressivenn.hw.isa import EngineConfig   # standard library only: cheap

    defaults = EngineConfig()
    for field, opt, text in _OPTIONS:
        p.add_argument(opt, dest=field, type=int, default=getattr(defaults, field),
                       metavar="N", help=f"{text} (default {getattr(defaults, field)})")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder to write pnn_engine.v and pnn_engine.json into")
    p.add_argument("--json", action="store_true",
                   help="print the parameters file (JSON) on stdout instead of a summary")


def config_from_args(args):
    from progressivenn.hw.isa import EngineConfig

    names = {f.name for f in dataclasses.fields(EngineConfig)}
    return EngineConfig(**{k: v for k, v in vars(args).items() if k in names})


def run(args) -> int:
    from progressivenn.hw.generate import generate_verilog

    cfg = config_from_args(args)        # ValueError names the bad parameter
    vpath = generate_verilog(cfg, args.out)
    params = json.loads(vpath.with_suffix(".json").read_text())
    if args.json:
        print(json.dumps(params, indent=2))
    else:
        c = params["config"]
        print(f"pnn_engine R={c['rows']} C={c['cols']} A={c['abits']} N={c['nbits']} "
              f"I_max={c['max_reduction']}: acc {c['acc_width']} b, data {c['data_width']} b, "
              f"result {c['res_width']} b, latency {params['latency']['run_accept_to_last_result']}"
              f" cycles -> {vpath} (+ {vpath.with_suffix('.json').name})")
    return 0
