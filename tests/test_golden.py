"""Property tests of the numeric contract (docs/architecture.md "Numeric contract") and the
network-level golden model."""

from fractions import Fraction
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from progressivenn.model import golden
from progressivenn.model.bwb import planes
from progressivenn.model.fold import fold_network
from progressivenn.model.nets import from_sequential

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def layer_case(draw, max_o=4, max_i=12):
    n = draw(st.integers(1, 16))
    a = draw(st.integers(1, 12))
    k = draw(st.integers(1, n))
    o = draw(st.integers(1, max_o))
    i = draw(st.integers(1, max_i))
    b = draw(st.integers(1, 3))
    u = draw(st.lists(st.integers(0, (1 << n) - 1), min_size=o * i, max_size=o * i))
    x = draw(st.lists(st.integers(0, (1 << a) - 1), min_size=b * i, max_size=b * i))
    return n, a, k, torch.tensor(u).reshape(o, i), torch.tensor(x).reshape(b, i)


@SETTINGS
@given(layer_case())
def test_q_k_is_odd_and_in_range(case):
    n, _, k, u, _ = case
    q = golden.q_k(u, k, n)
    assert torch.all(q % 2 != 0)
    assert torch.all(q.abs() <= (1 << k) - 1)


@SETTINGS
@given(layer_case())
def test_truncation_is_the_top_k_planes(case):
    """q_k is the {-1,+1}-plane sum of the top k planes, and the k-bit code of u >> (N-k)."""
    n, _, k, u, _ = case
    q = golden.q_k(u, k, n)
    from_planes = sum((1 << (j - (n - k))) * golden.plane(u, j) for j in range(n - k, n))
    assert torch.equal(q, from_planes)
    assert torch.equal(q, golden.q_k(u >> (n - k), k, k))
    # one more plane refines: q_{k+1} = 2*q_k + b_{N-k-1}
    if k < n:
        assert torch.equal(golden.q_k(u, k + 1, n), 2 * q + golden.plane(u, n - k - 1))


@SETTINGS
@given(layer_case())
def test_plane_by_plane_equals_direct(case):
    n, _, k, u, x = case
    assert torch.equal(golden.acc_planes(u, x, k, n), golden.acc_direct(u, x, k, n))


@SETTINGS
@given(layer_case())
def test_plane_sum_is_signed_sum(case):
    n, _, _, u, x = case
    for j in range(n):
        assert torch.equal(golden.plane_sum(u, x, j), x @ golden.plane(u, j).T)


@SETTINGS
@given(layer_case())
def test_acc_within_bound(case):
    n, a, k, u, x = case
    acc = golden.acc_direct(u, x, k, n)
    assert int(acc.abs().max()) <= golden.acc_bound(k, u.shape[1], a)


@pytest.mark.parametrize("n,a,k,i", [(8, 8, 8, 144), (8, 8, 1, 9), (16, 16, 16, 4096), (3, 5, 2, 7)])
def test_acc_bound_is_reached(n, a, k, i):
    x = torch.full((1, i), (1 << a) - 1)
    for u in (torch.zeros(1, i, dtype=torch.int64), torch.full((1, i), (1 << n) - 1)):
        assert abs(int(golden.acc_planes(u, x, k, n))) == golden.acc_bound(k, i, a)


@SETTINGS
@given(st.integers(-(1 << 60), 1 << 60), st.integers(0, 40))
def test_rounding_is_round_half_up(z, s):
    got = int(golden.round_shift(torch.tensor([z]), s))
    assert got == math.floor(Fraction(z, 1 << s) + Fraction(1, 2))


@SETTINGS
@given(st.lists(st.integers(-(1 << 24), 1 << 24), min_size=1, max_size=8), st.integers(-(1 << 17), (1 << 17) - 1),
       st.integers(-(1 << 40), 1 << 40), st.integers(0, 40), st.integers(1, 16))
