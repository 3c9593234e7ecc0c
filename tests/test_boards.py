"""Board tops, constraints, the bit-parallel baseline and (marked ``fpga``) full bitstream builds."""

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from amaranth.sim import Simulator

from progressivenn.hw import isa
from progressivenn.hw.baseline import MACArray, WBITS, baseline_data_width
from progressivenn.hw.boards import (BOARDS, BoardTop, board_clock_hz, board_platform,
                                     board_spec, ecp5_pll_params)
from progressivenn.hw.isa import EngineConfig

ROOT = Path(__file__).resolve().parents[1]


def test_board_configs_are_valid_and_baud_divisors_exact():
    from progressivenn.hw.uart import divisor_for

    for name, spec in BOARDS.items():
        clk = board_clock_hz(spec)
        div = divisor_for(clk, spec.baud)
        assert spec.baud == 3_000_000 and clk / div == spec.baud, name     # exact
        assert divisor_for(clk, 115200)                                    # --baud 115200
        if spec.clk_hz:
            prm = ecp5_pll_params(board_platform(spec).default_clk_frequency, spec.clk_hz)
            assert 25e6 * prm["CLKFB_DIV"] / prm["CLKI_DIV"] == spec.clk_hz, name
        assert spec.cfg.data_width <= 2040 and spec.cfg.res_width <= 2040
    assert board_spec("icebreaker", rows=1, mode="streamed").cfg.rows == 1
    from progressivenn.commands import build as build_cmd
    assert build_cmd._BOARDS == tuple(BOARDS)
    with pytest.raises(ValueError, match="unknown board"):
        board_spec("de10-nano")


def test_ecp5_pll_dividers():
    assert ecp5_pll_params(25e6, 30e6) == {"CLKI_DIV": 5, "CLKFB_DIV": 6, "CLKOP_DIV": 20,
                                           "CLKOP_CPHASE": 10, "vco_hz": 600e6}
    prm = ecp5_pll_params(12e6, 16e6)         # ecppll -i 12 -o 16: CLKI_DIV 3, CLKFB_DIV 4
    assert (prm["CLKI_DIV"], prm["CLKFB_DIV"]) == (3, 4) and 400e6 <= prm["vco_hz"] <= 800e6
    with pytest.raises(ValueError, match="no exact ECP5 PLL setting makes 48 MHz"):
        ecp5_pll_params(25e6, 48e6)            # 25 * 48/25: phase detector at 1 MHz


def test_modes_per_board():
    """Resident by default where the board has a resident configuration (it holds the digits net,
    and on the ULX3S-85F the MNIST reference net); streamed on request; clear refusals."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_resident import DIGITS, MNIST, chain_bundle  # noqa: E402

    from progressivenn.sim import resident as rs

    digits = chain_bundle(5, DIGITS, input_shape=(1, 8, 8), nbits=8)
    mnist = chain_bundle(6, MNIST, input_shape=(1, 28, 28), nbits=8)
    for name, spec in BOARDS.items():
        assert board_spec(name).design_mode == spec.default_mode
        assert board_spec(name, mode="streamed").design_mode == "streamed"
        if spec.resident is not None:
            assert spec.default_mode == (spec.default or "resident")
            assert board_spec(name, mode="resident").design_mode == "resident"
            rs.compile_program(digits, spec.resident)          # fits (else ResidentFitError)
    rs.compile_program(mnist, BOARDS["ulx3s-85f"].resident)
    # the iCEBreaker's 2 x 4 resident design fits the UP5K (docs/boards.md): its default
    assert BOARDS["icebreaker"].default_mode == "resident"
    assert board_spec("ulx3s-85f", baud=115200).baud == 115200
    with pytest.raises(ValueError, match="ulx3s-12f has no resident configuration"):
        board_spec("ulx3s-12f", mode="resident")
    with pytest.raises(ValueError, match="streamed-engine option"):
        board_spec("ulx3s-85f", pp_lanes=1)
    with pytest.raises(ValueError, match="--rows must be even, not 1"):
        board_spec("icebreaker", rows=1)
    with pytest.raises(ValueError, match="unknown mode"):
        board_spec("ulx3s-85f", mode="fast")


def test_resident_rates_digits_on_ulx3s():
    """The figures of docs/boards.md: the digits net on the ULX3S-85F (30 MHz, 3 Mbaud) runs
    >= 1,000 images/s at every k even one image at a time; the link bounds it; compute cycles are
    the busy cycles plus the engine's layer_overhead a layer; a slower clock moves the bound."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_resident import DIGITS, chain_bundle  # noqa: E402

    from progressivenn.sim import resident as rs
    from progressivenn.sim.throughput import format_resident_rates, resident_rates

    spec = board_spec("ulx3s-85f")
    prog = rs.compile_program(chain_bundle(5, DIGITS, input_shape=(1, 8, 8), nbits=8),
                              spec.resident)
    from progressivenn.hw.resident import ResidentEngine

    eng = ResidentEngine(spec.resident)
    eng._MustUse__silence = True
    over = 3 * eng.layer_overhead                # 3 program layers (pools fused)
    rows = resident_rates(prog, clk_hz=board_clock_hz(spec), baud=spec.baud)
    assert [r["k"] for r in rows] == list(range(1, 9))
    for r in rows:
        assert r["compute_cycles"] == 720 * r["k"] + over
        assert r["serial_per_s"] >= 1000 and r["bound"] == "link down", r
        assert r["serial_per_s"] < r["bound_per_s"] <= r["compute_per_s"]
    slow = resident_rates(prog, clk_hz=1e6, baud=3_000_000, ks=[8])[0]
    assert slow["bound"] == "compute" and slow["bound_per_s"] == pytest.approx(1e6 / (5760 + over))
    assert f"| 8 | {5760 + over} |" in format_resident_rates(rows)


