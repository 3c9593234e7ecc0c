"""Progressive (anytime) inference of one frame on the engine: run at k, then continue to k' > k.

The engine can resume a RUN from accumulators it saved (``save = 1``, then ``k_start = k``;
``docs/engine.md``): the planes already done are not redone. In the host-driven streamed-layers
mode that helps the **first** compute layer only: its input (the frame) is the same at every k, so
continuing it from k to k' costs ``k' - k`` planes. Every later layer's input is the previous
layer's output, which changes with k, so it is recomputed from scratch at k'. That is what
:class:`ProgressiveFrame` does, and exactly what ``model.dynamic.CostModel`` charges.

Continuation needs the first layer to run as one RUN: every position in one activation tile
(``P * ceil(I/C) <= adepth``), every row group in one weight pass at the largest k
(``ceil(O/R) * N * ceil(I/C) <= wdepth``, ``ceil(O/R) * N <= pp_entries``) and one saved accumulator
word per (position, group) (``P * ceil(O/R) <= accdepth``). When it does not fit, continuing
recomputes the first layer too, and :attr:`ProgressiveFrame.reason` says why.

Like ``sim/driver.py`` this is sans I/O: :meth:`ProgressiveFrame.run` is a generator of
:class:`~.transport.Exchange` s that any transport drives. The counters are cleared when the frame
starts and read after every step, so each :class:`StepResult` carries the engine's own figures for
the frame so far (all steps, loads included). Later layers' RUNs do not save, so the first layer's
saved accumulators survive until the frame continues; another frame in between (or any RUN with
``save = 1``) invalidates them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generator

import numpy as np

from ..hw import isa
from ..hw.isa import EngineConfig
from ..model import contract
from .driver import (LayerPlan, act_words, assemble, check_fits, check_image, counted_exchange,
                     im2col, layer_exchange, maxpool, patches_of, pp_words, walk_layers,
                     weight_words)
from .driver import read_counters as counter_values
from .transport import Exchange

__all__ = ["StepResult", "ProgressiveFrame", "first_layer_continues", "cost_model", "run_frame",
           "run_clip"]


def first_layer_continues(bundle, cfg: EngineConfig, plans: list[LayerPlan]) -> str | None:
    """``None`` when the first compute layer can be continued on this engine, else the reason."""
    p = plans[0]
    n = bundle.nbits
    checks = [
        (p.positions * p.nchunks <= cfg.adepth,
         f"its {p.positions} positions x {p.nchunks} chunks exceed adepth={cfg.adepth}"),
        (p.positions * p.ngroups <= cfg.accdepth,
         f"its {p.positions} positions x {p.ngroups} groups exceed accdepth={cfg.accdepth}"),
        (p.ngroups * n * p.nchunks <= cfg.wdepth,
         f"{p.ngroups} groups x {n} planes x {p.nchunks} chunks exceed wdepth={cfg.wdepth}"),
        (p.ngroups * n <= cfg.pp_entries, f"{p.ngroups} groups x {n} planes exceed the"
                                          f" {cfg.pp_entries} post-processing table entries"),
        (p.positions < 1 << isa.FIELDS["npos"][1], "too many positions for one RUN"),
        (p.ngroups < 1 << isa.FIELDS["ngroups"][1], "too many groups for one RUN"),
    ]
    for ok, why in checks:
        if not ok:
            return f"first layer {p.name} cannot be continued: {why}; it is recomputed"
    return None


def cost_model(bundle, cfg: EngineConfig, plans: list[LayerPlan] | None = None):
    """The exact per-plane costs of ``bundle`` on ``cfg`` as a ``model.dynamic.CostModel``."""
    from ..model.dynamic import CostModel

    plans = plans if plans is not None else check_fits(bundle, cfg)
    return CostModel(cycles=tuple(p.ideal_cycles(1) for p in plans),
                     passes=tuple(p.positions * p.ngroups for p in plans),
                     continuation=first_layer_continues(bundle, cfg, plans) is None)


@dataclass
class StepResult:
    """The frame after one step (a fresh run or a continuation) at ``k`` planes."""

    k: int
    logits: np.ndarray
    pred: int
    outputs: list
    continued: bool                          # this step continued the first layer from saved planes
    counters: dict = field(default_factory=dict)   # engine counters for the frame so far
    ideal_cycles: int = 0                    # ideal array cycles for the frame so far
    path: tuple = ()                         # every k this frame has been computed at


class ProgressiveFrame:
    """One frame (codes ``[C, H, W]``) on the engine; :meth:`run` at k, then at larger k."""

    def __init__(self, bundle, cfg: EngineConfig, image, tables: str = "retrained",
                 plans: list[LayerPlan] | None = None, read_counters: bool = True):
        image = check_image(bundle, image, tables)
        self.bundle, self.cfg, self.tables, self.image = bundle, cfg, tables, image
        self.plans = plans if plans is not None else check_fits(bundle, cfg)
        self.reason = first_layer_continues(bundle, cfg, self.plans)
        self.continues = self.reason is None
        self.read_counters = read_counters
        self.k = 0
        self.path: tuple = ()
        self.ideal = 0
        # host-side layers before the first compute layer, and the first layer's patches
        x = image.astype(np.int64)
        first = self.plans[0].index
        self.pre = []
        for layer in bundle.layers[:first]:
            x = self._host_op(layer, x)
            self.pre.append(x)
        layer = bundle.layers[first]
        self.patches0 = (im2col(x, layer.kernel, layer.stride, layer.padding)
                         if layer.kind == "conv" else x.reshape(1, -1))

    @staticmethod
    def _host_op(layer, x):
        if layer.kind == "maxpool":
            return maxpool(x, layer.kernel, layer.stride, layer.padding)
        if layer.kind == "flatten":
            return x.reshape(-1)
        raise ValueError(f"layer {layer.name}: kind {layer.kind!r} is not supported")

    def _first_exchange(self, k_from: int, k: int) -> Exchange:
        """The first layer as one RUN with ``save = 1``: fresh (``k_from = 0``) or continued."""
        cfg, plan = self.cfg, self.plans[0]
        layer = self.bundle.layers[plan.index]
        nb, ng, nc = self.bundle.nbits, plan.ngroups, plan.nchunks
        ex = Exchange()
        words = weight_words(cfg, layer.codes, nb, k, 0, ng, nc)   # [(g*k + p)*nc + c]
        if k_from == 0:
            ex.cmds.append(isa.cmd_load_w(0, len(words)))
            ex.data += words
        else:      # only the new planes k_from..k-1 of every group, at their wplanes=k addresses
            per_g = k * nc
            for g in range(ng):
                lo, hi = g * per_g + k_from * nc, g * per_g + k * nc
                ex.cmds.append(isa.cmd_load_w(lo, hi - lo))
                ex.data += words[lo:hi]
        pp = pp_words(cfg, layer.tables[self.tables], k, 0, ng)
        ex.cmds.append(isa.cmd_load_pp((k - 1) * ng * cfg.pp_slices, len(pp)))
        ex.data += pp
        a = act_words(cfg, self.patches0, nc)
        ex.cmds.append(isa.cmd_load_a(0, 0, len(a)))
        ex.data += a
        ex.cmds.append(isa.cmd_run(bank=0, relu=plan.relu, k_start=k_from, k_end=k, wplanes=k,
                                   ngroups=ng, nchunks=nc, npos=plan.positions, save=True))
        ex.n_results += plan.positions * ng
        return ex

    def run(self, k: int) -> Generator[Exchange, list[int], StepResult]:
        """Compute the frame at ``k`` planes: fresh the first time, then continuing from the k
        already done (``k`` must grow)."""
        bundle, cfg = self.bundle, self.cfg
        k = contract.check_k(k, bundle.nbits)
        if k <= self.k:
            raise ValueError(f"a frame continues to more planes only: done k={self.k}, asked {k}")
        cont = self.k > 0 and self.continues
        fresh = self.k == 0
        by_index = {p.index: p for p in self.plans}
        first, last = self.plans[0].index, self.plans[-1].index
        state = {"bank": 0}
        counters: dict = {}

        def compute(i, layer, x):
            plan = by_index[i]
            if i == first and (fresh and self.continues or cont):
                ex = self._first_exchange(self.k if cont else 0, k)
                order = [(0, plan.ngroups, 0, plan.positions)]
                state["bank"] = 1
                self.ideal += plan.ideal_cycles(k - self.k if cont else k)
            else:
                patches = self.patches0 if i == first else patches_of(layer, x)
                ex, order, state["bank"] = layer_exchange(cfg, plan, layer, patches, bundle.nbits,
                                                          k, layer.tables[self.tables],
                                                          state["bank"])
                self.ideal += plan.ideal_cycles(k)
            words, cnt = yield from counted_exchange(
                cfg, ex, f"layer {layer.name}", clear=i == first and fresh,
                read=i == last and self.read_counters)
            if cnt:
                counters.update(counter_values(cfg, cnt, "after the last layer"))
            y = assemble(cfg, plan, order, words, k)
            return y.reshape(layer.out_shape) if layer.kind == "conv" else y[:, 0]

        outputs = yield from walk_layers(bundle, self.image, compute, start=first,
                                         x=self.pre[-1] if self.pre else None,
                                         outputs=list(self.pre))
        self.k = k
        self.path = self.path + (k,)
        logits = outputs[-1]
        return StepResult(k=k, logits=logits, pred=int(np.argmax(logits)), outputs=outputs,
                          continued=cont, counters=counters, ideal_cycles=self.ideal,
                          path=self.path)


def run_frame(frame: ProgressiveFrame, policy) -> Generator[Exchange, list[int], StepResult]:
    """Drive one frame with a ``model.dynamic.Policy``: start at ``policy.start()`` and continue
    while ``policy.step`` asks for more planes. Returns the final step."""
    from ..model.dynamic import confidence

    k = policy.start()
    while True:
        res = yield from frame.run(k)
        pred, margin = confidence(res.logits)
        nk = policy.step(k, pred, margin)
        if nk is None:
            return res
        k = nk


def run_clip(bundle, cfg: EngineConfig, frames, policy, tables: str = "retrained",
             plans: list[LayerPlan] | None = None) -> Generator[Exchange, list[int], list]:
    """A whole clip (codes ``[T, C, H, W]``) under ``policy`` (reset first); returns one final
    :class:`StepResult` per frame."""
    plans = plans if plans is not None else check_fits(bundle, cfg)
    policy.reset()
    out = []
    for image in frames:
        res = yield from run_frame(ProgressiveFrame(bundle, cfg, image, tables, plans), policy)
        out.append(res)
    return out