def test_postprocess_clamps_hidden_and_not_logits(acc, m, b, s, a):
    acc = torch.tensor(acc)
    mm, bb = torch.full((1,), m), torch.full((1,), b)
    raw = golden.postprocess(acc[:, None], mm, bb, s, relu=False, abits=a)
    hid = golden.postprocess(acc[:, None], mm, bb, s, relu=True, abits=a)
    assert torch.equal(raw, golden.round_shift(acc[:, None] * m + b, s))
    assert torch.equal(hid, raw.clamp(0, (1 << a) - 1))


def test_bad_k_and_float_refused():
    u = torch.zeros(2, 3, dtype=torch.int64)
    for k in (0, 9, -1, 2.0, True):
        with pytest.raises(ValueError, match="k must be an integer in \\[1, 8\\]"):
            golden.acc_planes(u, torch.zeros(1, 3, dtype=torch.int64), k, 8)
    with pytest.raises(TypeError, match="integer"):
        golden.acc_direct(u, torch.zeros(1, 3), 1, 8)
    with pytest.raises(ValueError, match="shift"):
        golden.round_shift(torch.tensor([1]), -1)


def test_argmax_lowest_index_wins_ties():
    logits = torch.tensor([[3, 7, 7, 1], [-2, -2, -2, -2], [0, 0, 5, 5]])
    assert golden.argmax_first(logits).tolist() == [1, 0, 2]


# ---- whole network: fake-quant torch vs integer golden --------------------------------------------

def tiny_net(seed=0, nbits=8, abits=8):
    """A tiny conv/pool/linear net with random weights and random (non-trivial) BN tables."""
    torch.manual_seed(seed)
    seq = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=True), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Flatten(), nn.Linear(24, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 5))
    net = from_sequential(seq, input_shape=(1, 8, 8), nbits=nbits, abits=abits, input_scale=1 / 255)
    g = torch.Generator().manual_seed(seed)
    for bn in net.bn_modules():
        for t in bn.tables:
            c = t.num_features
            t.running_mean.copy_(torch.randn(c, generator=g) * 0.3)
            t.running_var.copy_(torch.rand(c, generator=g) + 0.05)
            t.weight.data.copy_(torch.randn(c, generator=g))   # negative gammas included
            t.bias.data.copy_(torch.randn(c, generator=g) + 0.5)
    for af in net.affine_modules():   # per-k scale/offset of the logits layer (no BN), signs mixed
        sign = torch.where(torch.rand(af.weight.shape, generator=g) < 0.2, -1.0, 1.0)
        af.weight.data.copy_(sign * (torch.rand(af.weight.shape, generator=g) + 0.5))
        af.bias.data.copy_(torch.randn(af.bias.shape, generator=g))
    for blk in net.compute_blocks():
        if blk.act is not None:
            blk.act.clip.data.fill_(2.0)
    return net.eval()


def tiny_inputs(n=64, seed=1, abits=8):
    return np.random.default_rng(seed).integers(0, 1 << abits, (n, 1, 8, 8)).astype(np.uint8)


def tiny_bundle(seed=0, n_test=16):
    net = tiny_net(seed)
    x = tiny_inputs(n_test)
    y = np.arange(n_test) % 5
    return fold_network(net, test_x=x, test_y=y, dataset="tiny"), net


def test_planes_and_direct_agree_on_a_network():
    b, _ = tiny_bundle()
    for k in (1, 3, 8):
        for ts in ("retrained", "fixed"):
            p = golden.run_network(b, b.test_x, k, ts, "planes")
            d = golden.run_network(b, b.test_x, k, ts, "direct")
            assert len(p.outputs) == len(b.layers)
            for a_, b_ in zip(p.outputs, d.outputs):
                assert a_.dtype == torch.int64 and torch.equal(a_, b_)
            assert torch.equal(p.pred, golden.argmax_first(p.logits))


