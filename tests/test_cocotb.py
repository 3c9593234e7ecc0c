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
#: the simulators to run, cocotb's SIM variable honoured (SIM=verilator, SIM=icarus,verilator)
SIMS = [s.strip() for s in os.environ.get("SIM", "icarus,verilator").split(",") if s.strip()]


def need(simulator: str) -> None:
    """Skip, with the reason, a simulator that SIM deselects or that is not installed."""
    if simulator not in SIMS:
        pytest.skip(f"SIM={os.environ.get('SIM')} does not select {simulator}")
    if not have_simulator(simulator):
        pytest.skip(f"{simulator} is not installed (make setup installs it)")


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_random_network_every_k(tmp_path, simulator):
    need(simulator)
    b = random_bundle(seed=3, nbits=4, images=2)
    save_bundle(b, tmp_path / "bundle")
    # Verilator's engine shares one post-processing lane over its 2 rows (pp_lanes=1)
    lanes = 1 if simulator == "verilator" else 0
    cfg = EngineConfig(rows=2, cols=4, abits=8, nbits=4, max_reduction=64, wdepth=64, adepth=32,
                       ppdepth=32, accdepth=32, pp_lanes=lanes)
    # separate pause generators: source idles and sink back-pressure, different rates
    pause = {"idle": 0.3, "backpressure": 0.1} if simulator == "icarus" else \
        {"idle": 0.1, "backpressure": 0.4}
    rep = run_regression(tmp_path / "bundle", cfg, simulator=simulator, images=2,
                         bits=[1, 2, 3, 4], build_root=BUILD, **pause)
    assert rep["failed_tests"] == [], rep
    assert rep["mismatches"] == 0, rep["first_mismatch"]
    # every output of every layer, every image, every k
    per_image = sum(int(__import__("numpy").prod(l.out_shape)) for l in b.layers)
    assert rep["compared_values"] == per_image * 2 * 4
    for k in ("1", "2", "3", "4"):
        s = rep["per_k"][k]
        assert s["compute_cycles"] == s["ideal_cycles"]   # chunks issued (stalls not counted)


def test_pause_generators():
    import itertools

    from progressivenn.sim.cocotb_transport import pauses

    rnd = list(itertools.islice(pauses(0.3, seed=1), 4000))
    assert 0.25 < sum(rnd) / len(rnd) < 0.35
    assert list(itertools.islice(pauses(itertools.cycle([1, 0, 0])), 6)) == [1, 0, 0, 1, 0, 0]
    assert not any(itertools.islice(pauses(None), 100))
    with pytest.raises(ValueError, match="pause probability"):
        next(pauses(1.5))


def _idle_backpressure(tmp_path, simulator, idle, backpressure, seed):
    need(simulator)
    b = random_bundle(seed=seed, nbits=3, images=1)
    save_bundle(b, tmp_path / "bundle")
    cfg = EngineConfig(rows=2, cols=4, abits=8, nbits=3, max_reduction=64, wdepth=64, adepth=32,
                       ppdepth=32, accdepth=32)
    rep = run_regression(tmp_path / "bundle", cfg, simulator=simulator, images=1, bits=[1, 2, 3],
                         idle=idle, backpressure=backpressure, seed=seed, build_root=BUILD,
                         reset_test=False)
    assert rep["failed_tests"] == [], rep
    assert rep["mismatches"] == 0, rep["first_mismatch"]
    assert rep["compared_values"] > 0


@pytest.mark.slow  # two more simulator runs; the default regression above crosses them already
@pytest.mark.parametrize("idle,backpressure", [(0.5, 0.0), (0.0, 0.5)])
def test_idle_and_backpressure_separately(tmp_path, idle, backpressure):
    """Source pauses alone, sink back-pressure alone (k = 1..3 each), on the first of SIM."""
    _idle_backpressure(tmp_path, SIMS[0], idle, backpressure, seed=7)


@pytest.mark.slow
@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
@pytest.mark.parametrize("idle", [0.0, 0.3, 0.7])
@pytest.mark.parametrize("backpressure", [0.0, 0.3, 0.7])
def test_k_x_idle_x_backpressure(tmp_path, simulator, idle, backpressure):
    _idle_backpressure(tmp_path, simulator, idle, backpressure, seed=8)


def test_an_injected_fault_is_caught(tmp_path):
    """The judge can fail: one result bit flipped on its way from the RTL is found and located."""
    need("icarus")
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


def test_build_if_stale_reuses_rebuilds_and_forgets_objects(tmp_path, monkeypatch):
    """runner.build_if_stale (every runner's build, the streamed one included): a build with the
    same flags newer than its sources is reused; newer sources rebuild on the old objects; other
    flags (make variables alone included: Verilator would skip its unchanged run) start from no
    objects and no binary."""
    import cocotb_tools.runner as cocotb_runner

    from progressivenn.sim import runner

    seen = []

    class FakeRunner:
        def build(self, *, sources, hdl_toplevel, build_dir, **kw):
            seen.append(sorted(p.name for p in Path(build_dir).iterdir()))
            (Path(build_dir) / "obj.o").write_text("object")
            (Path(build_dir) / hdl_toplevel).write_text("binary")

    monkeypatch.setattr(cocotb_runner, "get_runner", lambda simulator: FakeRunner())
    src, build = tmp_path / "top.v", tmp_path / "build"
    src.write_text("module top; endmodule\n")
    build.mkdir()

    def go(make):
        runner.build_if_stale("verilator", [src], "top", build, ["-O3"], make)

    go(["OPT=-O2"])
    assert len(seen) == 1 and json.loads((build / "build_args.json").read_text()) == \
        ["-O3", "OPT=-O2"]
    go(["OPT=-O2"])
    assert len(seen) == 1                                     # reused
    later = (build / "top").stat().st_mtime + 10
    os.utime(src, (later, later))
    go(["OPT=-O2"])
    assert len(seen) == 2 and {"obj.o", "top"} <= set(seen[-1])   # rebuilt on its objects
    go(["OPT=-Os"])
    assert len(seen) == 3 and not {"obj.o", "top", "build_args.json"} & set(seen[-1])
    assert json.loads((build / "build_args.json").read_text()) == ["-O3", "OPT=-Os"]
