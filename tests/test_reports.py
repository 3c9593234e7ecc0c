"""Build reports come from the tools' JSON (nextpnr --report, Yosys stat -json), numbers as
numbers."""

import json

from progressivenn.hw.build import parse_nextpnr_report, parse_yosys_stat

# the shape nextpnr-ice40 0.11 writes with --report (trimmed)
NEXTPNR_REPORT = {
    "critical_paths": [],
    "fmax": {"$PACKER_GND_NET": {"achieved": 500.0, "constraint": 12},
             "clk$SB_IO_IN_$glb_clk": {"achieved": 25.91234, "constraint": 12}},
    "utilization": {"ICESTORM_LC": {"available": 5280, "used": 5174},
                    "ICESTORM_RAM": {"available": 30, "used": 23}},
}


def test_nextpnr_report_json(tmp_path):
    p = tmp_path / "top.report.json"
    p.write_text(json.dumps(NEXTPNR_REPORT))
    r = parse_nextpnr_report(p)
    assert r["utilisation"] == {"ICESTORM_LC": [5174, 5280], "ICESTORM_RAM": [23, 30]}
    assert r["clocks"]["clk$SB_IO_IN_$glb_clk"] == {"fmax_mhz": 25.91, "target_mhz": 12.0,
                                                    "pass": True}
    json.dumps(r)


def test_nextpnr_report_fail(tmp_path):
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"fmax": {"clk": {"achieved": 9.5, "constraint": 12}},
                             "utilization": {}}))
    assert parse_nextpnr_report(p)["clocks"]["clk"]["pass"] is False


def test_yosys_stat_json(tmp_path):
    p = tmp_path / "top.stat.json"
    p.write_text("\n" + json.dumps({"design": {"num_cells_by_type": {
        "SB_LUT4": 100, "SB_DFFER": 40, "SB_CARRY": 8, "SB_RAM40_4K": 2}}}))
    r = parse_yosys_stat(p, "ice40")
    assert r["luts"] == 100 and r["brams"] == 2 and isinstance(r["ffs"], int)
