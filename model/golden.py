"""Integer golden model: the numeric contract of ``DESIGN.md`` section 3, in torch int64 only.

Everything the hardware computes is defined here, once. The RTL, the Amaranth-simulator tests, the
cocotb benches and the driver are all checked against these functions. No float is used anywhere in
this module.

Symbols: ``N`` weight planes, ``A`` activation bits, ``k`` planes used (1..N).

- ``u[o, i]`` in ``[0, 2^N - 1]``: stored weight code.
- ``b_j[o, i] = 2*bit_j(u) - 1``: plane ``j`` in {-1, +1}; ``j = N-1`` is the MSB plane.
- ``q_k = 2*(u >> (N-k)) - (2^k - 1)``: the k-plane weight, an odd integer.
- ``x[i]`` in ``[0, 2^A - 1]``: unsigned activation code.
- ``acc_k = sum_i q_k * x = 2*acc_{k-1} + P_{N-k}`` with ``P_j = sum_i b_j * x``.
- post-processing: ``y = (acc*M + B + 2^(S-1)) >> S``; hidden: ``clamp(y, 0, 2^A-1)``; last: ``y``.
"""

from __future__ import annotations

import torch

__all__ = [
    "check_k", "plane", "q_k", "plane_sum", "acc_direct", "acc_planes", "acc_bound",
    "round_shift", "postprocess",
]


def _as_long(t) -> torch.Tensor:
    t = torch.as_tensor(t)
    if t.is_floating_point() or t.is_complex():
        raise TypeError(f"the golden model takes integer tensors only, not {t.dtype}")
    return t.to(torch.int64)


def check_k(k: int, nbits: int) -> int:
    """Return ``k`` if ``1 <= k <= nbits``; else raise ValueError naming the bad value."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= nbits:
        raise ValueError(f"k must be an integer in [1, {nbits}] (planes used), not {k!r}")
    return k


def plane(u, j: int) -> torch.Tensor:
    """Plane ``j`` of codes ``u`` read as {-1, +1}: ``2*bit_j(u) - 1``."""
    u = _as_long(u)
    return 2 * ((u >> j) & 1) - 1


def q_k(u, k: int, nbits: int) -> torch.Tensor:
    """The k-plane weight ``2*(u >> (N-k)) - (2^k - 1)`` (odd, in ``[-(2^k-1), 2^k-1]``)."""
    check_k(k, nbits)
    u = _as_long(u)
    return 2 * (u >> (nbits - k)) - ((1 << k) - 1)


def plane_sum(u, x, j: int) -> torch.Tensor:
    """One plane pass ``P_j[..., o] = sum_i b_j[o, i] * x[..., i]`` (adds and subtracts only).

    ``u`` is ``[O, I]``, ``x`` is ``[..., I]``; the result is ``[..., O]``.
    Computed as ``2*sum_{bit_j=1} x - sum x``, as the hardware does.
    """
    u, x = _as_long(u), _as_long(x)
    bits = (u >> j) & 1
    return 2 * (x @ bits.T) - x.sum(-1, keepdim=True)


def acc_planes(u, x, k: int, nbits: int) -> torch.Tensor:
    """``acc_k`` plane by plane, MSB plane first: ``acc <- 2*acc + P_{N-1-p}`` for p < k."""
    check_k(k, nbits)
    x = _as_long(x)
    acc = torch.zeros(*x.shape[:-1], _as_long(u).shape[0], dtype=torch.int64)
    for p in range(k):
        acc = 2 * acc + plane_sum(u, x, nbits - 1 - p)
    return acc


def acc_direct(u, x, k: int, nbits: int) -> torch.Tensor:
    """``acc_k = x @ q_k.T`` in one step (the identity the plane-by-plane form must equal)."""
    return _as_long(x) @ q_k(u, k, nbits).T


def acc_bound(k: int, reduction: int, abits: int) -> int:
    """Largest possible ``|acc_k|`` for a reduction of length I: ``(2^k-1) * I * (2^A-1)``."""
    return ((1 << k) - 1) * reduction * ((1 << abits) - 1)


def round_shift(z, shift: int) -> torch.Tensor:
    """``(z + 2^(S-1)) >> S``, arithmetic: round half up. ``S = 0`` returns ``z``."""
    z = _as_long(z)
    if shift < 0:
        raise ValueError(f"shift S must be >= 0, not {shift}")
    if shift == 0:
        return z
    return (z + (1 << (shift - 1))) >> shift


def postprocess(acc, m, b, shift: int, *, relu: bool, abits: int) -> torch.Tensor:
    """``y = round_shift(acc*M + B, S)``; hidden layers (``relu``) clamp to ``[0, 2^A-1]``.

    ``acc`` is ``[..., O]``; ``m`` and ``b`` are ``[O]`` (broadcast over leading dimensions).
    """
    y = round_shift(_as_long(acc) * _as_long(m) + _as_long(b), int(shift))
    return y.clamp(0, (1 << abits) - 1) if relu else y
