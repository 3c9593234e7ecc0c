"""Resident mode on the generated Verilog under cocotb (Icarus and Verilator): every layer of every
image at every k against the golden model, random idle cycles and back-pressure, a reset in the
middle of an image; odd shapes; the MNIST reference shape; the simulator build reused."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from progressivenn.hw.resident import ResidentConfig
from progressivenn.model.bundle import save_bundle
from progressivenn.simulation import parse_bits
from progressivenn.sim.resident_runner import (run_resident_cocotb, build_resident, bench_top,
                                               BENCH_TOP)

from bundles import have_simulator
from test_resident import chain_bundle, small_cfg, ODD_A, ODD_B, TAPS_B, DIGITS, MNIST

SIMS = [pytest.param(s, marks=pytest.mark.skipif(not have_simulator(s),
                                                 reason=f"{s} is not installed (make setup)"))
        for s in ("icarus", "verilator")]
MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def builds(tmp_path_factory):
    """One simulator build folder for the whole session: tests of one configuration share it."""
    return tmp_path_factory.mktemp("resident-builds")


def _run(tmp_path, builds, bundle, cfg, sim, bits, **kw):
    save_bundle(bundle, tmp_path / "bundle")
    rep = run_resident_cocotb(tmp_path / "bundle", cfg, simulator=sim, bits=bits,
                              build_root=builds, **kw)
    assert rep["failed_tests"] == [], rep["sim_log"]
    assert rep["mismatches"] == 0, rep["first_mismatch"]
    for k in map(str, bits):
        assert rep["per_k"][k]["compared"] > 0
        assert "busy_model_differs" not in rep["per_k"][k]
    return rep


@pytest.mark.slow
@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("net", ["odd_a", "odd_b", "taps"])
def test_small_nets_every_k(tmp_path, builds, sim, net):
    """Odd channel counts, stride 2, a 5x5 unpadded convolution, non-square pools, linear after
    linear, tap banks; ``odd_a`` and ``taps`` unfused (every layer's own output read back with
    READ_FM and compared), ``odd_b`` with its (1, 2) pool fused into the stride-2 convolution;
    random idle cycles and back-pressure (0.3); a reset in the middle of an image."""
    cfg = small_cfg(rows=4, cols=8)
    if net == "odd_a":
        b = chain_bundle(1, ODD_A, input_shape=(3, 7, 6), images=2)
    elif net == "odd_b":
        b = chain_bundle(2, ODD_B, input_shape=(5, 6, 7), images=2)
    else:
        b, cfg = chain_bundle(3, TAPS_B, input_shape=(1, 6, 6), images=2), small_cfg(
            rows=4, cols=16, taps=9, tapdepth=64)
    _run(tmp_path, builds, b, cfg, sim, [1, 2, 3], images=2, stall=0.3, fuse=net != "odd_b")


@pytest.mark.slow
@pytest.mark.parametrize("sim", SIMS)
def test_digits_net_every_k(tmp_path, builds, sim):
    """The digits shape at every k 1..8 with random idle cycles and back-pressure (0.2), pools
    fused; whole-image cycles scale as k/8."""
    b = chain_bundle(5, DIGITS, input_shape=(1, 8, 8), nbits=8, images=1)
    rep = _run(tmp_path, builds, b, ResidentConfig(), sim, list(range(1, 9)), images=1,
               stall=0.2)
    assert rep["per_k"]["1"]["cycles"][0] / rep["per_k"]["8"]["cycles"][0] <= 0.14


@pytest.mark.slow
@pytest.mark.parametrize("net", ["odd_a", "taps"])
@pytest.mark.skipif(not have_simulator("icarus"), reason="icarus is not installed")
def test_double_buffer_verilog(tmp_path, builds, net):
    """``double_buffer`` builds on Icarus (feature-map buffers; tap-bank halves): the buffers
    alternate every RUN (2 images x k=1..3), every layer against golden, idle cycles and
    back-pressure 0.3, a reset in the middle of an image."""
    if net == "odd_a":
        b, cfg = chain_bundle(1, ODD_A, input_shape=(3, 7, 6), images=2), small_cfg(
            rows=4, cols=8, double_buffer=True)
    else:
        b, cfg = chain_bundle(3, TAPS_B, input_shape=(1, 6, 6), images=2), small_cfg(
            rows=4, cols=16, taps=9, tapdepth=64, double_buffer=True)
    _run(tmp_path, builds, b, cfg, "icarus", [1, 2, 3], images=2, stall=0.3, fuse=False)


def _mnist_images(n: int):
    """The first ``n`` MNIST test images (codes = pixels at A=8) and labels, or None."""
    from progressivenn.model.data import read_idx

    imgs = MNIST_DIR / "t10k-images-idx3-ubyte.gz"
    if not imgs.exists():
        return None
    x = read_idx(imgs)[:n].astype(np.uint16)[:, None]
    y = read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz")[:n].astype(np.int64)
    return x, y


#: k simulated on the MNIST shape: every k on Verilator (2 images x k=1..8: 1.1 million cycles, a
#: few CPU seconds); on Icarus (about 1,700 cycles per CPU second) ``PNN_MNIST_ICARUS_BITS``, by
#: default k=1,2 (a subset for CI: about 80 CPU seconds); ``PNN_MNIST_ICARUS_BITS=1-8`` runs every
#: k (about 12 CPU minutes)
MNIST_BITS = {"verilator": "1-8", "icarus": os.environ.get("PNN_MNIST_ICARUS_BITS", "1,2")}


@pytest.mark.slow
@pytest.mark.parametrize("sim", SIMS)
def test_mnist_net_every_k(tmp_path, builds, sim):
    """The MNIST reference shape (28x28; conv 1->16, 16->32, 32->64, each with a fused 2x2 pool;
    linear 576->10) with random weights at every k of :data:`MNIST_BITS`: every stored layer of
    two images (real MNIST test images when ../shared/data/mnist holds them, random codes
    otherwise) against golden, busy counters against the model, random idle cycles and
    back-pressure (0.2), a reset in the middle of an image; whole-image cycles scale as k/8."""
    bits = parse_bits(MNIST_BITS[sim], 8)
    b = chain_bundle(6, MNIST, input_shape=(1, 28, 28), nbits=8, images=2)
    real = _mnist_images(2)
    if real is not None:
        b.test_x, b.test_y = real
    rep = _run(tmp_path, builds, b, ResidentConfig(), sim, bits, images=2, stall=0.2)
    cyc = {int(k): max(v["cycles"]) for k, v in rep["per_k"].items()}
    if 1 in cyc and 8 in cyc:
        assert 0.12 < cyc[1] / cyc[8] <= 0.14, cyc


def test_bench_top_and_build_reused(tmp_path):
    """The bench top wraps the engine with its ports and a clock; a second build of the same
    configuration reuses the first (Icarus: the compiled file is not rewritten)."""
    cfg = small_cfg()
    text = bench_top(cfg)
    assert f"module {BENCH_TOP}(" in text and "always #5 clk = ~clk;" in text
    assert "pnn_resident engine(.clk(clk), .rst(rst)" in text
    if not have_simulator("icarus"):
        pytest.skip("icarus is not installed")
    d = build_resident(cfg, "icarus", tmp_path)
    vvp = d / "sim.vvp"
    t0 = vvp.stat().st_mtime_ns
    assert build_resident(cfg, "icarus", tmp_path) == d
    assert vvp.stat().st_mtime_ns == t0


@pytest.mark.skipif(not have_simulator("verilator"), reason="verilator is not installed")
def test_verilator_lint_waivers(tmp_path):
    """The generated resident Verilog as every Verilator build takes it (``verilator_sources``: the
    lint waivers ``.vlt`` first, ``VERILATOR_ARGS``): no warning; without the waivers, Amaranth's
    warnings (so the check can fail)."""
    import subprocess

    from progressivenn.hw.resident.generate import generate_resident_verilog
    from progressivenn.sim.runner import VERILATOR_ARGS, find_simulator, verilator_sources

    find_simulator("verilator")
    v = generate_resident_verilog(small_cfg(), tmp_path)
    counts = []
    for srcs in ([v], verilator_sources("verilator", [v])):
        r = subprocess.run(["verilator", "--lint-only", *VERILATOR_ARGS, "--top-module",
                            "pnn_resident", *map(str, srcs)], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        counts.append(r.stderr.count("%Warning"))
    assert [p.suffix for p in verilator_sources("verilator", [v])] == [".vlt", ".v"]
    assert verilator_sources("icarus", [v]) == [v]
    assert counts[0] > 0 and counts[1] == 0, counts
