"""The numeric contract's one set of bounds (model/contract.py) against the arithmetic it bounds."""

import numpy as np
import pytest
import torch

from progressivenn.model import contract, golden
from progressivenn.model.bundle import OBITS, BundleError, validate_bundle
from progressivenn.model.fold import FoldError, choose_shift
from progressivenn.hw.isa import EngineConfig
from progressivenn.sim.driver import check_fits

from bundles import random_bundle


@pytest.mark.parametrize("shift", [0, 1, 2, 5, 9])
@pytest.mark.parametrize("zmax", [0, 1, 2, 3, 7, 100, 511, 512, 513])
def test_y_range_is_the_exact_range_of_round_shift(zmax, shift):
    z = torch.arange(-zmax, zmax + 1)
    y = golden.round_shift(z, shift)
    assert contract.y_range(zmax, shift) == (int(y.min()), int(y.max()))


def test_acc_bound_is_reached():
    # all weights at q_k = 2^k - 1 (codes all ones) and activations at 2^A - 1
    k, n, a, red = 3, 4, 5, 7
    u = torch.full((2, red), (1 << n) - 1)
    x = torch.full((red,), (1 << a) - 1)
    assert int(golden.acc_planes(u, x, k, n).max()) == contract.acc_bound(k, red, a)
    assert golden.acc_bound is contract.acc_bound and golden.check_k is contract.check_k


def _edge_table(obits, shift, acc_max):
    """M, B whose largest logit is exactly 2^(obits-1) - 1 with the contract's rounding (and one
    more with the "+ 2^S" rounding the folding and bundle checks used to apply)."""
    top = (1 << (obits - 1)) - 1
    zmax = (top << shift) + ((1 << shift) >> 1) - 1
    m = 1
    b = zmax - acc_max * m
    assert b >= 0
    return np.array([m, -m]), np.array([b, -b]), zmax


@pytest.mark.parametrize("shift", [1, 4, 8])
def test_fits_at_the_exact_edge(shift):
    obits, acc_max = 16, 1000
    M, B, zmax = _edge_table(obits, shift, acc_max)
    assert contract.z_bound(M, B, acc_max) == zmax
    assert contract.y_range(zmax, shift)[1] == (1 << (obits - 1)) - 1
    assert contract.fits(M, B, shift, acc_max=acc_max, obits=obits)
    # the drifted rule ((z + 2^S) >> S) would have refused this table
    assert (zmax + (1 << shift)) >> shift > (1 << (obits - 1)) - 1
    # one more unit of B and it no longer fits
    assert not contract.fits(M, B + np.sign(B) * (1 << shift), shift, acc_max=acc_max,
                             obits=obits)
    assert "beyond signed 16 bits" in contract.fit_problem(M, B + np.sign(B) * (1 << shift),
                                                           shift, acc_max=acc_max, obits=obits)


def test_fits_refuses_z_beyond_int64_headroom():
    assert contract.fits([1], [0], 0, acc_max=(1 << 62) - 1)
    assert not contract.fits([1], [0], 0, acc_max=1 << 62)
    assert not contract.fits([1], [0], 1, acc_max=(1 << 62) - 1)


def _logit_edge_bundle(obits):
    """A random bundle whose last layer's k=N logits reach exactly 2^(obits-1) - 1."""
    b = random_bundle(3)
    last = b.layers[-1]
    red = last.codes.shape[1]
    n = b.nbits
    acc_max = contract.acc_bound(n, red, b.abits)
    for t in last.tables.values():
        s = int(t.S[n - 1])
        M, B, _ = _edge_table(obits, s, acc_max)
        t.M[n - 1] = M[np.arange(t.M.shape[1]) % 2]
        t.B[n - 1] = B[np.arange(t.B.shape[1]) % 2]
    return b


def test_bundle_driver_and_folding_agree_on_the_edge():
    """The three users of the fits rule accept a table at the exact edge and refuse one past it."""
    b = _logit_edge_bundle(OBITS)
    validate_bundle(b)                               # the bundle accepts it
    check_fits(b, EngineConfig(rows=4, cols=8, obits=OBITS, max_reduction=64))   # so does the driver
    t = b.layers[-1].tables["retrained"]
    n = b.nbits
    red = b.layers[-1].codes.shape[1]
    s = int(t.S[n - 1])
    acc_max = contract.acc_bound(n, red, b.abits)
    # folding keeps the largest S that fits: real (m, b) that round exactly to the edge table
    m_real, b_real = t.M[n - 1] / 2.0 ** s, t.B[n - 1] / 2.0 ** s
    # (mbits=2: M = +-1 cannot be scaled up to a larger S)
    mi, bi, si = choose_shift(m_real, b_real, mbits=2, acc_bound=acc_max, last=True, where="t")
    assert si == s and np.array_equal(mi, t.M[n - 1]) and np.array_equal(bi, t.B[n - 1])
    t.B[n - 1] += np.sign(t.B[n - 1]) * (1 << s)     # one more logit unit: all three refuse
    with pytest.raises(BundleError, match="logits can reach"):
        validate_bundle(b)
    with pytest.raises(ValueError, match="logits can reach"):
        check_fits(b, EngineConfig(rows=4, cols=8, obits=OBITS, max_reduction=64))
    try:
        _, _, si = choose_shift(t.M[n - 1] / 2.0 ** s, t.B[n - 1] / 2.0 ** s, mbits=2,
                               acc_bound=acc_max, last=True, where="t")
        assert si < s
    except FoldError:
        pass


@pytest.mark.parametrize("bad", [0, 9, 2.0, True, "3", None])
def test_check_k(bad):
    with pytest.raises(ValueError, match="k must be an integer in \\[1, 8\\]"):
        contract.check_k(bad, 8)
    assert contract.check_k(np.int64(3), 8) == 3


def test_check_int():
    assert contract.check_int("x", np.int32(5), 0, 5) == 5
    with pytest.raises(ValueError, match="x must be an integer in \\[0, 4\\], not 5"):
        contract.check_int("x", 5, 0, 4)
    with pytest.raises(KeyError):
        contract.check_int("x", True, error=KeyError)
