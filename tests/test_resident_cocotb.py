"""Resident mode on the generated Verilog under cocotb (Icarus and Verilator): every layer of every
image at every k against the golden model, random idle cycles and back-pressure."""

from __future__ import annotations

import pytest

from progressivenn.hw.resident import ResidentConfig
from progressivenn.model.bundle import save_bundle
from progressivenn.sim.resident_runner import run_resident_cocotb

from bundles import have_simulator
from test_resident import chain_bundle, small_cfg, ODD_B, TAPS_B, DIGITS

SIMS = [pytest.param(s, marks=pytest.mark.skipif(not have_simulator(s),
                                                 reason=f"{s} is not installed (make setup)"))
        for s in ("icarus", "verilator")]


def _run(tmp_path, bundle, cfg, sim, bits, **kw):
    save_bundle(bundle, tmp_path / "bundle")
    rep = run_resident_cocotb(tmp_path / "bundle", cfg, simulator=sim, bits=bits,
                              build_root=tmp_path / "build", **kw)
    assert rep["failed_tests"] == [], rep["sim_log"]
    assert rep["mismatches"] == 0, rep["first_mismatch"]
    for k in map(str, bits):
        assert rep["per_k"][k]["compared"] > 0
        assert "busy_model_differs" not in rep["per_k"][k]
    return rep


@pytest.mark.slow
@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("net", ["odd", "taps"])
def test_small_nets_every_k(tmp_path, sim, net):
    if net == "odd":
        b, cfg = chain_bundle(2, ODD_B, input_shape=(5, 6, 7), images=2), small_cfg(rows=4,
                                                                                    cols=8)
    else:
        b, cfg = chain_bundle(3, TAPS_B, input_shape=(1, 6, 6), images=2), small_cfg(
            rows=4, cols=16, taps=9, tapdepth=64)
    _run(tmp_path, b, cfg, sim, [1, 2, 3], images=2, stall=0.3)


@pytest.mark.slow
@pytest.mark.parametrize("sim", SIMS)
def test_digits_net_every_k(tmp_path, sim):
    b = chain_bundle(5, DIGITS, input_shape=(1, 8, 8), nbits=8, images=1)
    rep = _run(tmp_path, b, ResidentConfig(), sim, list(range(1, 9)), images=1, stall=0.2)
    assert rep["per_k"]["1"]["cycles"][0] / rep["per_k"]["8"]["cycles"][0] <= 0.14
