"""BWB fake-quant layers, activation quantizer, switchable BN, networks and datasets."""

import gzip

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from progressivenn.model import golden
from progressivenn.model.bwb import (ActQuant, BWBConv2d, BWBLinear, SwitchableBatchNorm, planes,
                                     set_k, set_quant, weight_alpha, weight_codes)
from progressivenn.model.data import load_dataset, read_idx
from progressivenn.model.nets import build_net, from_sequential


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(0, 2 ** 31 - 1))
def test_effective_weight_is_alpha_times_q_k(nbits, seed):
    torch.manual_seed(seed)
    lin = BWBLinear(7, 3, nbits=nbits).double()
    u = lin.codes()
    assert int(u.min()) >= 0 and int(u.max()) <= (1 << nbits) - 1
    alpha = lin.alpha().double()
    for k in range(1, nbits + 1):
        lin.k = k
        want = alpha[:, None] * 2.0 ** (nbits - k) * golden.q_k(u, k, nbits).double()
        assert torch.allclose(lin.effective_weight(), want, rtol=1e-12, atol=0)


def test_codes_are_nearest_on_the_grid():
    w = torch.tensor([[-1.0, -0.5, 0.0, 0.26, 1.0]])
    alpha = weight_alpha(w, 3)                   # max|w| / 7
    u = weight_codes(w, alpha, 3)
    q = 2 * u - 7
    assert q.tolist() == [[-7, -3, 1, 1, 7]]      # 0 rounds half up to +1 (no zero in BWB)


def test_straight_through_gradient():
    conv = BWBConv2d(2, 3, 3, padding=1, nbits=8)
    x = torch.randn(4, 2, 5, 5)
    for k in (1, 8):
        conv.k = k
        conv.weight.grad = None
        conv(x).sum().backward()
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_act_quant_codes_round_half_up_and_clip():
    aq = ActQuant(abits=4, init_clip=1.5)         # scale 0.1
    x = torch.tensor([-1.0, 0.0, 0.049, 0.05 + 1e-6, 0.26, 1.49, 3.0])
    codes = aq(x) / aq.scale()
    assert torch.allclose(codes, torch.tensor([0.0, 0, 0, 1, 3, 15, 15]), atol=1e-5)
    aq.clip.grad = None
    aq(torch.linspace(-1, 3, 50, requires_grad=True)).sum().backward()
    assert aq.clip.grad is not None


def test_switchable_bn_and_set_k():
    net = build_net("digits", input_scale=16 / 255)
    set_k(net, 3)
    assert all(b.table == 3 for b in net.bn_modules())
    assert all(blk.op.k == 3 for blk in net.compute_blocks())
    with planes(net, 1, table=8):
        assert net.compute_blocks()[0].op.k == 1 and net.bn_modules()[0].table == 8
    assert net.compute_blocks()[0].op.k == 3 and net.bn_modules()[0].table == 3
    for bad in (0, 9, 1.5, True):
        with pytest.raises(ValueError, match="k must be an integer in \\[1, 8\\]"):
            set_k(net, bad)
    bn = SwitchableBatchNorm(4, nbits=2, dims=1)
    assert len(bn.tables) == 2


def test_reference_nets_shapes_and_float_mode():
    for name, shape in (("digits", (1, 8, 8)), ("mnist", (1, 28, 28)), ("cifar10", (3, 32, 32))):
        net = build_net(name, input_scale=1 / 255).eval()
        x = torch.randint(0, 256, (2, *shape))
        assert net(x).shape == (2, 10)
        set_quant(net, False)
        assert net(x).shape == (2, 10)
    digits = build_net("digits", input_scale=1.0)
    kinds = [type(s).__name__ for s in digits.stages]
    assert kinds == ["ComputeBlock", "MaxPool2d", "ComputeBlock", "MaxPool2d", "Flatten",
                     "ComputeBlock"]
    assert digits.compute_blocks()[-1].op.in_features == 128
    with pytest.raises(ValueError, match="unknown network"):
        build_net("imagenet", input_scale=1.0)


