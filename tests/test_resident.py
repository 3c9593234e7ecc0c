"""Resident mode in the Amaranth simulator against the golden model: every layer of every image at
every k (read back from the on-chip feature maps), busy counters against the cycle model, fit
check, shared word layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from progressivenn.hw.resident import ResidentConfig, ResidentEngine
from progressivenn.hw.resident.layout import desc_layout, cmd_layout, Op, Kind
from progressivenn.model.bundle import Bundle, LayerSpec, validate_bundle
from progressivenn.model.bundle import conv_out_hw
from progressivenn.sim import resident as rs
from progressivenn.sim.compare import golden_outputs, compare_outputs

from bundles import _tables

torch.set_num_threads(1)


def chain_bundle(seed, specs, *, input_shape, nbits=3, abits=8, images=1) -> Bundle:
    """A random chain bundle from ``specs``: ("conv", O, kernel, stride, padding),
    ("pool", kernel, stride), ("flatten",), ("linear", O); the last linear gives the logits."""
    rng = np.random.default_rng(seed)
    shape = tuple(input_shape)
    layers = []
    for i, s in enumerate(specs):
        last = i == len(specs) - 1
        if s[0] == "conv":
            _, O, kern, stride, pad = s
            h, w = conv_out_hw(shape[1], shape[2], kern, stride, pad)
            red = shape[0] * kern[0] * kern[1]
            layers.append(LayerSpec(f"conv{i}", "conv", shape, (O, h, w), kern, stride, pad,
                                    rng.integers(0, 1 << nbits, size=(O, red)), True,
                                    _tables(rng, nbits, O, True)))
            shape = (O, h, w)
        elif s[0] == "pool":
            _, kern, stride = s
            h, w = conv_out_hw(shape[1], shape[2], kern, stride, (0, 0))
            layers.append(LayerSpec(f"pool{i}", "maxpool", shape, (shape[0], h, w), kern, stride,
                                    (0, 0)))
            shape = (shape[0], h, w)
        elif s[0] == "flatten":
            layers.append(LayerSpec(f"flatten{i}", "flatten", shape, (int(np.prod(shape)),)))
            shape = (int(np.prod(shape)),)
        else:
            O = s[1]
            layers.append(LayerSpec(f"fc{i}", "linear", shape, (O,), None, None, None,
                                    rng.integers(0, 1 << nbits, size=(O, shape[0])), not last,
                                    _tables(rng, nbits, O, not last)))
            shape = (O,)
    test_x = rng.integers(0, 1 << abits, size=(images, *input_shape)).astype(np.uint16)
    return validate_bundle(Bundle(nbits=nbits, abits=abits, mbits=18, input_shape=input_shape,
                                  num_classes=shape[0], input_scale=1.0, dataset="random",
                                  layers=layers, test_x=test_x,
                                  test_y=np.zeros(images, dtype=np.int64), meta={}))


# odd channel counts (3, 5, 7 > C), a 5x5 unpadded conv, a non-square pool, a stride-2 conv,
# linear after flatten and linear after linear
ODD_A = [("conv", 5, (5, 5), (1, 1), (0, 0)), ("pool", (2, 1), (2, 1)), ("flatten",),
         ("linear", 3)]
ODD_B = [("conv", 7, (3, 3), (2, 2), (1, 1)), ("pool", (1, 2), (1, 2)),
         ("conv", 5, (1, 1), (1, 1), (0, 0)), ("flatten",), ("linear", 6), ("linear", 3)]
DIGITS = [("conv", 16, (3, 3), (1, 1), (1, 1)), ("pool", (2, 2), (2, 2)),
          ("conv", 32, (3, 3), (1, 1), (1, 1)), ("pool", (2, 2), (2, 2)), ("flatten",),
          ("linear", 10)]


def small_cfg(nbits=3, **kw):
    base = dict(rows=2, cols=4, nbits=nbits, abits=8, wdepth=1024, ppdepth=128, fmdepth=512,
                taps=4, tapdepth=256)
    base.update(kw)
    return ResidentConfig(**base)


def check_all(bundle, prog, results, ks, *, fused=0):
    """Every layer's output of every image and k against golden (but the ``fused`` convolutions
    whose pool was fused into them); busy counters against the model P*k*nchunks*ngroups."""
    for i, per_k in enumerate(results):
        for k, r in zip(ks, per_k):
            exp = [e[0] for e in golden_outputs(bundle, bundle.test_x[i:i + 1], k)]
            got = rs.layer_outputs(bundle, prog, r)
            seen = [j for j, v in enumerate(got) if v is not None]
            assert len(seen) == len(exp) - fused
            cmp = compare_outputs(bundle, [got[j] for j in seen], [exp[j] for j in seen],
                                  k=k, image=i)
            assert cmp.mismatches == 0, (cmp.first, [bundle.layers[j].name for j in seen])
            assert cmp.compared == sum(np.asarray(exp[j]).size for j in seen)
            assert r.k == k
            assert r.cls == int(np.argmax(exp[-1]))       # numpy argmax: lowest index wins ties
            assert r.busy == rs.expected_busy(prog, k), (k, r.busy, rs.expected_busy(prog, k))


def fused(prog) -> int:
    return sum("+" in pl.name for pl in prog.layers)


@pytest.mark.parametrize("fuse", [False, True], ids=["pool-alone", "pool-fused"])
@pytest.mark.parametrize("specs,shape", [(ODD_A, (3, 7, 6)), (ODD_B, (5, 6, 7))],
                         ids=["5x5-unpadded-pool2x1", "stride2-pool1x2-linear-chain"])
def test_odd_shapes_every_layer_every_k(specs, shape, fuse):
    b = chain_bundle(1, specs, input_shape=shape)
    prog = rs.compile_program(b, small_cfg(), fuse=fuse)
    assert fused(prog) == fuse
    ks = list(range(1, b.nbits + 1))
    check_all(b, prog, rs.run_amaranth(prog, b.test_x, ks), ks, fused=fused(prog))


# one-channel first layers read the tap banks (a whole window per chunk)
TAPS_A = [("conv", 3, (2, 2), (2, 2), (1, 1)), ("pool", (2, 2), (2, 2)), ("flatten",),
          ("linear", 4)]
TAPS_B = [("conv", 5, (3, 3), (1, 1), (1, 1)), ("pool", (2, 2), (2, 2)),
          ("conv", 3, (3, 3), (1, 1), (1, 1)), ("flatten",), ("linear", 3)]


@pytest.mark.parametrize("specs,shape,cfg", [
    (TAPS_A, (1, 7, 9), dict()),
    (TAPS_B, (1, 6, 6), dict(rows=4, cols=16, taps=9, tapdepth=64))],
    ids=["2x2-stride2-pad1", "3x3-pad1-C16"])
def test_tap_banks_every_layer_every_k(specs, shape, cfg):
    b = chain_bundle(3, specs, input_shape=shape)
    prog = rs.compile_program(b, small_cfg(**cfg), fuse=False)
    assert prog.layers[0].desc["taps"] == 1 and prog.layers[0].desc["nchunks"] == 1
    ks = list(range(1, b.nbits + 1))
    check_all(b, prog, rs.run_amaranth(prog, b.test_x, ks), ks)
    prog = rs.compile_program(b, small_cfg(**cfg))            # the pool fused into the taps
    assert fused(prog) == 1
    check_all(b, prog, rs.run_amaranth(prog, b.test_x, ks[::2]), ks[::2], fused=1)


def test_back_pressure_and_idle_source():
    b = chain_bundle(2, ODD_B, input_shape=(5, 6, 7), images=2)
    prog = rs.compile_program(b, small_cfg(rows=4, cols=8))
    ks = [2, 1]
    check_all(b, prog, rs.run_amaranth(prog, b.test_x, ks, seed=3, p_idle=0.3, p_stall=0.5), ks,
              fused=fused(prog))


def test_fixed_tables():
    b = chain_bundle(4, ODD_A, input_shape=(3, 7, 6))
    prog = rs.compile_program(b, small_cfg(), tables="fixed", fuse=False)
    res = rs.run_amaranth(prog, b.test_x, [2])[0][0]
    exp = [e[0] for e in golden_outputs(b, b.test_x[:1], 2, tables="fixed")]
    assert compare_outputs(b, rs.layer_outputs(b, prog, res), exp, k=2, image=0).mismatches == 0


@pytest.mark.slow
def test_digits_net_every_k():
    """The digits reference shape (R=8, C=16, N=8): every layer at every k."""
    b = chain_bundle(5, DIGITS, input_shape=(1, 8, 8), nbits=8)
    ks = list(range(1, 9))
    for fuse in (False, True):
        prog = rs.compile_program(b, ResidentConfig(), fuse=fuse)
        check_all(b, prog, rs.run_amaranth(prog, b.test_x, ks), ks, fused=fused(prog))


MNIST = [("conv", 16, (3, 3), (1, 1), (1, 1)), ("pool", (2, 2), (2, 2)),
         ("conv", 32, (3, 3), (1, 1), (1, 1)), ("pool", (2, 2), (2, 2)),
         ("conv", 64, (3, 3), (1, 1), (1, 1)), ("pool", (2, 2), (2, 2)), ("flatten",),
         ("linear", 10)]


@pytest.mark.slow
def test_mnist_net_k1():
    """The MNIST reference shape (28x28, three conv+pool, linear 576->10) at k=1 and 2, pools
    fused: every stored layer against golden, busy counters against the model."""
    b = chain_bundle(6, MNIST, input_shape=(1, 28, 28), nbits=8)
    prog = rs.compile_program(b, ResidentConfig())
    check_all(b, prog, rs.run_amaranth(prog, b.test_x, [1, 2]), [1, 2], fused=fused(prog))


def test_fit_check_names_memory():
    b = chain_bundle(1, ODD_A, input_shape=(3, 7, 6))
    with pytest.raises(rs.ResidentFitError,
                       match=r"^resident: weight memory needs 249 words, 200 available$"):
        rs.compile_program(b, small_cfg(wdepth=200))
    with pytest.raises(rs.ResidentFitError, match=r"^resident: feature-map memory needs \d+ words"):
        rs.compile_program(b, small_cfg(fmdepth=40, tapdepth=32))
    with pytest.raises(rs.ResidentFitError, match=r"post-processing memory needs 15 words, 14 available"):
        rs.compile_program(b, small_cfg(ppdepth=14))


def test_refuses_what_it_cannot_run():
    with pytest.raises(ValueError, match="rows 3 must divide cols 8"):
        ResidentConfig(rows=3, cols=8, taps=0)
    b = chain_bundle(1, ODD_A, input_shape=(3, 7, 6))
    with pytest.raises(rs.ResidentFitError, match="N=3, A=8; the configuration N=8"):
        rs.compile_program(b, ResidentConfig())
    prog = rs.compile_program(b, small_cfg())
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 3\]"):
        rs.run_beats(prog, 4)
    with pytest.raises(ValueError, match=r"image must be \[3, 7, 6\]"):
        rs.image_beats(prog, np.zeros((3, 6, 6), dtype=np.int64))


def test_layouts_are_shared():
    """The host packs with the same layouts the RTL views: a descriptor round-trips, a command
    is (op, addr, data) at the layout's offsets."""
    cfg = small_cfg()
    b = chain_bundle(1, ODD_B, input_shape=(5, 6, 7))
    prog = rs.compile_program(b, cfg)
    lay = desc_layout(cfg)
    for pl, word in zip(prog.layers, prog.prog_words):
        back = lay.from_bits(word)
        assert {n: (getattr(back, n) if n != "kind" else back.kind) for n in pl.desc} == \
            {n: (Kind(v) if n == "kind" else v) for n, v in pl.desc.items()}
    cl = cmd_layout(cfg)
    word = rs.run_beats(prog, 2)[0]
    assert word & ((1 << cl["op"].width) - 1) == Op.RUN.value
    assert (word >> cl["data"].offset) & 31 == 2
    eng = ResidentEngine(cfg)
    eng._MustUse__silence = True
    assert eng.cmd.payload.shape() == cl


