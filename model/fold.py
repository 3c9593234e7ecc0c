"""Folding: a trained :class:`~progressivenn.model.nets.QNet` -> integer post-processing tables.

For each compute layer, each ``k = 1..N`` and each BN table set, the real-valued chain
``conv_k -> BN -> ReLU -> ActQuant`` of the fake-quant model is, per output channel ``o``,

    code = clamp(floor(acc_k * m[o] + b[o] + 1/2), 0, 2^A - 1)
    m = s_in * alpha[o] * 2^(N-k) * g[o] / s_out,   b = (g[o] * (bias[o] - mean[o]) + beta[o]) / s_out
    g = gamma / sqrt(var + eps)

(``s_in``/``s_out``: input and output activation scales). We pick one shift ``S`` per (layer, k), the
largest in ``[0, 63]`` such that ``M = floor(m 2^S + 1/2)`` fits a signed ``mbits`` field, ``B =
floor(b 2^S + 1/2)`` fits signed 48 bits, ``acc*M + B`` stays below 2^62, and (last layer) every
possible logit fits signed 32 bits. Then ``y = (acc*M + B + 2^(S-1)) >> S``. The last layer has no
ReLU and no activation scale: its output scale is the finest for which the largest possible |logit|
over all inputs stays within about 2^30 and M fits at ``S >= 0``.

A layer without BN (e.g. the logits layer) has a per-k affine ``x*a[o] + d[o]`` instead
(:class:`~progressivenn.model.bwb.SwitchableAffine`); it folds the same way (``g = a``, and
``d`` joins ``b``), so the per-k integer tables (M, B, S) carry every per-k parameter.

Residual adds (:class:`~progressivenn.model.nets.AddBlock`): ``y = ActQuant(xa + xb)`` with
``xa = ca*sa``, ``xb = cb*sb`` folds to ``clamp((ca*Ma + cb*Mb + 2^(S-1)) >> S, 0, 2^A-1)`` with
``M = floor(s/s_out * 2^S + 1/2)`` and the largest S that fits; activation scales do not depend on k,
so one (Ma, Mb, S) serves every k and both BN table sets.

Table sets: ``"retrained"`` uses BN table ``k`` at ``k`` planes; ``"fixed"`` uses the k=N table of the
trained model at every ``k`` (the comparison without BN retraining).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from . import contract
from .bundle import (BBITS, OBITS, SBITS, TABLE_SETS, Bundle, LayerSpec, Tables, conv_out_hw,
                     validate_bundle)
from .nets import AddBlock, ComputeBlock, QNet

__all__ = ["fold_network", "choose_shift", "FoldError"]


class FoldError(ValueError):
    """The trained network cannot be expressed within the integer widths (names layer and k)."""


def choose_shift(m: np.ndarray, b: np.ndarray, *, mbits: int, acc_bound: int, last: bool,
                 where: str) -> tuple:
    """Largest S whose rounded (M, B) fit the widths; returns (M, B, S) as int64 arrays / int."""
    mmax, bmax = (1 << (mbits - 1)) - 1, (1 << (BBITS - 1)) - 1
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(b))):
        raise FoldError(f"{where}: non-finite scale or offset (a BN variance or clip is broken)")
    for s in range((1 << SBITS) - 1, -1, -1):
        mi = np.floor(m * 2.0 ** s + 0.5)
        bi = np.floor(b * 2.0 ** s + 0.5)
        if np.abs(mi).max(initial=0) > mmax or np.abs(bi).max(initial=0) > bmax:
            continue
        mi, bi = mi.astype(np.int64), bi.astype(np.int64)
        if not contract.fits(mi, bi, s, acc_max=acc_bound, obits=OBITS if last else None):
            continue
        return mi, bi, s
    raise FoldError(f"{where}: no shift S in [0, {(1 << SBITS) - 1}] fits M in signed {mbits} bits, "
                    f"B in signed {BBITS} bits and the logits in signed {OBITS} bits "
                    f"(max |m| = {np.abs(m).max():.4g}, max |b| = {np.abs(b).max():.4g})")


def _bn_affine(bn: nn.Module | None, o: int):
    """(g, shift) with BN(x) = g*x + shift, from a BatchNorm's running statistics (float64)."""
    if bn is None:
        return np.ones(o), np.zeros(o)
    var = bn.running_var.detach().double().numpy()
    mean = bn.running_mean.detach().double().numpy()
    gamma = bn.weight.detach().double().numpy() if bn.weight is not None else np.ones(o)
    beta = bn.bias.detach().double().numpy() if bn.bias is not None else np.zeros(o)
    g = gamma / np.sqrt(var + bn.eps)
    return g, beta - g * mean