@pytest.mark.parametrize("layers,msg", [
    ([nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(72, 3)], "followed by"),
    ([nn.Flatten(), nn.Linear(64, 3), nn.ReLU()], "no ReLU"),
    ([nn.Conv2d(1, 2, 3), nn.ReLU()], "must be nn.Linear"),
    ([nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(18, 3)], "unsupported"),
    ([nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Linear(72, 3)], "flat input"),
    ([nn.Conv2d(1, 2, 3, groups=1, dilation=2), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3)], "dilation"),
    ([nn.Flatten(), nn.Linear(65, 3)], "do not fit"),
])
def test_from_sequential_refuses(layers, msg):
    with pytest.raises(ValueError, match=msg):
        from_sequential(nn.Sequential(*layers), input_shape=(1, 8, 8))


def test_digits_dataset_split_and_codes():
    ds = load_dataset("digits")
    assert ds.train_x.shape == (1437, 1, 8, 8) and ds.test_x.shape == (360, 1, 8, 8)
    assert ds.train_x.dtype == np.uint8 and int(ds.train_x.max()) == 255
    assert np.bincount(ds.test_y).min() >= 35               # stratified
    again = load_dataset("digits")
    assert np.array_equal(ds.test_x, again.test_x)          # fixed split
    from sklearn.datasets import load_digits
    vals = set(np.unique(load_digits().images).astype(int))
    codes = {(v * 255 + 8) // 16 for v in vals}
    assert set(np.unique(ds.test_x)) <= codes
    ds4 = load_dataset("digits", abits=4)
    assert int(ds4.train_x.max()) == 15 and abs(ds4.input_scale - 16 / 15) < 1e-12


def _write_idx(path, arr, gz):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_reader(tmp_path, gz):
    rng = np.random.default_rng(0)
    ext = ".gz" if gz else ""
    for split, n in (("train", 12), ("t10k", 5)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte{ext}", rng.integers(0, 256, (n, 28, 28)), gz)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte{ext}", rng.integers(0, 10, n), gz)
    ds = load_dataset("mnist", tmp_path)
    assert ds.train_x.shape == (12, 1, 28, 28) and ds.test_y.shape == (5,)
    assert ds.input_scale == 1 / 255
    raw = read_idx(tmp_path / f"t10k-images-idx3-ubyte{ext}")
    assert np.array_equal(ds.test_x[:, 0], raw)


def test_datasets_refuse_bad_input(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="needs --data-dir"):
        load_dataset("mnist")
    with pytest.raises(FileNotFoundError, match="no such directory"):
        load_dataset("mnist", tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="missing train-images"):
        load_dataset("mnist", tmp_path)
    with pytest.raises(FileNotFoundError, match="CIFAR-10"):
        load_dataset("cifar10", tmp_path)
    (tmp_path / "bad").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05ab")
    with pytest.raises(ValueError, match="expected 5 bytes"):
        read_idx(tmp_path / "bad")


def test_weight_codes_do_not_depend_on_the_dtype():
    """A weight just below 0 sits on the k=1 code boundary: float32 arithmetic would round
    ``w/(2 alpha) + 128`` up to 128 (MSB set, +1) where float64 gives 127 (-1)."""
    w = torch.tensor([[1.0, -1e-8, 0.5, -0.25]])
    for nbits in (8, 4):
        a32, a64 = weight_alpha(w, nbits), weight_alpha(w.double(), nbits)
        u32, u64 = weight_codes(w, a32, nbits), weight_codes(w.double(), a64, nbits)
        assert torch.equal(u32, u64)
        assert int(u32[0, 1]) == (1 << (nbits - 1)) - 1      # the negative weight: MSB clear
    lin = BWBLinear(4, 1, bias=False, nbits=8)
    with torch.no_grad():
        lin.weight.copy_(w)
    lin.k = 1
    w32 = lin.effective_weight().detach().double()
    w64 = lin.double().effective_weight().detach()
    assert torch.equal(torch.sign(w32), torch.sign(w64)) and torch.allclose(w32, w64, rtol=1e-6)
    assert float(w64[0, 1]) < 0
