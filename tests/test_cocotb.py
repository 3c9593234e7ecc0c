"""cocotb on the generated Verilog: whole networks from a bundle vs the golden model.

The default run is a small regression on Icarus and Verilator (random network, every k, random
back-pressure, reset in the middle of a job); the digits network at every k is ``slow``.
"""

import json
import os
from pathlib import Path

import pytest

from bundles import have_simulator, random_bundle
from progressivenn.hw.isa import EngineConfig
from progressivenn.model.bundle import save_bundle
from progressivenn.sim.runner import run_regression

BUILD = Path(__file__).resolve().parent.parent / "build" / "test-sim"


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_random_network_every_k(tmp_path, simulator):
    if not have_simulator(simulator):
        pytest.fail(f"{simulator} is not installed (make setup installs it)")
    b = random_bundle(seed=3, nbits=4, images=2)
    save_bundle(b, tmp_path / "bundle")
    # Verilator's engine shares one post-processing lane over its 2 rows (pp_lanes=1)
    lanes = 1 if simulator == "verilator" else 0
    cfg = EngineConfig(rows=2, cols=4, abits=8, nbits=4, max_reduction=64, wdepth=64, adepth=32,
                       ppdepth=32, accdepth=32, pp_lanes=lanes)
    rep = run_regression(tmp_path / "bundle", cfg, simulator=simulator, images=2,
                         bits=[1, 2, 3, 4], stall=0.2, build_root=BUILD)
    assert rep["failed_tests"] == [], rep
    assert rep["mismatches"] == 0, rep["first_mismatch"]
    # every output of every layer, every image, every k
    per_image = sum(int(__import__("numpy").prod(l.out_shape)) for l in b.layers)
    assert rep["compared_values"] == per_image * 2 * 4
    for k in ("1", "2", "3", "4"):
        s = rep["per_k"][k]
        assert s["compute_cycles"] == s["ideal_cycles"]   # chunks issued (stalls not counted)


def test_an_injected_fault_is_caught(tmp_path):
    """The judge can fail: one result bit flipped on its way from the RTL is found and located."""
    b = random_bundle(seed=4, nbits=2, images=1)
    save_bundle(b, tmp_path / "bundle")
    cfg = EngineConfig(rows=2, cols=4, abits=8, nbits=2, max_reduction=64, wdepth=64, adepth=32,
                       ppdepth=16, accdepth=32)
    rep = run_regression(tmp_path / "bundle", cfg, simulator="icarus", images=1, bits=[2],
                         stall=0.0, build_root=BUILD, reset_test=False, inject_fault=True)
    assert rep["mismatches"] > 0
    assert rep["failed_tests"] == ["regression"]
    first = rep["first_mismatch"]
    assert {"layer", "channel", "position", "k", "expected", "got"} <= set(first)


@pytest.mark.slow
def test_digits_bundle_every_k(tmp_path):
    bundle = os.environ.get("PNN_DIGITS_BUNDLE")
    if not bundle:
        pytest.skip("set PNN_DIGITS_BUNDLE to a digits bundle (made by make demo: demo/bundle)")
    from progressivenn.model.bundle import load_bundle
    from progressivenn.sim.driver import plan_layers
    b = load_bundle(bundle)
    base = EngineConfig(abits=b.abits, nbits=b.nbits)
    cfg = EngineConfig(abits=b.abits, nbits=b.nbits,
                       max_reduction=max(p.reduction for p in plan_layers(b, base)))
    rep = run_regression(bundle, cfg, simulator="verilator", images=20, build_root=BUILD)
    assert rep["mismatches"] == 0, rep["first_mismatch"]
