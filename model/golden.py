"""Integer golden model: the numeric contract (``docs/architecture.md`` "Numeric contract"), in
torch int64 only.

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

from dataclasses import dataclass

import torch

from .contract import acc_bound, check_k

__all__ = [
    "check_k", "plane", "q_k", "plane_sum", "acc_direct", "acc_planes", "acc_bound",
    "round_shift", "postprocess", "NetworkResult", "run_network", "im2col", "maxpool",
    "argmax_first", "add_codes",
]


def _as_long(t) -> torch.Tensor:
    t = torch.as_tensor(t)
    if t.is_floating_point() or t.is_complex():
        raise TypeError(f"the golden model takes integer tensors only, not {t.dtype}")
    return t.to(torch.int64)




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


# ---- whole networks from a bundle ------------------------------------------------------------------

METHODS = ("planes", "direct")


@dataclass
class NetworkResult:
    """Result of :func:`run_network`.

    ``logits``: int64 ``[n, classes]``; ``pred``: int64 ``[n]`` (argmax, lowest index wins ties);
    ``outputs``: one int64 tensor per bundle layer, in bundle order (conv ``[n, O, H, W]`` after
    post-processing, pool ``[n, C, H, W]``, flatten ``[n, F]``, linear ``[n, O]``, add the shape
    of its inputs). A layer with ``input`` set reads that earlier layer's output (-1: the network
    input) instead of the previous one; an ``add`` reads its two ``inputs``.
    """

    logits: torch.Tensor
    pred: torch.Tensor
    outputs: list


def _codes_tensor(a) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return _as_long(a)
    import numpy as np
    a = np.asarray(a)
    if a.dtype.kind not in "iub":
        raise TypeError(f"the golden model takes integer arrays only, not {a.dtype}")
    return torch.from_numpy(a.astype(np.int64))


def im2col(x, kernel, stride, padding) -> torch.Tensor:
    """``x`` ``[n, C, H, W]`` -> patches ``[n, Ho, Wo, C*kh*kw]`` in torch's (cin, kh, kw) order,
    zero padded (zero is the real zero of an activation code)."""
    x = _as_long(x)
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w = x.shape
    xp = torch.nn.functional.pad(x, (pw, pw, ph, ph)) if ph or pw else x
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    cols = [xp[:, :, dy:dy + sh * (ho - 1) + 1:sh, dx:dx + sw * (wo - 1) + 1:sw]
            for dy in range(kh) for dx in range(kw)]
    patches = torch.stack(cols, dim=2)                   # [n, C, kh*kw, Ho, Wo]
    return patches.permute(0, 3, 4, 1, 2).reshape(n, ho, wo, c * kh * kw)


def maxpool(x, kernel, stride) -> torch.Tensor:
    """Max-pool over activation codes ``[n, C, H, W]`` (no padding, floor mode)."""
    x = _as_long(x)
    (kh, kw), (sh, sw) = kernel, stride
    h, w = x.shape[2:]
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    out = None
    for dy in range(kh):
        for dx in range(kw):
            v = x[:, :, dy:dy + sh * (ho - 1) + 1:sh, dx:dx + sw * (wo - 1) + 1:sw]
            out = v if out is None else torch.maximum(out, v)
    return out


def add_codes(xa, xb, m, shift: int, *, abits: int) -> torch.Tensor:
    """Residual add of two activation-code tensors of different scales, exactly in integers:
    ``clamp((xa*Ma + xb*Mb + 2^(S-1)) >> S, 0, 2^A-1)`` (``m = (Ma, Mb)``; ReLU is the clamp)."""
    ma, mb = (int(v) for v in m)
    z = _as_long(xa) * ma + _as_long(xb) * mb
    return round_shift(z, int(shift)).clamp(0, (1 << abits) - 1)


def argmax_first(logits) -> torch.Tensor:
    """Argmax over the last dimension; the lowest index wins ties."""
    logits = _as_long(logits)
    idx = torch.arange(logits.shape[-1], dtype=torch.int64)
    best = logits.max(dim=-1, keepdim=True).values
    return torch.where(logits == best, idx, logits.shape[-1]).min(dim=-1).values


def run_network(bundle, x_codes, k: int, tables: str = "retrained",
                method: str = "planes") -> NetworkResult:
    """Run a whole bundle (``progressivenn.model.bundle.Bundle``) on input codes with ``k`` planes.

    ``x_codes``: integer ``[n, C, H, W]`` in ``[0, 2^A - 1]``. ``tables``: ``"retrained"`` (per-k BN)
    or ``"fixed"`` (the k=N BN at every k). ``method``: ``"planes"`` (:func:`acc_planes`, MSB first)
    or ``"direct"`` (:func:`acc_direct`); they agree exactly. Integers only.
    """
    nbits, abits = int(bundle.nbits), int(bundle.abits)
    check_k(k, nbits)
    if tables not in ("retrained", "fixed"):
        raise ValueError(f"tables must be 'retrained' or 'fixed', not {tables!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    x = _codes_tensor(x_codes)
    shape = tuple(bundle.input_shape)
    if x.dim() != 4 or tuple(x.shape[1:]) != shape:
        raise ValueError(f"x_codes must be [n, {', '.join(map(str, shape))}], not {tuple(x.shape)}")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) > (1 << abits) - 1):
        raise ValueError(f"x_codes must be activation codes in [0, {(1 << abits) - 1}]")
    acc_fn = acc_planes if method == "planes" else acc_direct
    outputs = []
    x_in = x
    for i, layer in enumerate(bundle.layers):
        if layer.kind == "add":
            a, b = (x_in if j == -1 else outputs[j] for j in layer.inputs)
            x = add_codes(a, b, layer.add_m, int(layer.add_s), abits=abits)
            outputs.append(x)
            continue
        if getattr(layer, "input", None) is not None:   # a branch: read an earlier layer
            x = x_in if layer.input == -1 else outputs[layer.input]
        if layer.kind in ("conv", "linear"):
            u = _codes_tensor(layer.codes)
            t = layer.tables[tables]
            m, b = _codes_tensor(t.M[k - 1]), _codes_tensor(t.B[k - 1])
            s = int(t.S[k - 1])
            if layer.kind == "conv":
                cols = im2col(x, layer.kernel, layer.stride, layer.padding)  # [n, Ho, Wo, I]
                acc = acc_fn(u, cols, k, nbits)                              # [n, Ho, Wo, O]
                y = postprocess(acc, m, b, s, relu=bool(layer.relu), abits=abits)
                x = y.permute(0, 3, 1, 2).contiguous()
            else:
                acc = acc_fn(u, x, k, nbits)
                x = postprocess(acc, m, b, s, relu=bool(layer.relu), abits=abits)
        elif layer.kind == "maxpool":
            x = maxpool(x, layer.kernel, layer.stride)
        elif layer.kind == "flatten":
            x = x.reshape(x.shape[0], -1)
        else:
            raise ValueError(f"unknown layer kind {layer.kind!r}")
        outputs.append(x)
    return NetworkResult(logits=x, pred=argmax_first(x), outputs=outputs)
