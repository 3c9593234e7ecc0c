"""BWB (bitwise binary) quantization in torch: fake-quant layers for quantization-aware training.

Weights are N-bit codes ``u`` in ``[0, 2^N - 1]`` whose bit-planes read as {-1, +1}. With the top
``k`` planes the effective weight is ``alpha[o] * 2^(N-k) * q_k`` where
``q_k = 2*(u >> (N-k)) - (2^k - 1)`` (:func:`progressivenn.model.golden.q_k`); ``alpha`` is the
per-output-channel step of the N-bit grid. Gradients pass straight through to the latent float
weights.

Activations are unsigned A-bit codes with zero-point 0 and one scale per layer (:class:`ActQuant`,
a learned PACT-style clip ``c``; the scale is ``c / (2^A - 1)``). Rounding is round-half-up
(``floor(v + 0.5)``), the rounding the integer post-processing implements.

Every BWB layer and every :class:`SwitchableBatchNorm` has a current ``k`` (planes used) and the
BN keeps one table per ``k`` ("switchable BN"); a compute layer without BN has a
:class:`SwitchableAffine` instead (a per-k, per-channel scale and offset; on the logits layer it is
the per-k output scale before the argmax). Both fold into the per-k integer tables (M, B) of their
layer. :func:`set_k` and :func:`planes` set ``k`` and the table for a whole network.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
import torch.nn.functional as F

__all__ = [
    "round_half_up", "weight_codes", "weight_alpha", "BWBConv2d", "BWBLinear", "ActQuant",
    "SwitchableBatchNorm", "SwitchableAffine", "set_k", "planes", "set_quant", "check_bits",
]


def check_bits(name: str, value, lo: int = 1, hi: int = 16) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], not {value!r}")
    return value


def round_half_up(v: torch.Tensor) -> torch.Tensor:
    """``floor(v + 0.5)`` with a straight-through gradient."""
    return v + (torch.floor(v + 0.5) - v).detach()


def weight_alpha(w: torch.Tensor, nbits: int) -> torch.Tensor:
    """Per-output-channel step of the N-bit grid: ``max|w[o]| / (2^N - 1)`` (no gradient), in
    float64 whatever the dtype of ``w``, so that the codes do not depend on it (see
    :func:`weight_codes`)."""
    m = w.detach().double().reshape(w.shape[0], -1).abs().amax(dim=1)
    return torch.clamp(m, min=1e-8) / ((1 << nbits) - 1)


def weight_codes(w: torch.Tensor, alpha: torch.Tensor, nbits: int) -> torch.Tensor:
    """Codes ``u = clamp(floor(w / (2 alpha) + 2^(N-1)), 0, 2^N-1)``: ``q_N = 2u - (2^N-1)`` is the
    odd integer nearest to ``w / alpha``. Returned as int64 ``[O, ...]``.

    Computed in float64 for every dtype: a weight next to a code boundary (at k=1 the boundary is
    ``w = 0``) must get the same code in a float32 training run, a float64 evaluation and the
    exported bundle."""
    a = alpha.double().reshape(-1, *([1] * (w.dim() - 1)))
    u = torch.floor(w.detach().double() / (2 * a) + (1 << (nbits - 1)))
    return u.clamp(0, (1 << nbits) - 1).to(torch.int64)


def _fake_weight(w: torch.Tensor, nbits: int, k: int) -> torch.Tensor:
    """``alpha * 2^(N-k) * q_k`` with a straight-through gradient to ``w``."""
    alpha = weight_alpha(w, nbits)
    u = weight_codes(w, alpha, nbits)
    qk = 2 * (u >> (nbits - k)) - ((1 << k) - 1)
    a = alpha.reshape(-1, *([1] * (w.dim() - 1)))
    wq = (a * (1 << (nbits - k)) * qk.to(w.dtype)).to(w.dtype)
    return w + (wq - w).detach()


class _BWBMixin:
    nbits: int
    k: int
    quant: bool

    def _init_bwb(self, nbits: int):
        self.nbits = check_bits("nbits", nbits)
        self.k = nbits
        self.quant = True

    def effective_weight(self) -> torch.Tensor:
        if not self.quant:
            return self.weight
        if not 1 <= self.k <= self.nbits:
            raise ValueError(f"k must be an integer in [1, {self.nbits}] (planes used), not {self.k!r}")
        return _fake_weight(self.weight, self.nbits, self.k)

    def codes(self) -> torch.Tensor:
        """The stored N-bit codes ``u`` as int64 ``[O, I]`` (I in torch's (cin, kh, kw) order)."""
        w = self.weight.detach()
        return weight_codes(w, weight_alpha(w, self.nbits), self.nbits).reshape(w.shape[0], -1)

    def alpha(self) -> torch.Tensor:
        return weight_alpha(self.weight.detach(), self.nbits)


class BWBConv2d(_BWBMixin, nn.Conv2d):
    """``nn.Conv2d`` whose weight is an N-bit BWB code read with the top ``self.k`` planes."""

    def __init__(self, *args, nbits: int = 8, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_bwb(nbits)

    def forward(self, x):
        return self._conv_forward(x, self.effective_weight(), self.bias)


class BWBLinear(_BWBMixin, nn.Linear):
    """``nn.Linear`` whose weight is an N-bit BWB code read with the top ``self.k`` planes."""

    def __init__(self, *args, nbits: int = 8, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_bwb(nbits)

    def forward(self, x):
        return F.linear(x, self.effective_weight(), self.bias)


class _ActQuantFn(torch.autograd.Function):
    """:class:`ActQuant`'s formula ``round_half_up(min(relu(x), c) / s) * s`` (``s = c / levels``)
    with a hand-written backward: the same float operations as autograd on the formula, so the
    values and gradients are bitwise the same (``tests/test_train.py`` checks it), with fewer passes
    over the activations (the masks of ``minimum`` and ``relu`` share them; a tie ``relu(x) == c``
    splits the gradient in halves as ``torch.minimum`` does). Measured on the loaded 2-core machine
    (one thread, fwd+bwd, 64 MNIST images): 25 -> 23 ms, 14 -> 11.7 ms and 8 -> 7 ms at the three
    layers' shapes; a whole training step gains a few percent (k=8: 0.089 -> 0.088 s, any-k
    sandwich: 0.26 -> 0.24 s CPU, interleaved runs; the noise of the machine is of that size)."""

    @staticmethod
    def forward(ctx, x, c, levels):
        r = F.relu(x)
        y = torch.minimum(r, c)
        s = c / levels
        v = y / s
        w = v + (torch.floor(v + 0.5) - v)          # round_half_up's straight-through form
        ctx.save_for_backward(r, c, s, v, w)
        ctx.levels = levels
        return w * s

    @staticmethod
    def backward(ctx, g):
        r, c, s, v, w = ctx.saved_tensors
        gs = g * s                                  # d(w * s)/dw; d(v + const)/dv = 1
        gy = gs / s                                 # d(y / s)/dy
        above = r > c
        tie = bool((r == c).any())
        if tie:                                     # torch.minimum: a tie shares the gradient
            gy = torch.where(r == c, gy / 2, gy)
        gx = torch.ops.aten.threshold_backward(gy.masked_fill(above, 0), r, 0)
        if not ctx.needs_input_grad[1]:             # clip frozen (BN retraining)
            return gx, None, None
        gc = (gy.masked_fill(r < c, 0) if tie else torch.where(above, gy, 0.0)).sum()
        grad_s = (g * w).sum() + (-gs * (v / s)).sum()
        return gx, gc + grad_s / ctx.levels, None


class ActQuant(nn.Module):
    """Unsigned A-bit activation quantizer with a learned clip ``c`` (PACT), zero-point 0.

    ``code = clamp(floor(x / s + 0.5), 0, 2^A - 1)`` with ``s = c / (2^A - 1)``; the forward returns
    ``code * s`` (ReLU is part of it: negative inputs give code 0). Straight-through gradients.
    """

    def __init__(self, abits: int = 8, init_clip: float = 4.0):
        super().__init__()
        self.abits = check_bits("abits", abits)
        self.clip = nn.Parameter(torch.tensor(float(init_clip)))
        self.quant = True

    @property
    def levels(self) -> int:
        return (1 << self.abits) - 1

    def scale(self) -> torch.Tensor:
        return self.clip.detach().abs().clamp(min=1e-6) / self.levels

    def forward(self, x):
        if not self.quant:
            return F.relu(x)
        return _ActQuantFn.apply(x, self.clip.abs().clamp(min=1e-6), self.levels)


class SwitchableBatchNorm(nn.Module):
    """One BatchNorm table per k (``tables[k-1]``); ``self.table`` picks the one in use."""

    def __init__(self, num_features: int, nbits: int = 8, dims: int = 2, eps: float = 1e-5,
                 momentum: float | None = 0.1):
        super().__init__()
        self.nbits = check_bits("nbits", nbits)
        cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
        self.dims = dims
        self.tables = nn.ModuleList(cls(num_features, eps=eps, momentum=momentum)
                                    for _ in range(nbits))
        self.table = nbits

    @property
    def num_features(self) -> int:
        return self.tables[0].num_features

    def forward(self, x):
        if not 1 <= self.table <= self.nbits:
            raise ValueError(f"BN table must be an integer in [1, {self.nbits}], not {self.table!r}")
        return self.tables[self.table - 1](x)


class SwitchableAffine(nn.Module):
    """One per-channel affine ``y = x * weight[t-1] + bias[t-1]`` per table ``t`` (= k), for a
    compute layer without BN (e.g. the logits layer): ``weight``/``bias`` are ``[N, C]``, identity
    at construction. Channels are dimension 1 of the input. ``self.table`` picks the one in use."""

    def __init__(self, num_features: int, nbits: int = 8):
        super().__init__()
        self.nbits = check_bits("nbits", nbits)
        self.weight = nn.Parameter(torch.ones(nbits, num_features))
        self.bias = nn.Parameter(torch.zeros(nbits, num_features))
        self.table = nbits

    @property
    def num_features(self) -> int:
        return self.weight.shape[1]

    def coefficients(self, table: int) -> tuple:
        """(scale, offset) of table ``table`` as float64 numpy arrays ``[C]`` (for folding)."""
        return (self.weight[table - 1].detach().double().numpy(),
                self.bias[table - 1].detach().double().numpy())

    def forward(self, x):
        if not 1 <= self.table <= self.nbits:
            raise ValueError(f"affine table must be an integer in [1, {self.nbits}], "
                             f"not {self.table!r}")
        shape = (1, -1) + (1,) * (x.dim() - 2)
        t = self.table - 1
        return x * self.weight[t].reshape(shape) + self.bias[t].reshape(shape)


_TABLED = (SwitchableBatchNorm, SwitchableAffine)


def set_k(net: nn.Module, k: int, table: int | None = None) -> None:
    """Use the top ``k`` weight planes everywhere in ``net`` and BN table ``table`` (default ``k``)."""
    for mod in net.modules():
        if isinstance(mod, _BWBMixin):
            if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= mod.nbits:
                raise ValueError(f"k must be an integer in [1, {mod.nbits}] (planes used), not {k!r}")
            mod.k = k
        elif isinstance(mod, _TABLED):
            t = k if table is None else table
            if isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= mod.nbits:
                raise ValueError(f"BN table must be an integer in [1, {mod.nbits}], not {t!r}")
            mod.table = t


def set_quant(net: nn.Module, on: bool) -> None:
    """Switch weight and activation quantization on (default) or off (the float reference)."""
    for mod in net.modules():
        if isinstance(mod, (_BWBMixin, ActQuant)):
            mod.quant = bool(on)


@contextlib.contextmanager
def planes(net: nn.Module, k: int, table: int | None = None):
    """Context manager: run ``net`` with ``k`` planes (and BN table ``table``), then restore."""
    saved = [(m, m.k) for m in net.modules() if isinstance(m, _BWBMixin)]
    saved_bn = [(m, m.table) for m in net.modules() if isinstance(m, _TABLED)]
    set_k(net, k, table)
    try:
        yield net
    finally:
        for m, v in saved:
            m.k = v
        for m, v in saved_bn:
            m.table = v