def test_checked_in_constraints_match_the_board_tops():
    from progressivenn.hw.build import CONSTRAINT_FILES, constraint_text

    for board, fname in CONSTRAINT_FILES.items():
        (text,) = constraint_text(board).values()
        want = [l for l in text.splitlines() if l and "Automatically generated" not in l]
        have = [l for l in (ROOT / "constraints" / fname).read_text().splitlines()
                if l and not l.startswith(f"# {fname}") and not l.startswith("# Generated by")]
        assert have == want, f"constraints/{fname} is stale: regenerate with write_constraints()"


def test_report_parsers():
    from progressivenn.hw.build import parse_nextpnr_log

    log = ("Info: Device utilisation:\nInfo: \t         ICESTORM_LC:    4608/   5280    87%\n"
           "Info: \t        ICESTORM_RAM:      23/     30    76%\n\n"
           "Info: Max frequency for clock 'cd_sync.clk': 20.30 MHz (PASS at 12.00 MHz)\n"
           "Info: Max frequency for clock 'cd_sync.clk': 20.21 MHz (PASS at 12.00 MHz)\n")
    p = Path(os.environ.get("TMPDIR", "/tmp")) / "pnn_test_nextpnr.log"
    p.write_text(log)
    r = parse_nextpnr_log(p)
    assert r["utilisation"] == {"ICESTORM_LC": [4608, 5280], "ICESTORM_RAM": [23, 30]}
    assert r["clocks"]["cd_sync.clk"] == {"fmax_mhz": 20.21, "target_mhz": 12.0, "pass": True}


def test_missing_tools_give_one_line_with_the_install_hint(monkeypatch):
    from progressivenn.hw import build

    monkeypatch.setattr(build, "_which", lambda exe: None)
    monkeypatch.delenv("YOSYS", raising=False)
    monkeypatch.delenv("NEXTPNR_ICE40", raising=False)
    monkeypatch.delenv("ICEPACK", raising=False)
    with pytest.raises(build.ToolMissing, match=r"pip install progressivenn\[fpga\]"):
        build.fpga_tools("ice40")
    from progressivenn.cli import main
    assert main(["build", "--board", "icebreaker", "--out", "/nonexistent/x"]) == 2


