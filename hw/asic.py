"""Yosys flow to SkyWater ``sky130_fd_sc_hd`` standard cells: netlist, cell counts, area, depth.

``synthesize(verilog, out_dir, top=...)`` runs Yosys (YoWASP) twice: a cheap first call lists
the memories (``dump`` of the ``$mem_v2`` cells), the second maps::

    read_liberty -lib cells.lib; read_verilog -sv design.v
    hierarchy; proc; flatten; memory -nomap          # every memory is one $mem_v2 cell
    submod: the memories -> module <top>_pnn_memories # memory and logic counted apart
    [macro] write_verilog memories.v; blackbox it     # memories kept out as a macro
    synth -top TOP; dfflibmap -liberty; abc -liberty; opt_clean
    stat -liberty; ltp -noff (flip-flops and the memory instance cut out)
    write_verilog netlist.v

Areas are summed here from the cell counts and the Liberty areas (Yosys' JSON area of a module
includes its submodules).

with the Liberty file of :mod:`.sky130` (area and function only: **no timing library exists
here**, so there is no delay, slack or Fmax; the logic depth in cells is the timing proxy).

Memories (``memory``): ``"ff"`` maps them to ``dfxtp`` flip-flops with their decode and read
multiplexers (measured area; fine for small configurations), ``"macro"`` keeps them out as one
black-box module whose bits are counted and whose area is a model:
:data:`MACRO_BIT_CELL` (one latch per bit, decode and sense logic not counted) -- a lower bound
of a latch array, not an SRAM compiler's figure. In both modes the written netlist simulates: the
macro's behaviour is written out by Yosys as ``memories.v`` (RTL, not cells).

Reported (``dict``): ``area_um2`` (logic + memory), ``logic_area_um2``, ``memory_area_um2``
(``memory_area_model`` says measured or modelled), ``memory_bits``, ``memories`` (name, width,
depth), ``cells`` (cell type -> count, logic and, in ``"ff"`` mode, memory), ``cell_count``,
``flip_flops``, ``sequential_area_um2``, ``logic_depth`` (cells on the longest path between
flip-flops, memory ports and top-level ports: ``ltp -noff`` with the flip-flop cells and the
memory instance cut out), ``logic_depth_memories`` (``"ff"``: the same inside the memories),
``netlist`` / ``memories_v`` / ``liberty`` paths, ``seconds``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from . import sky130
from .synth import yosys_command

__all__ = ["MEMORY_MODES", "MEMORY_MODULE", "MACRO_BIT_CELL", "BASELINE_TOP", "synthesize",
           "macro_bit_area", "baseline_verilog"]

MEMORY_MODES = ("ff", "macro")
#: module holding every memory of the design after the split (prefixed ``<top>_``)
MEMORY_MODULE = "pnn_memories"
#: the cell whose area models one macro bit
MACRO_BIT_CELL = "dlxtp"


def macro_bit_area(cells=None) -> float:
    """Modelled area of one memory-macro bit: the area of one :data:`MACRO_BIT_CELL` latch."""
    cells = sky130.load_cells() if cells is None else cells
    return next(c.area for c in cells if c.name == MACRO_BIT_CELL)


def _module_stats(stat: dict, name: str) -> dict:
    mods = stat.get("modules", {})
    for key in (name, f"\\{name}"):
        if key in mods:
            return mods[key]
    return {}


def _run(commands: list, cwd: Path, timeout, log_path: Path) -> None:
    cmd = yosys_command() + ["-q", "-p", "; ".join(commands)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    log_path.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise RuntimeError(f"yosys failed (exit {proc.returncode}, log {log_path}): "
                           + " | ".join(tail))


def _parse_memories(dump: str) -> list[dict]:
    """Name, width and depth of every ``$mem_v2`` cell in a Yosys ``dump``."""
    mems = []
    for block in dump.split("cell $mem_v2")[1:]:
        p = dict(re.findall(r"parameter \\(\w+) (\S+)", block))
        width, depth = int(p["WIDTH"]), int(p["SIZE"])
        mems.append({"name": p.get("MEMID", "?").strip('"\\'), "width": width, "depth": depth,
                     "bits": width * depth})
    return mems


def synthesize(verilog_path, out_dir, *, top: str, memory: str = "macro",
               timeout: float | None = 3600) -> dict:
    """Map ``verilog_path`` (top module ``top``) to ``sky130_fd_sc_hd`` cells in ``out_dir``.

    Writes ``cells.lib`` (the generated Liberty), ``netlist.v`` (the gate-level netlist: cell
    instances and the module ``pnn_memories``: cells in ``"ff"`` mode, a black-box instance in
    ``"macro"`` mode), ``memories.v`` (``"macro"``: the memories' behaviour, for simulation),
    ``yosys.log``, ``stat.json`` and ``ltp.txt``; returns the figures of the module docstring.
    Raises ``ModuleNotFoundError`` (how to install it) without the ``sky130`` package.
    """
    if memory not in MEMORY_MODES:
        raise ValueError(f"memory must be one of {', '.join(MEMORY_MODES)}, not {memory!r}")
    vpath = Path(verilog_path)
    if not vpath.is_file():
        raise FileNotFoundError(f"no Verilog file {vpath}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cells = sky130.load_cells()
    lib = sky130.write_liberty(out / "cells.lib", cells)
    mem = f"{top}_{MEMORY_MODULE}"        # submod prefixes the top's name
    elaborate = ["read_liberty -lib cells.lib", "read_verilog -sv design.v",
                 f"hierarchy -check -top {top}", "proc", "flatten", "delete t:$scopeinfo",
                 "memory -nomap", "opt_clean"]
    with tempfile.TemporaryDirectory(prefix="pnn_asic_") as tmpdir:
        tmp = Path(tmpdir)
        shutil.copyfile(vpath, tmp / "design.v")
        shutil.copyfile(lib, tmp / "cells.lib")
        t0 = time.monotonic()
        # pass 1 (cheap next to the mapping): which memories there are
        _run(elaborate + ["tee -q -o mems.txt dump t:$mem_v2"], tmp, timeout,
             out / "yosys_memories.log")
        memories = _parse_memories((tmp / "mems.txt").read_text())
        script = list(elaborate)
        if memories:
            script += [f"setattr -set submod \"{MEMORY_MODULE}\" t:$mem_v2", "submod"]
            if memory == "macro":
                script += [f"select {mem}", "write_verilog -noattr -selected memories.v",
                           "select -clear", f"blackbox {mem}"]
        seq = "t:sky130_fd_sc_hd__df* t:sky130_fd_sc_hd__dl* %u"
        script += [f"synth -top {top}", "delete t:$scopeinfo",
                   "dfflibmap -liberty cells.lib", "abc -liberty cells.lib", "opt_clean",
                   "tee -q -o stat.json stat -json -liberty cells.lib",
                   f"tee -q -o ltp.txt ltp -noff {seq} t:{mem} %u %n",
                   "write_verilog -noattr netlist.v"]
        _run(script, tmp, timeout, out / "yosys.log")
        seconds = time.monotonic() - t0
        for name in ("netlist.v", "stat.json", "ltp.txt", "memories.v"):
            if (tmp / name).exists():
                shutil.copyfile(tmp / name, out / name)
        stat = json.loads((tmp / "stat.json").read_text())
        ltp_text = (tmp / "ltp.txt").read_text()
    return _report(stat, ltp_text, top, memory, memories, cells, out, seconds)


def _ltp_by_module(text: str) -> dict:
    return {m: int(n) for m, n in
            re.findall(r"Longest topological path in \\?(\S+) \(length=(\d+)\)", text)}


def _report(stat, ltp_text, top, memory, memories, cells, out: Path, seconds) -> dict:
    seq_types = {c.module for c in cells if c.seq}
    mem = f"{top}_{MEMORY_MODULE}"
    top_s, mem_s = _module_stats(stat, top), _module_stats(stat, mem)
    logic_cells = {t: n for t, n in top_s.get("num_cells_by_type", {}).items()
                   if t.lstrip("\\") != mem}
    mem_cells = dict(mem_s.get("num_cells_by_type", {})) if memory == "ff" else {}
    bits = sum(m["bits"] for m in memories)
    # areas summed from the cell counts (Yosys' per-module JSON area includes submodules)
    area_of = {c.module: c.area for c in cells}

    def area(counts, only=None):
        return sum(area_of[t.lstrip("\\")] * n for t, n in counts.items()
                   if only is None or t.lstrip("\\") in only)
    logic_area = area(logic_cells)
    if memory == "ff":
        mem_area, model = area(mem_cells), "measured: flip-flops, decode and read multiplexers"
    else:
        per_bit = macro_bit_area(cells)
        mem_area = bits * per_bit
        model = (f"modelled: {bits} bits x {per_bit} um^2 ({sky130.LIBRARY}__{MACRO_BIT_CELL}"
                 f" latch per bit, decode and read-out not counted)")
    seq_area = area(logic_cells, seq_types) + area(mem_cells, seq_types)
    depth = _ltp_by_module(ltp_text)
    all_cells: dict = {}
    for d in (logic_cells, mem_cells):
        for t, n in d.items():
            all_cells[t.lstrip("\\")] = all_cells.get(t.lstrip("\\"), 0) + n
    return {
        "top": top, "library": sky130.LIBRARY, "memory": memory,
        "area_um2": round(logic_area + mem_area, 2),
        "logic_area_um2": round(logic_area, 2),
        "memory_area_um2": round(mem_area, 2), "memory_area_model": model,
        "memory_bits": bits, "memories": memories,
        "sequential_area_um2": round(seq_area, 2),
        "cells": dict(sorted(all_cells.items())),
        "cell_count": sum(all_cells.values()),
        "logic_cell_count": sum(logic_cells.values()),
        "flip_flops": sum(n for t, n in all_cells.items() if t in seq_types),
        "logic_depth": depth.get(top, 0),
        "logic_depth_memories": depth.get(mem) if memory == "ff" else None,
        "timing": "none: no timing library exists for these cells here (area and function only);"
                  " logic_depth (cells on the longest path) is the timing proxy",
        "netlist": str(out / "netlist.v"),
        "memories_v": str(out / "memories.v") if (out / "memories.v").exists() else None,
        "liberty": str(out / "cells.lib"),
        "seconds": round(seconds, 1),
    }


#: top module name of the int8 baseline's Verilog
BASELINE_TOP = "pnn_baseline"


def baseline_verilog(cfg, out_dir) -> Path:
    """Write the int8 bit-parallel MAC array (:class:`.baseline.MACArray`) of ``cfg`` as
    ``out_dir/pnn_baseline.v`` (top ``pnn_baseline``); return its path."""
    from amaranth.back import verilog

    from .baseline import MACArray

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{BASELINE_TOP}.v"
    path.write_text(verilog.convert(MACArray(cfg), name=BASELINE_TOP, emit_src=False))
    return path
