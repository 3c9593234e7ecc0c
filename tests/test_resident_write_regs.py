"""``ResidentImpl(write_regs=True)`` (part of the ULX3S resident build's netlist options, ``hw/boards.py:
ULX3S_RESIDENT_IMPL``): every memory the commands write (weights, tables, program, feature map,
tap banks) takes its write address, data and enable from its own register and is written one cycle
after the command. The engine must accept the same beats in the same cycles and give the same words
and cycle counts as the default engine: with random idle cycles and back-pressure, images of the
next RUN written while the current one computes (double buffer, feature map and tap banks),
behind the resident bridge, and on the generated Verilog under Verilator (the digits net)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from progressivenn.hw.boards import BOARDS
from progressivenn.hw.resident import engine as eng_mod
from progressivenn.hw.resident.impl import ResidentImpl
from progressivenn.sim import resident as rs

from bundles import have_simulator
from test_resident import ODD_A, TAPS_A, DIGITS, chain_bundle, check_all, fused, small_cfg

IMPL = BOARDS["ulx3s-85f"].resident_impl


def _patch(monkeypatch, impl):
    cls = eng_mod.ResidentEngine
    monkeypatch.setattr(eng_mod, "ResidentEngine", lambda cfg: cls(cfg, impl=impl))


def test_ulx3s_impl():
    assert IMPL == ResidentImpl(write_regs=True, collisions_undefined=True, lean_bridge=True)
    assert BOARDS["ulx3s-45f"].resident_impl == IMPL
    with pytest.raises(ValueError, match="write_regs must be True or False"):
        ResidentImpl(write_regs=1)


@pytest.mark.parametrize("double_buffer", [True, False], ids=["double-buffer", "single"])
@pytest.mark.parametrize("specs,shape", [(ODD_A, (3, 7, 6)), (TAPS_A, (1, 7, 9))],
                         ids=["feature-map", "tap-banks"])
def test_same_words_cycles_and_acceptance(monkeypatch, specs, shape, double_buffer):
    """Every layer against golden; class, logits, busy counters, whole-image cycles, read-back
    maps and the next image's beats accepted before the SUMMARY equal the default engine's, with
    idle cycles (0.3) and back-pressure (0.5); with the double buffer the next image is written
    while the current one computes (its feature-map words wait for the port while layers write
    it)."""
    b = chain_bundle(7, specs, input_shape=shape, images=2)
    prog = rs.compile_program(b, small_cfg(double_buffer=double_buffer))
    ks = [1, 2]
    kw = dict(seed=5, p_idle=0.8 if double_buffer else 0.3, p_stall=0.5, overlap=double_buffer)
    plain = rs.run_amaranth(prog, b.test_x, ks, **kw)
    _patch(monkeypatch, IMPL)
    regs = rs.run_amaranth(prog, b.test_x, ks, **kw)
    check_all(b, prog, regs, ks, fused=fused(prog))
    runs = sum(regs, [])
    if double_buffer:
        assert all(r.next_early > 0 for r in runs[:-1])
    for got, want in zip(runs, sum(plain, []), strict=True):
        assert (got.cls, got.k, got.cycles, got.busy, got.next_beats, got.next_early) == \
            (want.cls, want.k, want.cycles, want.busy, want.next_beats, want.next_early)
        assert np.array_equal(np.asarray(got.logits), np.asarray(want.logits))
        assert all(np.array_equal(g, w) for g, w in zip(got.maps, want.maps, strict=True))


def test_registers_in_the_netlist_only_when_asked():
    """The option adds the named registers; the default RTLIL has none of them (and equals
    ``ResidentImpl()``'s)."""
    from amaranth.back import rtlil

    cls = eng_mod.ResidentEngine
    cfg = small_cfg(double_buffer=True)
    plain = rtlil.convert(cls(cfg), name="top")
    assert plain == rtlil.convert(cls(cfg, impl=ResidentImpl()), name="top")
    regs = rtlil.convert(cls(cfg, impl=IMPL), name="top")
    names = ("w_wr_data", "pp_wr_data", "pg_wr_data", "fm_wr_data", "fm_wr_pend", "tap_wr_data")
    assert all(f"\\{n}" in regs for n in names)
    assert not any(f"\\{n}" in plain for n in names)


@pytest.mark.parametrize("wdepth", [512, 4096], ids=["low-bits-mux", "payload-register"])
def test_behind_the_bridge_overlapped(wdepth):
    """The ULX3S options in ``ResidentSystem`` (a double-buffered engine, the lean bridge: with
    9 address bits only the low command bits pass a multiplexer, with 12 the packer keeps its word
    in the frame payload register, as on the ULX3S) over the byte link: the network loaded,
    images sent two deep (the next one written while the current one computes), every answer
    golden's."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_resident_link import CFG, CYCLE, tiny  # noqa: E402

    from progressivenn.hw.resident.system import ResidentSystem
    from progressivenn.sim.resident_link import AmaranthBytePort, ResidentLink, run_images

    cfg = replace(CFG, double_buffer=True, wdepth=wdepth)
    system = ResidentSystem(cfg, 100e6, None, impl=IMPL)
    assert system.engine.impl == IMPL and system.bridge.lean
    assert system.bridge._aligned == (wdepth == 4096)
    port = AmaranthBytePort(system, seed=2, max_cycles=3000, gap=0.3)
    link = ResidentLink(port, timeout=60_000 * CYCLE, probe=3_000 * CYCLE)
    b = tiny(images=3)
    for k in (1, 3):
        rep = run_images(link, b, [0, 1, 2, 1], k, overlap=True)
        assert rep["all_agree"] and rep["link"]["retries"] == 0 and rep["overlap"]
        assert [r["image"] for r in rep["results"]] == [0, 1, 2, 1]


@pytest.mark.slow
@pytest.mark.skipif(not have_simulator("verilator"), reason="verilator is not installed")
def test_digits_net_on_verilator(tmp_path, monkeypatch):
    """The digits shape at every k on the Verilog of the ULX3S resident engine (its own
    build folder): every layer against golden, random idle cycles and back-pressure (0.2), a
    reset in the middle of an image."""
    from progressivenn.hw.boards import ULX3S_RESIDENT_CFG
    from progressivenn.hw.resident import generate
    from progressivenn.model.bundle import save_bundle
    from progressivenn.sim.resident_runner import run_resident_cocotb

    cls = generate.ResidentEngine
    monkeypatch.setattr(generate, "ResidentEngine", lambda cfg: cls(cfg, impl=IMPL))
    cfg = ULX3S_RESIDENT_CFG          # the board's: 8 x 16, double-buffered, 9 tap banks
    verilog = generate.generate_resident_verilog(cfg, tmp_path / "gen")
    assert "fm_wr_pend" in verilog.read_text() and "tap_wr_data" in verilog.read_text()
    b = chain_bundle(5, DIGITS, input_shape=(1, 8, 8), nbits=8, images=1)
    save_bundle(b, tmp_path / "bundle")
    bits = list(range(1, 9))
    rep = run_resident_cocotb(tmp_path / "bundle", cfg, simulator="verilator", bits=bits,
                              images=1, stall=0.2, build_root=tmp_path / "builds",
                              generated=verilog)
    assert rep["failed_tests"] == [], rep["sim_log"]
    assert rep["mismatches"] == 0, rep["first_mismatch"]
    for k in map(str, bits):
        assert rep["per_k"][k]["compared"] > 0
        assert "busy_model_differs" not in rep["per_k"][k]