def _per_k_tables(blk, *, retrained: bool, n: int, a: int, mbits: int, s_in: float,
                  s_out: float | None, alpha, bias, red: int, name: str, ts: str,
                  logit_scales: list) -> Tables:
    """(M, B, S) for k = 1..N of one compute block ``blk`` for one BN table set (module
    docstring); the last layer (``s_out`` None) appends its per-k logit scale to
    ``logit_scales``."""
    o = len(alpha)
    M = np.zeros((n, o), np.int64)
    B = np.zeros((n, o), np.int64)
    S = np.zeros(n, np.int64)
    for k in range(1, n + 1):
        kt = k if retrained else n            # the BN / affine table used at k planes
        g, c = _bn_affine(blk.bn.tables[kt - 1] if blk.bn is not None else None, o)
        if blk.affine is not None:
            ga, ca = blk.affine.coefficients(kt)
            g, c = g * ga, c * ga + ca
        mreal = s_in * alpha * 2.0 ** (n - k) * g
        breal = g * bias + c
        bound = contract.acc_bound(k, red, a)
        if s_out is None:
            worst = bound * np.abs(mreal).max() + np.abs(breal).max()
            # finest scale such that every logit fits in ~30 bits and M fits at S >= 0
            so = max(worst / 2.0 ** (OBITS - 2), np.abs(mreal).max() / 2.0 ** (mbits - 2), 1e-30)
            logit_scales.append(float(so))
        else:
            so = s_out
        M[k - 1], B[k - 1], S[k - 1] = choose_shift(
            mreal / so, breal / so, mbits=mbits, acc_bound=bound, last=s_out is None,
            where=f"{name} ({ts} BN) k={k}")
    return Tables(M=M, B=B, S=S)


