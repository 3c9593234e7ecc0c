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


def test_pipelined_int8_builds_are_simulated_on_their_own_rtl():
    """A ``baseline-int8-pipelined-*`` build is rated with the pipelined array's own cycles (its
    ``total`` counter, one cycle more per RUN than the single-stage array), both bit-exact."""
    from bundles import random_bundle

    from progressivenn.sim.throughput import throughput_per_lut

    cfg = EngineConfig(rows=4, cols=8, abits=8, nbits=8, max_reduction=64, mbits=18, bbits=40,
                       obits=32, wdepth=64, adepth=64, ppdepth=16, accdepth=16, pp_lanes=1)
    fig = {"luts": 900, "logic_cells": 1000, "fmax_mhz": 50.0, "dsps": 0, "source": {"report": "x"}}
    rows = throughput_per_lut(random_bundle(1, nbits=7), "b", builds={
        "baseline-int8-lut": fig, "baseline-int8-pipelined-lut": fig}, cfg=cfg,
        baseline_tile_positions=("auto",))
    by = {r["design"]: r for r in rows}
    assert set(by) == {"baseline-int8-lut", "baseline-int8-pipelined-lut"}
    plain, piped = by["baseline-int8-lut"], by["baseline-int8-pipelined-lut"]
    assert plain["mismatches"] == piped["mismatches"] == 0 and plain["compared"] > 0
    assert plain["counter_total"] < piped["counter_total"] == piped["cycles"]
    assert piped["busy"] == plain["busy"]
