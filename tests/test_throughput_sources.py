"""sim/throughput.py's built-in build figures say where they come from (commit and command), and
figures read from build reports name the report."""

import json

from progressivenn.hw.isa import EngineConfig
from progressivenn.sim.throughput import BUILDS, format_table, load_reports


def test_every_builtin_figure_names_its_commit_and_command():
    for board, designs in BUILDS.items():
        for design, b in designs.items():
            src = b.get("source") or {}
            assert src.get("commit") and src.get("command", "").startswith("pnn build"), \
                (board, design)
            assert f"--board {board}" in src["command"], (board, design)


def test_report_figures_name_their_report(tmp_path):
    cfg = EngineConfig(rows=2, cols=4, max_reduction=64, wdepth=64, adepth=64, ppdepth=64,
                       accdepth=16)
    rep = {"design": "engine", "board": "b", "rows": 2, "cols": 4, "fits": True, "luts": 900,
           "logic_cells": 1000, "fmax_mhz": 50.0, "dsps": 0, "config": cfg.to_dict()}
    path = tmp_path / "engine.json"
    path.write_text(json.dumps(rep))
    _, _, builds = load_reports([path])
    assert builds["engine"]["source"] == {"report": str(path)}
    row = {"design": "engine", "k": 1, "tiles": None, "cycles": 10, "stall": 0, "ideal_cycles": 8,
           "compared": 4, "mismatches": 0, "logic_cells": 1000, "luts": 900, "dsps": 0,
           "fmax_mhz": 50.0, "inf_per_s": 5e6, "inf_per_s_per_lc": 5e3,
           "inf_per_s_per_lut4": 5.5e3, "source": builds["engine"]["source"]}
    assert f"engine: report {path}" in format_table([row])