class _Walk:
    """The state of one fold: layers so far, and per stage its output shape and activation scale
    (stage index == bundle layer index; -1: the network input)."""

    def __init__(self, net: QNet, fixed_net: QNet, mbits: int):
        self.net, self.mbits = net, mbits
        self.n, self.a = net.nbits, net.abits
        self.fblocks = fixed_net.compute_blocks()
        if len(self.fblocks) != len(net.compute_blocks()):
            raise ValueError("fixed_net does not have the same layers as net")
        self.layers, self.counts, self.act_scales = [], {}, []
        self.logit_scales = {ts: [] for ts in TABLE_SETS}
        self.shapes, self.scales = {-1: tuple(net.input_shape)}, {-1: float(net.input_scale)}
        self.blocks_done = 0

    def name(self, kind: str) -> str:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        return f"{kind}{self.counts[kind]}"

    def add(self, st: AddBlock, srcin, si: int) -> tuple:
        a_, b_ = (int(j) for j in srcin)
        if self.shapes[a_] != self.shapes[b_]:
            raise ValueError(f"stage {si} (add): operand shapes {self.shapes[a_]} != "
                             f"{self.shapes[b_]}")
        name = self.name("add")
        s_out = float(st.act.scale())
        m_real = np.array([self.scales[a_], self.scales[b_]]) / s_out
        mi, _, sh = choose_shift(m_real, np.zeros(2), mbits=self.mbits,
                                 acc_bound=2 * ((1 << self.a) - 1), last=False, where=name)
        shape = self.shapes[a_]
        self.layers.append(LayerSpec(name=name, kind="add", in_shape=shape, out_shape=shape,
                                     relu=True, inputs=(a_, b_), add_m=(int(mi[0]), int(mi[1])),
                                     add_s=int(sh)))
        self.act_scales.append(s_out)
        return shape, s_out

    def compute(self, st: ComputeBlock, srcin, shape: tuple, s_in: float) -> tuple:
        op = st.op
        kind = "conv" if isinstance(op, nn.Conv2d) else "linear"
        name = self.name(kind)
        fst = self.fblocks[self.blocks_done]
        if not torch.equal(fst.op.codes(), op.codes()):
            raise ValueError(f"{name}: fixed_net has different weights")
        codes = op.codes().numpy()
        o, red = codes.shape
        alpha = op.alpha().double().numpy()
        bias = op.bias.detach().double().numpy() if op.bias is not None else np.zeros(o)
        if kind == "conv":
            k_, s_, p_ = tuple(op.kernel_size), tuple(op.stride), tuple(op.padding)
            out_shape = (o, *conv_out_hw(shape[1], shape[2], k_, s_, p_))
        else:
            k_ = s_ = p_ = None
            out_shape = (o,)
        last = not st.hidden
        s_out = None if last else float(st.act.scale())
        if not last:
            self.act_scales.append(s_out)
        tables = {ts: _per_k_tables(src, retrained=ts == "retrained", n=self.n, a=self.a,
                                    mbits=self.mbits, s_in=s_in, s_out=s_out, alpha=alpha,
                                    bias=bias, red=red, name=name, ts=ts,
                                    logit_scales=self.logit_scales[ts])
                  for ts, src in (("retrained", st), ("fixed", fst))}
        self.layers.append(LayerSpec(name=name, kind=kind, in_shape=shape, out_shape=out_shape,
                                     kernel=k_, stride=s_, padding=p_, codes=codes,
                                     relu=not last, tables=tables, input=srcin))
        self.blocks_done += 1
        return out_shape, s_in if last else s_out

    def maxpool(self, st: nn.MaxPool2d, srcin, shape: tuple) -> tuple:
        k_ = tuple(st.kernel_size) if isinstance(st.kernel_size, tuple) else (st.kernel_size,) * 2
        s_ = st.stride if st.stride is not None else k_
        s_ = tuple(s_) if isinstance(s_, tuple) else (s_,) * 2
        out_shape = (shape[0], (shape[1] - k_[0]) // s_[0] + 1, (shape[2] - k_[1]) // s_[1] + 1)
        self.layers.append(LayerSpec(name=self.name("pool"), kind="maxpool", in_shape=shape,
                                     out_shape=out_shape, kernel=k_, stride=s_, padding=(0, 0),
                                     input=srcin))
        return out_shape

    def flatten(self, srcin, shape: tuple) -> tuple:
        out_shape = (math.prod(shape),)
        self.layers.append(LayerSpec(name="flatten", kind="flatten", in_shape=shape,
                                     out_shape=out_shape, input=srcin))
        return out_shape

    def stage(self, si: int, st, srcin, shape: tuple, s_in: float) -> tuple:
        """Fold stage ``si``; returns its output shape and activation scale."""
        if isinstance(st, AddBlock):
            return self.add(st, srcin, si)
        if srcin is not None:
            shape, s_in = self.shapes[srcin], self.scales[srcin]
        if isinstance(st, ComputeBlock):
            return self.compute(st, srcin, shape, s_in)
        if isinstance(st, nn.MaxPool2d):
            return self.maxpool(st, srcin, shape), s_in
        if isinstance(st, nn.Flatten):
            return self.flatten(srcin, shape), s_in
        raise ValueError(f"cannot fold a stage of type {type(st).__name__}")


def fold_network(net: QNet, *, fixed_net: QNet | None = None, mbits: int = 18,
                 test_x: np.ndarray, test_y: np.ndarray, dataset: str = "custom",
                 meta: dict | None = None) -> Bundle:
    """Fold ``net`` (per-k BN tables = the "retrained" set) into a validated :class:`Bundle`.

    ``fixed_net``: a network with the same weights whose BN table N gives the "fixed" set
    (default: ``net`` itself).
    """
    if isinstance(mbits, bool) or not isinstance(mbits, int) or not 2 <= mbits <= 32:
        raise ValueError(f"mbits must be an integer in [2, 32], not {mbits!r}")
    walk = _Walk(net, net if fixed_net is None else fixed_net, mbits)
    shape, s_in = walk.shapes[-1], walk.scales[-1]
    for si, (st, srcin) in enumerate(zip(net.stages, net.inputs)):
        shape, s_in = walk.stage(si, st, srcin, shape, s_in)
        walk.shapes[si], walk.scales[si] = shape, s_in
    m = dict(meta or {})
    m.setdefault("act_scales", walk.act_scales)
    m.setdefault("logit_scale", walk.logit_scales)
    tx = np.asarray(test_x).astype(np.uint8 if walk.a <= 8 else np.uint16)
    bundle = Bundle(nbits=walk.n, abits=walk.a, mbits=mbits, input_shape=tuple(net.input_shape),
                    num_classes=net.num_classes, input_scale=float(net.input_scale),
                    dataset=dataset, layers=walk.layers, test_x=tx,
                    test_y=np.asarray(test_y, np.int64), meta=m)
    try:
        return validate_bundle(bundle)
    except ValueError as e:  # a fold bug, not a user error; say so
        raise FoldError(f"folding produced an invalid bundle: {e}") from None
