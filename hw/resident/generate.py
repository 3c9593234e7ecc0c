"""Emit the resident engine as Verilog (``pnn_resident.v``) plus its parameters file
(``pnn_resident.json``: configuration, ports, and every word layout with its field offsets)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .engine import ResidentEngine
from .layout import (ResidentConfig, desc_layout, tap_layout, cmd_layout, res_layout,
                     summary_layout, counter_layout)

__all__ = ["TOP", "generate_resident_verilog", "resident_params"]

#: Verilog top module name
TOP = "pnn_resident"


def _fields(layout) -> dict:
    return {str(name): {"offset": layout[name].offset, "width": layout[name].width}
            for name, _ in layout}


def resident_params(cfg: ResidentConfig) -> dict:
    """Configuration, ports and word layouts of one resident engine build."""
    eng = ResidentEngine(cfg)
    eng._MustUse__silence = True
    from amaranth.hdl import Shape
    from amaranth.lib import wiring
    ports = [{"name": "clk", "dir": "input", "width": 1},
             {"name": "rst", "dir": "input", "width": 1}]
    for path, member in eng.signature.members.flatten():
        if member.is_port:
            ports.append({"name": "__".join(str(p) for p in path),
                          "dir": "input" if member.flow == wiring.In else "output",
                          "width": Shape.cast(member.shape).width})
    return {
        "top": TOP, "format_version": 1,
        "clock": {"name": "clk", "edge": "rising"},
        "reset": {"name": "rst", "kind": "synchronous, active high"},
        "config": cfg.to_dict(), "ports": ports,
        "layouts": {name: _fields(fn(cfg)) for name, fn in (
            ("cmd", cmd_layout), ("desc", desc_layout), ("tap", tap_layout), ("res", res_layout),
            ("summary", summary_layout), ("counter", counter_layout))},
    }


_MEM = re.compile(r"^(  reg \[(\d+):0\] (\S+) \[(\d+):0\];\n)  initial begin\n((?:    \3\[\d+\] = \d+'h0+;\n)+)  end\n",
                  re.M)


def _compact_zero_init(text: str) -> str:
    """Yosys writes a memory's all-zero initial contents as one assignment per word (7,000 lines,
    400 KB for the default configuration); write each as a loop instead. Only a block that sets
    every word 0..depth-1 to zero, in order, is replaced; the simulated contents are the same."""
    def loop(mo):
        decl, width, name, top, body = mo.groups()
        words = [int(line.split("[", 1)[1].split("]", 1)[0]) for line in body.splitlines()]
        if words != list(range(int(top) + 1)):
            return mo.group(0)
        i = f"{name}__i"
        return (f"{decl}  integer {i};\n  initial begin\n"
                f"    for ({i} = 0; {i} <= {top}; {i} = {i} + 1)\n"
                f"      {name}[{i}] = {int(width) + 1}'h0;\n  end\n")
    return _MEM.sub(loop, text)


def generate_resident_verilog(cfg: ResidentConfig, out_dir) -> Path:
    """Write ``pnn_resident.v`` and ``pnn_resident.json`` into ``out_dir``; return the .v path."""
    from amaranth.back import verilog

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = _compact_zero_init(verilog.convert(ResidentEngine(cfg), name=TOP, emit_src=False))
    path = out / f"{TOP}.v"
    # unchanged files keep their time stamps, so a simulator build of them is reused
    for p, t in ((path, text), (out / f"{TOP}.json",
                                 json.dumps(resident_params(cfg), indent=1) + "\n")):
        if not p.exists() or p.read_text() != t:
            p.write_text(t)
    return path