def test_baseline_mac_array_one_run_matches_numpy():
    cfg = EngineConfig(rows=3, cols=4, abits=8, nbits=8, max_reduction=64, mbits=16, bbits=24,
                       obits=24, wdepth=64, adepth=16, ppdepth=8, accdepth=4)
    dut = MACArray(cfg)
    rng = np.random.default_rng(0)
    R, C, npos, nchunks, ngroups = cfg.rows, cfg.cols, 3, 2, 2
    w = rng.integers(-128, 128, size=(ngroups * R, nchunks * C))
    x = rng.integers(0, 256, size=(npos, nchunks * C))
    m = rng.integers(1, 200, size=ngroups * R)
    b = rng.integers(-5000, 5000, size=ngroups * R)
    S = 6
    wwords = []
    for g in range(ngroups):
        for c in range(nchunks):
            word = 0
            for r in range(R):
                for l in range(C):
                    word |= (int(w[g * R + r, c * C + l]) & 0xFF) << ((r * C + l) * WBITS)
            wwords.append(word)
    awords = [isa.pack_act_word(cfg, x[p, c * C:(c + 1) * C]) for p in range(npos)
              for c in range(nchunks)]
    ppw = [w for g in range(ngroups)
           for w in isa.pack_pp_words(cfg, S, m[g * R:(g + 1) * R], b[g * R:(g + 1) * R])]
    cmds = [isa.cmd_load_w(0, len(wwords)), isa.cmd_load_pp(0, len(ppw)),
            isa.cmd_load_a(1, 0, len(awords)),
            isa.cmd_run(bank=1, relu=False, k_start=0, k_end=1, wplanes=1, ngroups=ngroups,
                        nchunks=nchunks, npos=npos)]
    data = wwords + ppw + awords
    n_res = npos * ngroups
    got = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def feed(ctx, port, words):
        for wd in words:
            ctx.set(port.payload, wd)
            ctx.set(port.valid, 1)
            await ctx.tick().until(port.ready)
        ctx.set(port.valid, 0)

    async def cmd_tb(ctx):
        await feed(ctx, dut.cmd, cmds)

    async def data_tb(ctx):
        await feed(ctx, dut.data, data)

    async def res_tb(ctx):
        ctx.set(dut.res.ready, 1)
        for _ in range(2000):
            _, _, v, pl = await ctx.tick().sample(dut.res.valid, dut.res.payload)
            if v:
                got.append(pl)
            if len(got) == n_res:
                break

    sim.add_testbench(cmd_tb)
    sim.add_testbench(data_tb)
    sim.add_testbench(res_tb)
    sim.run()
    assert len(got) == n_res
    acc = x @ w.T                                     # [npos, O]
    z = acc * m + b
    y = (z + (1 << (S - 1))) >> S
    it = iter(got)
    for p in range(npos):
        for g in range(ngroups):
            beat = isa.decode_result(cfg, next(it))
            assert beat.kind == 0
            assert list(beat.values) == list(y[p, g * R:(g + 1) * R]), (p, g)
    assert len(dut.data.payload) == baseline_data_width(cfg)


def test_driver_runs_a_bundle_on_the_baseline_bit_exact_with_golden():
    """``infer(..., baseline=True)`` on ``MACArray`` in the simulator equals the golden model at
    k = N for a 7-bit bundle and at k = 7 for an 8-bit one; k = 8 needs 9-bit weights (q_8 is odd
    in [-255, 255]) that int8 cannot hold, so the driver refuses it."""
    from bundles import random_bundle

    from progressivenn.sim.compare import compare_outputs, golden_outputs
    from progressivenn.sim.driver import infer
    from progressivenn.sim.transport import AmaranthTransport

    # small weight memory: wdepth // nbits = 8 int8 words, so conv2 (6 chunks) loads one group
    # at a time
    # (the engine's shared post-processing lanes are ignored: the baseline keeps one per row)
    cfg = EngineConfig(rows=4, cols=8, abits=8, nbits=8, max_reduction=64, mbits=18, bbits=40,
                       obits=32, wdepth=64, adepth=64, ppdepth=16, accdepth=16, pp_lanes=1)
    for nbits, k in ((7, 7), (8, 7)):
        b = random_bundle(1, nbits=nbits)
        tr = AmaranthTransport(cfg, component=MACArray, stall=0.2, seed=nbits)
        res = tr.run(infer(b, cfg, b.test_x[0], k=k, baseline=True))
        exp = [e[0] for e in golden_outputs(b, b.test_x[:1], k)]
        cmp = compare_outputs(b, res.outputs, exp, k=k, image=0)
        assert cmp.compared > 0 and cmp.mismatches == 0, (nbits, k, cmp.first)
        # the baseline is the engine with an int8 exec stage: the same counters, one pass a chunk
        assert res.counters["busy"] == res.ideal_cycles > 0 and tr.cycles > 0
    b = random_bundle(1, nbits=8)
    with pytest.raises(ValueError, match="k <= 7"):
        AmaranthTransport(cfg, component=MACArray).run(
            infer(b, cfg, b.test_x[0], k=8, baseline=True))