def test_output_shapes_follow_the_bundle():
    b, _ = tiny_bundle()
    r = golden.run_network(b, b.test_x, 4)
    for out, layer in zip(r.outputs, b.layers):
        assert tuple(out.shape[1:]) == tuple(layer.out_shape)
    assert r.logits.shape == (len(b.test_x), 5)


def _torch_codes(net, x, k):
    """Hidden activation codes and logits of the fake-quant torch model (float64)."""
    net = net.double()
    h = torch.from_numpy(x.astype(np.int64)).double() * net.input_scale
    codes = []
    with torch.no_grad(), planes(net, k):
        for stg in net.stages:
            h = stg(h)
            act = getattr(stg, "act", None)
            if act is not None:
                codes.append(torch.floor(h / act.scale().double() + 0.5).long())
    net.float()
    return codes, h


@pytest.mark.parametrize("k", [1, 2, 5, 8])
def test_fake_quant_torch_matches_integer_golden(k):
    b, net = tiny_bundle(n_test=128)
    x = tiny_inputs(128)
    b.test_x = x
    r = golden.run_network(b, x, k)
    codes, logits = _torch_codes(net, x, k)
    hidden = [o for o, layer in zip(r.outputs, b.layers) if layer.kind in ("conv", "linear")][:-1]
    assert len(hidden) == len(codes) == 3
    for t_codes, g_codes in zip(codes, hidden):
        diff = (t_codes - g_codes).abs()
        assert int(diff.max()) <= 1, "golden and torch differ by more than one code"
        assert float((diff > 0).double().mean()) < 0.01
    # logits: golden y * logit_scale approximates the torch logits
    scale = b.meta["logit_scale"]["retrained"][k - 1]
    err = (r.logits.double() * scale - logits).abs().max()
    assert float(err) < 1e-3 * float(logits.abs().max()) + 0.05
    agree = float((r.pred == logits.argmax(1)).double().mean())
    assert agree >= 0.95


def test_run_network_refuses_bad_input():
    b, _ = tiny_bundle()
    with pytest.raises(ValueError, match="k must be an integer"):
        golden.run_network(b, b.test_x, 0)
    with pytest.raises(ValueError, match="k must be an integer"):
        golden.run_network(b, b.test_x, 9)
    with pytest.raises(ValueError, match="tables"):
        golden.run_network(b, b.test_x, 1, tables="other")
    with pytest.raises(ValueError, match="method"):
        golden.run_network(b, b.test_x, 1, method="float")
    with pytest.raises(ValueError, match="x_codes must be"):
        golden.run_network(b, b.test_x[:, :, :4], 1)
    with pytest.raises(ValueError, match="activation codes"):
        golden.run_network(b, b.test_x.astype(np.int64) - 1, 1)
    with pytest.raises(TypeError, match="integer"):
        golden.run_network(b, b.test_x.astype(np.float32), 1)


@pytest.mark.parametrize("nbits,abits", [(4, 4), (12, 10), (1, 8)])
def test_other_widths_fold_and_agree(nbits, abits):
    net = tiny_net(3, nbits=nbits, abits=abits)
    x = np.random.default_rng(2).integers(0, 1 << abits, (64, 1, 8, 8))
    b = fold_network(net, test_x=x, test_y=np.zeros(64, np.int64), dataset="tiny")
    assert b.test_x.dtype == (np.uint8 if abits <= 8 else np.uint16)
    assert b.layers[0].tables["retrained"].M.shape == (nbits, 4)
    for k in sorted({1, nbits}):
        r = golden.run_network(b, b.test_x, k, method="planes")
        assert torch.equal(r.logits, golden.run_network(b, b.test_x, k, method="direct").logits)
        codes, logits = _torch_codes(net, b.test_x, k)
        hidden = [o for o, layer in zip(r.outputs, b.layers) if layer.kind in ("conv", "linear")]
        for t_codes, g_codes in zip(codes, hidden[:-1]):
            assert int((t_codes - g_codes).abs().max()) <= 1
        assert int(hidden[0].max()) <= (1 << abits) - 1