def test_pnn_sim_refuses_resident_bundle_that_does_not_fit(tmp_path, capsys):
    """``pnn sim --mode resident`` refuses, in one line naming the memory, before any build."""
    from progressivenn.cli import main
    from progressivenn.model.bundle import save_bundle

    b = chain_bundle(2, [("conv", 3, (3, 3), (1, 1), (1, 1)), ("flatten",), ("linear", 20)],
                     input_shape=(1, 4, 4), nbits=8, images=2)
    save_bundle(b, tmp_path / "bundle")
    build = tmp_path / "build"
    assert main(["sim", str(tmp_path / "bundle"), "--mode", "resident", "--images", "1",
                 "--build-dir", str(build)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == ["pnn sim: error: resident: logit register file needs 20 classes, "
                                "16 available; --mode streamed runs it"]
    assert not build.exists()


@pytest.mark.parametrize("specs,shape,cfg", [
    (ODD_A, (3, 7, 6), dict()), (TAPS_A, (1, 7, 9), dict())],
    ids=["feature-map", "tap-banks"])
def test_double_buffered_input(specs, shape, cfg):
    """Issue #11: with ``double_buffer`` the next image's beats are accepted while the current
    one computes (all of them before its SUMMARY is offered), every layer bit-exact; without
    overlap the engine gives the same cycles, busy counts and answers as a single-buffered one."""
    b = chain_bundle(7, specs, input_shape=shape, images=2)
    prog = rs.compile_program(b, small_cfg(double_buffer=True, **cfg))
    ks = [1, 2]
    res = rs.run_amaranth(prog, b.test_x, ks, overlap=True)
    check_all(b, prog, res, ks, fused=fused(prog))
    runs = [r for per_k in res for r in per_k]
    assert all(r.next_beats > 0 and r.next_early == r.next_beats for r in runs[:-1])
    assert runs[-1].next_beats == 0
    single = rs.compile_program(b, small_cfg(**cfg))
    key = [[(r.cls, r.cycles, r.busy, r.logits) for r in per_k] for per_k in
           rs.run_amaranth(prog, b.test_x, ks, readback=False)]
    assert key == [[(r.cls, r.cycles, r.busy, r.logits) for r in per_k] for per_k in
                   rs.run_amaranth(single, b.test_x, ks, readback=False)]