def test_icebreaker_top_elaborates_to_rtlil():
    """Quick default check: the whole iCEBreaker top (bridge + engine) elaborates for its
    platform and the pin/clock file names the board's pins."""
    from progressivenn.hw.build import constraint_text  # noqa: F401

    spec = board_spec("icebreaker")
    plan = board_platform(spec).prepare(BoardTop(spec), name="top")
    files = plan.files
    assert "top.il" in files and "top.pcf" in files
    pcf = files["top.pcf"]
    pcf = pcf.decode() if isinstance(pcf, bytes) else pcf
    assert "set_io uart_0__rx__io 6" in pcf and "set_frequency clk12_0__io 12.0" in pcf


def _ulx3s_plan(core=None):
    spec = board_spec("ulx3s-85f")
    assert spec.design_mode == "resident"
    return board_platform(spec).prepare(BoardTop(spec, core=core), name="top")


def test_ulx3s_top_pll_and_constraints():
    """The ULX3S top runs at the PLL's 30 MHz (3 Mbaud exact): the LPF constrains the PLL clock
    and the pins, the netlist has the EHXPLLL (a stand-in core: the resident system is
    elaborated by the slow test below)."""
    from progressivenn.hw.build import _Placeholder
    from progressivenn.hw.boards import EngineOverUART

    spec = board_spec("ulx3s-85f", mode="streamed")
    core = EngineOverUART(spec.cfg, divisor=10, engine=_Placeholder(spec.cfg))
    plan = _ulx3s_plan(core)
    lpf = plan.files["top.lpf"]
    lpf = lpf.decode() if isinstance(lpf, bytes) else lpf
    assert 'FREQUENCY PORT "clk25_0__io" 25000000.0 HZ' in lpf
    assert "30000000.0 HZ" in lpf and 'SITE "M1"' in lpf
    il = plan.files["top.il"]
    assert "EHXPLLL" in il and "CLKFB_DIV" in il


@pytest.mark.slow
def test_ulx3s_resident_top_elaborates():
    """The ULX3S-85F default top: resident bridge + resident engine (8 x 16) behind the PLL."""
    il = _ulx3s_plan().files["top.il"]
    assert "EHXPLLL" in il and "tapbank8" in il


@pytest.mark.slow
def test_ulx3s_resident_policy_top_elaborates():
    """``pnn build --board ulx3s-85f --policy``: the policy wrapper (its gate registers) around
    the engine with the board's netlist options, behind the bridge and the PLL."""
    spec = board_spec("ulx3s-85f")
    il = board_platform(spec).prepare(BoardTop(spec, engine="policy"), name="top").files["top.il"]
    assert "EHXPLLL" in il and "tapbank8" in il and "gate0" in il and "policy" in il


def test_program_without_a_programmer_names_the_tools(monkeypatch, tmp_path, capsys):
    """``pnn build --program`` with neither iceprog nor openFPGALoader: one line naming them,
    exit 2, before anything is built; programming without a bitstream names the file."""
    from progressivenn.cli import main
    from progressivenn.hw import build

    monkeypatch.setattr(build, "_which", lambda exe: None)
    for var in ("ICEPROG", "OPENFPGALOADER"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(build.ToolMissing, match="iceprog or openFPGALoader not found"):
        build.programmer("icebreaker")
    with pytest.raises(build.ToolMissing, match="openFPGALoader not found: install one"):
        build.programmer("ulx3s-85f")
    capsys.readouterr()
    assert main(["build", "--board", "icebreaker", "--program", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "iceprog or openFPGALoader not found" in err[0], err
    assert not any(tmp_path.iterdir())                     # nothing was built
    monkeypatch.setattr(build, "_which", lambda exe: "/bin/true")
    with pytest.raises(FileNotFoundError, match="no bitstream"):
        build.program_board("icebreaker", tmp_path)
    assert build.programmer("icebreaker")[2] == "platform"


def test_bad_baud_and_mode_options_exit_2(capsys, tmp_path):
    from progressivenn.cli import main

    # 30 MHz / 2.2 Mbaud = 13.6: divisor 14 is 2.6% off
    assert main(["build", "--board", "ulx3s-85f", "--baud", "2200000", "--out",
                 str(tmp_path)]) == 2
    assert "off by 2.6%" in capsys.readouterr().err
    assert main(["build", "--board", "ulx3s-12f", "--mode", "resident", "--out",
                 str(tmp_path)]) == 2
    assert "no resident configuration" in capsys.readouterr().err
    assert main(["build", "--board", "ulx3s-85f", "--mode", "resident", "--baseline", "--out",
                 str(tmp_path)]) == 2
    capsys.readouterr()
    for args in (["--board", "ulx3s-85f", "--mode", "streamed"], ["--board", "ulx3s-12f"],
                 ["--board", "ulx3s-85f", "--baseline"]):
        assert main(["build", *args, "--policy", "--out", str(tmp_path)]) == 2
        assert "--policy wraps the resident engine" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


# ---- full builds (minutes each): pytest -m fpga ---------------------------------------------------

@pytest.mark.fpga
@pytest.mark.parametrize("board", ["icebreaker", "ulx3s-85f"])
def test_board_bitstream_builds_and_meets_timing(board, tmp_path):
    from progressivenn.hw.build import build_board

    r = build_board(board, out=tmp_path / board)
    assert r["mode"] == board_spec(board).design_mode       # the board's default design
    assert r["bitstream"] and Path(r["bitstream"]).stat().st_size > 0
    assert r["timing_met"], r
    assert r["logic_cells"] <= r["logic_cells_available"]
    assert (tmp_path / board / "top.report.json").is_file()     # figures from nextpnr's JSON
    json.dumps(r)


@pytest.mark.fpga
@pytest.mark.parametrize("board,dsp", [("icebreaker", False), ("icebreaker", True),
                                       ("ulx3s-85f", True)])
def test_baseline_builds(board, dsp, tmp_path):
    from progressivenn.hw.build import build_board

    r = build_board(board, baseline=True, dsp=dsp, out=tmp_path / board)
    assert r["design"].startswith("baseline-int8")


def test_throughput_per_lut_rows_and_reports(tmp_path):
    """The inferences/s-per-LUT tool: engine (shared post-processing lane) and baseline runs are
    exact against golden, rates are Fmax / cycles per logic cell; reports of one configuration
    (the baseline's differing only in pp_lanes) load, others are refused."""
    from bundles import random_bundle

    from progressivenn.sim.throughput import format_table, load_reports, throughput_per_lut

    cfg = EngineConfig(rows=4, cols=8, abits=8, nbits=8, max_reduction=64, mbits=18, bbits=40,
                       obits=32, wdepth=64, adepth=64, ppdepth=64, accdepth=16, pp_lanes=1)
    b = random_bundle(1, nbits=7)

    def report(design, board, lc, fmax, c=cfg):
        return {"design": design, "board": board, "rows": c.rows, "cols": c.cols, "fits": True,
                "luts": lc - 100, "logic_cells": lc, "fmax_mhz": fmax, "dsps": 0,
                "config": c.to_dict()}

    paths = []
    for n, rep in enumerate([report("engine", "b", 1000, 50.0),
                             report("baseline-int8-lut", "b", 4000, 40.0, cfg.full_rate_pp())]):
        paths.append(tmp_path / f"r{n}.json")
        paths[-1].write_text(json.dumps(rep))
    board, got_cfg, builds = load_reports(paths)
    assert board == "b" and got_cfg == cfg and set(builds) == {"engine", "baseline-int8-lut"}
    rows = throughput_per_lut(b, builds=builds, cfg=cfg, ks=(1, 7), baseline_tile_positions=(None,))
    assert [(r["design"], r["k"]) for r in rows] == [("engine", 1), ("engine", 7),
                                                     ("baseline-int8-lut", 7)]
    for r in rows:
        assert r["compared"] > 0 and r["mismatches"] == 0, r
        assert r["inf_per_s"] == pytest.approx(r["fmax_mhz"] * 1e6 / r["cycles"])
        assert r["inf_per_s_per_lc"] == pytest.approx(r["inf_per_s"] / r["logic_cells"])
    eng = {r["k"]: r for r in rows if r["design"] == "engine"}
    assert eng[1]["cycles"] < eng[7]["cycles"] and eng[7]["busy"] >= eng[7]["ideal_cycles"]
    assert "values exact" in format_table(rows)
    other = tmp_path / "other.json"
    other.write_text(json.dumps(report("engine-lut", "b", 900, 50.0, replace(cfg, cols=4))))
    with pytest.raises(ValueError, match="more than one engine configuration"):
        load_reports(paths + [other])


def test_sim_engine_options_board_and_pp_lanes():
    """``pnn sim/dynamic --board`` simulates a board's engine exactly; ``--pp-lanes`` shares the
    post-processing lanes (with room for the same table entries); bad values are named."""
    import argparse

    from bundles import random_bundle

    from progressivenn.commands.sim import add_engine_arguments, engine_config

    p = argparse.ArgumentParser()
    add_engine_arguments(p)
    b = random_bundle(1, nbits=4)
    assert engine_config(p.parse_args(["--board", "ulx3s-12f"]), b) == BOARDS["ulx3s-12f"].cfg
    cfg = engine_config(p.parse_args(["--rows", "4", "--cols", "8", "--pp-lanes", "1"]), b)
    assert (cfg.pp_par, cfg.pp_slices) == (1, 4) and cfg.pp_entries == EngineConfig().ppdepth
    with pytest.raises(ValueError, match="unknown board 'nope'"):
        engine_config(p.parse_args(["--board", "nope"]), b)
    with pytest.raises(ValueError, match="pp_lanes 3 must divide rows 4"):
        engine_config(p.parse_args(["--rows", "4", "--pp-lanes", "3"]), b)


def test_resident_impl_same_results_and_memory_mapping(monkeypatch):
    """ResidentImpl (the iCEBreaker's: program memory in block RAM, single-port weight memory
    for SPRAM, one post-processing lane per two rows with merged stages, logits and busy counts
    in a results memory, narrow tags) changes the netlist only: the same net (a fused pool, a 1x1
    convolution at k=2), images, k and random back-pressure give the same layers (against
    golden), classes, logits, busy counters and cycles as the default engine; the memories carry
    the Yosys attributes, the default RTLIL none of them; the iCEBreaker's resident build asks
    Yosys for SPRAM and drops the zero init of its SPRAM memories."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_resident import ODD_B, chain_bundle, check_all, fused, small_cfg  # noqa: E402

    from amaranth.back import rtlil

    from progressivenn.hw import build
    from progressivenn.hw.resident import engine as eng_mod
    from progressivenn.hw.resident.impl import ResidentImpl
    from progressivenn.sim import resident as rs

    b = chain_bundle(2, ODD_B, input_shape=(5, 6, 7), images=2)
    prog = rs.compile_program(b, small_cfg(rows=4, cols=8, pp_shared=True))
    ks = [2]            # ODD_B has one-chunk layers: k = 1 is refused (test_pp_shared_guard)
    kw = dict(seed=3, p_idle=0.3, p_stall=0.5)
    plain = rs.run_amaranth(prog, b.test_x, ks, **kw)
    impl = BOARDS["icebreaker"].resident_impl
    assert impl == ResidentImpl(prog_ram=True, weights_single_port=True, desc_from_ram=True,
                                pp_read_late=True, collisions_undefined=True, pp_shared=True,
                                pp_merge_stages=True, results_ram=True, narrow_tags=True,
                                lean_bridge=True)
    cls = eng_mod.ResidentEngine
    monkeypatch.setattr(eng_mod, "ResidentEngine", lambda cfg: cls(cfg, impl=impl))
    mapped = rs.run_amaranth(prog, b.test_x, ks, **kw)
    check_all(b, prog, mapped, ks, fused=fused(prog))
    for got, want in zip(sum(mapped, []), sum(plain, [])):
        assert (got.cls, got.k, got.cycles, got.busy) == (want.cls, want.k, want.cycles, want.busy)
        assert np.array_equal(np.asarray(got.logits), np.asarray(want.logits))
        assert all(np.array_equal(g, w) for g, w in zip(got.maps, want.maps))
    monkeypatch.undo()

    def text(**kw):
        return rtlil.convert(cls(small_cfg(pp_shared=bool(kw)), **kw), name="top")

    assert "ram_style" not in text()
    assert text() == text(impl=ResidentImpl())
    assert rtlil.convert(cls(small_cfg()), name="top") == \
        rtlil.convert(cls(small_cfg(pp_shared=True)), name="top")     # a host-side flag
    mapped = text(impl=impl)
    assert 'attribute \\ram_style "huge"' in mapped and 'attribute \\ram_style "block"' in mapped
    with pytest.raises(TypeError, match="impl must be a ResidentImpl"):
        cls(small_cfg(), impl=True)
    with pytest.raises(ValueError, match="prog_ram must be True or False"):
        ResidentImpl(prog_ram=1)
    with pytest.raises(ValueError, match="desc_from_ram needs prog_ram"):
        ResidentImpl(desc_from_ram=True)
    with pytest.raises(ValueError, match="needs double_buffer off"):
        cls(small_cfg(double_buffer=True), impl=impl)
    with pytest.raises(ValueError, match="pp_shared needs pp_read_late"):
        ResidentImpl(pp_shared=True)
    with pytest.raises(ValueError, match="results_ram needs pp_shared"):
        ResidentImpl(results_ram=True)
    with pytest.raises(ValueError, match="even number of rows"):
        cls(small_cfg(rows=1), impl=ResidentImpl(pp_read_late=True, pp_shared=True))
    with pytest.raises(ValueError, match=r"needs ResidentConfig\(pp_shared=True\)"):
        cls(small_cfg(), impl=impl)
    spec = board_spec("icebreaker", mode="resident")
    assert "-spram" in build._design(spec, False, None)[3]
    script = build._script_after_read(spec).splitlines()
    assert script[:2] == [f"delete t:$meminit_v2 r:MEMID=\\\\{m} %i" for m in ("wmem", "resmem")]
    assert script[2:] == [f"setparam -set COLLISION_X_MASK 1'1 t:$memrd_v2 r:MEMID=\\\\{m} %i"
                          for m in ("prog", "ppmem", "fmem")]
    streamed = board_spec("icebreaker", mode="streamed")
    assert "-spram" not in build._design(streamed, False, None)[3]
    assert build._script_after_read(streamed) == ""


def test_icebreaker_impl_behind_the_bridge():
    """The iCEBreaker's ResidentImpl behind the resident bridge (the lean command word, logits
    and busy counts in the results memory, one post-processing lane per two rows): a tiny net
    loaded over the byte link (tap-bank images packed on chip), its class and logits at two k
    equal golden's, its busy counters the cycle model's."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_resident_link import CFG, CYCLE, _golden, tiny  # noqa: E402

    from progressivenn.hw.resident.layout import cmd_layout
    from progressivenn.hw.resident.system import ResidentSystem
    from progressivenn.sim import resident as rs
    from progressivenn.sim.resident_link import AmaranthBytePort, ResidentLink

    impl = BOARDS["icebreaker"].resident_impl
    assert impl.lean_bridge and impl.results_ram and impl.pp_shared
    # 12 address bits: the data field starts on a byte; pp_shared: as the iCEBreaker's
    cfg = replace(CFG, wdepth=4096, pp_shared=True)
    system = ResidentSystem(cfg, 100e6, None, impl=impl)
    assert system.bridge.lean and system.bridge._aligned and system.engine.impl == impl
    assert cmd_layout(CFG)["data"].offset % 8      # CFG's 9 address bits: the mux packer
    port = AmaranthBytePort(system, seed=1, max_cycles=3000, gap=0.1)
    link = ResidentLink(port, timeout=60_000 * CYCLE, probe=3_000 * CYCLE, counters=True)
    info = link.connect()
    assert info["cfg"] == cfg
    b = tiny()
    prog = rs.compile_program(b, info["cfg"])
    assert link.load(prog) is True
    for i, k in ((0, 2), (1, 3)):
        r = link.infer(b.test_x[i], k)
        assert (r.cls, r.logits) == _golden(b, i, k) and r.k == k
        assert r.busy == rs.expected_busy(prog, k)
    # the identify reply said pp_shared: a one-chunk convolution at k = 1 is refused before
    # the load (test_pp_shared_guard)
    from test_resident import chain_bundle  # noqa: E402

    from progressivenn.sim.resident_link import run_images

    one = chain_bundle(3, [("conv", 3, (1, 1), (1, 1), (0, 0)), ("flatten",), ("linear", 3)],
                       input_shape=(2, 4, 4))
    with pytest.raises(ValueError, match=r"^resident: k = 1 would lose outputs of conv0 "):
        run_images(link, one, [0], 1)


def test_pp_shared_guard(monkeypatch):
    """The iCEBreaker's post-processing lanes are shared by row pairs (``pp_shared``): a group
    needs two cycles in the PE array, so a one-chunk convolution (a 1x1 kernel over at most
    ``cols`` channels) run at k = 1 would lose outputs. Its configuration says so (it reaches the
    host in the identify reply) and the host refuses such a RUN in one line naming the layer;
    k >= 2 and the digits net (3x3 kernels) at every k pass. With the guard off, the engine built
    with the iCEBreaker's ResidentImpl does lose outputs of that layer at k = 1."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_resident import DIGITS, chain_bundle, check_all  # noqa: E402

    from progressivenn.hw.resident import engine as eng_mod
    from progressivenn.hw.resident.bridge import IDENT_TAIL, ident_prefix
    from progressivenn.sim import resident as rs
    from progressivenn.sim.resident_link import decode_ident

    cfg = BOARDS["icebreaker"].resident
    assert cfg.pp_shared and board_spec("icebreaker", rows=4).resident.pp_shared
    body = ident_prefix(cfg, fifo_depth=64, credit_unit=255, max_payload=255) + bytes(IDENT_TAIL)
    assert decode_ident(body)["cfg"] == cfg                   # the host learns it from the board
    one = chain_bundle(3, [("conv", 4, (3, 3), (1, 1), (1, 1)), ("conv", 3, (1, 1), (1, 1), (0, 0)),
                           ("flatten",), ("linear", 5)], input_shape=(1, 4, 4), nbits=8)
    prog = rs.compile_program(one, cfg)
    assert [pl.desc["nchunks"] for pl in prog.layers] == [9, 1, 16]
    with pytest.raises(ValueError, match=r"^resident: k = 1 would lose outputs of conv1 \(program "
                                         r"layer 1\): 1 chunk x 1 plane per output group.*k >= 2$"):
        rs.run_beats(prog, 1)
    assert len(rs.run_beats(prog, 2)) == 1
    free = rs.compile_program(one, replace(cfg, pp_shared=False))   # another engine: no limit
    assert len(rs.run_beats(free, 1)) == 1
    digits = rs.compile_program(chain_bundle(5, DIGITS, input_shape=(1, 8, 8), nbits=8), cfg)
    assert all(rs.shared_lanes_refusal(digits, k) is None for k in range(1, cfg.nbits + 1))
    # what the guard prevents: the guard off, the iCEBreaker's engine at k = 1 drops conv1's
    # second-half rows (reads 0), at k = 2 it equals golden
    impl, cls = BOARDS["icebreaker"].resident_impl, eng_mod.ResidentEngine
    monkeypatch.setattr(eng_mod, "ResidentEngine", lambda c: cls(c, impl=impl))
    monkeypatch.setattr(rs, "shared_lanes_refusal", lambda p, k: None)
    check_all(one, prog, rs.run_amaranth(prog, one.test_x, [2]), [2])
    with pytest.raises(AssertionError, match="'name': 'conv1'"):
        check_all(one, prog, rs.run_amaranth(prog, one.test_x, [1]), [1])
