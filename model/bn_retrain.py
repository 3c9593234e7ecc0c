"""BN retraining: weights frozen, one table of per-k parameters per k, chosen on held-out images.

A table ``k`` is everything per-k that folds into the integer post-processing tables (M, B, S) of
:mod:`~progressivenn.model.fold`: every BN layer's running mean/variance and gamma/beta, and the
per-k scale/offset of every layer without BN (:class:`~progressivenn.model.bwb.SwitchableAffine`,
e.g. the per-class output scale before the logits). The shared weights and activation clips are
never touched, so the hardware contract holds: one weight set, one table per k.

Per ``k`` several candidate tables are built and the one with the best accuracy on a held-out part
of the training images is kept (ties: ``trained``, then ``fixed``, else the lower cross-entropy):

- ``fixed``: the k=N table used at k (what the network does without BN retraining);
- ``trained``: table k as the checkpoint holds it, when it was trained (an ``--any-k`` net trains
  one per k; a net trained at k=N leaves tables 1..N-1 at their initial values: no candidate);
- ``reestimated``: table k with its statistics re-estimated at k (the paper's BN retraining);
- ``tuned``: start from the N table's gamma/beta with statistics at k, train gamma/beta and the
  per-k affines at k (Adam, BN in training mode, weights frozen) against the k=N network's outputs
  (distillation, temperature ``T``) and the labels, then re-estimate the statistics.

Because ``fixed`` is always a candidate, no k ends up worse than its fixed table on the held-out
images. The held-out images are never trained on here (they are training images, not test images).
Statistics are re-estimated as exact averages over the fitting images (BN in training mode).
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
import torch.nn.functional as F

from .bwb import planes
from .data import Dataset
from .nets import QNet
from .train import batches, distill_loss

__all__ = ["reestimate_bn", "retrain_bn", "table_state", "load_table_state", "holdout_split",
           "CANDIDATES"]

#: candidate tables per k, in order of preference on a tie
CANDIDATES = ("fixed", "trained", "reestimated", "tuned")


@torch.no_grad()
def reestimate_bn(net: QNet, x: np.ndarray, k: int, *, batch_size: int = 256) -> None:
    """Reset BN table ``k`` of every layer and re-estimate its running mean/var on codes ``x``."""
    tables = [bn.tables[k - 1] for bn in net.bn_modules()]
    saved = [t.momentum for t in tables]
    for t in tables:
        t.reset_running_stats()
        t.momentum = None  # cumulative moving average = exact mean over the batches
    was = net.training
    net.train()
    with planes(net, k):
        for xb, _ in batches(x, np.zeros(len(x), np.int64), batch_size):
            net(xb)
    for t, m in zip(tables, saved):
        t.momentum = m
    net.train(was)


def table_state(net: QNet, k: int) -> dict:
    """A copy of table ``k``: every BN table's state and every per-k affine's row ``k-1``."""
    return {"bn": [copy.deepcopy(bn.tables[k - 1].state_dict()) for bn in net.bn_modules()],
            "affine": [(af.weight[k - 1].detach().clone(), af.bias[k - 1].detach().clone())
                       for af in net.affine_modules()]}


@torch.no_grad()
def load_table_state(net: QNet, k: int, state: dict) -> None:
    """Write a :func:`table_state` (of any k) into table ``k``."""
    for bn, st in zip(net.bn_modules(), state["bn"]):
        bn.tables[k - 1].load_state_dict(st)
    for af, (w, b) in zip(net.affine_modules(), state["affine"]):
        af.weight[k - 1] = w
        af.bias[k - 1] = b


@torch.no_grad()
def _logits(net: QNet, x: np.ndarray, k: int, batch_size: int = 500) -> torch.Tensor:
    was = net.training
    net.eval()
    out = []
    with planes(net, k):
        for xb, _ in batches(x, np.zeros(len(x), np.int64), batch_size):
            out.append(net(xb))
    net.train(was)
    return torch.cat(out) if out else torch.zeros(0, net.num_classes)


def _score(net: QNet, x: np.ndarray, y: np.ndarray, k: int) -> tuple:
    """(accuracy, cross-entropy) on ``x, y`` with ``k`` planes and table ``k`` (eval mode)."""
    lg = _logits(net, x, k)
    yt = torch.from_numpy(np.asarray(y, np.int64))
    return float((lg.argmax(1) == yt).float().mean()), float(F.cross_entropy(lg, yt))


def _tune(net: QNet, k: int, x, y, teacher: torch.Tensor, *, steps: int, lr: float, distill: float,
          temperature: float, batch_size: int, seed: int) -> None:
    """Train table ``k`` (gamma/beta, per-k affines) at k with weights and clips frozen."""
    params = net.table_parameters(k)
    if not params or steps < 1:
        return
    saved = [(p, p.requires_grad) for p in net.parameters()]
    for p in net.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - min(s, steps) / (steps + 1))
    rng = np.random.default_rng(seed * 1000 + k)
    idx = np.arange(len(x))
    net.train()
    step = 0
    try:
        with planes(net, k):
            while step < steps:
                for j in np.array_split(rng.permutation(idx), max(1, len(idx) // batch_size)):
                    xb = torch.from_numpy(x[j].astype(np.int64))
                    out = net(xb)
                    loss = torch.zeros(())
                    if distill < 1:
                        loss = (1 - distill) * F.cross_entropy(out, torch.from_numpy(y[j]))
                    if distill > 0:
                        loss = loss + distill * distill_loss(out, teacher[j], temperature)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    step += 1
                    if step >= steps:
                        break
    finally:
        for p, r in saved:
            p.requires_grad_(r)


def _was_trained(net: QNet, k: int) -> bool:
    """Whether table ``k`` saw training (BN batches counted; a net without BN: any affine moved)."""
    bns = net.bn_modules()
    if bns:
        return any(int(bn.tables[k - 1].num_batches_tracked) > 0 for bn in bns)
    return any(not (torch.all(af.weight[k - 1] == 1) and torch.all(af.bias[k - 1] == 0))
               for af in net.affine_modules())


def holdout_split(n: int, holdout: float, seed: int) -> tuple:
    """(fitting, held-out) sorted indices of ``n`` images: a seeded ``holdout`` share held out."""
    perm = np.random.default_rng(seed).permutation(n)
    h = int(round(holdout * n))
    if holdout > 0:
        h = min(max(h, 1), n - 1)
    return np.sort(perm[h:]), np.sort(perm[:h])


def retrain_bn(net: QNet, ds: Dataset, *, tune: bool = True, select: bool = True,
               steps: int = 300, lr: float = 1e-2, distill: float = 0.7, temperature: float = 2.0,
               holdout: float = 0.2, batch_size: int = 64, max_samples: int | None = 10000,
               seed: int = 0, progress: bool = True, finetune: bool | None = None) -> dict:
    """Retrain table k for every k in place (weights frozen); returns a log with, per k, the
    held-out accuracy of each candidate and the one kept.

    ``tune``: build the ``tuned`` candidate (else only ``fixed``/``trained``/``reestimated``).
    ``select``: keep the best candidate per k on the held-out split (``holdout`` of the training
    images, seeded); without it table k is the ``tuned`` one (or the ``reestimated`` one).
    ``steps``, ``lr``, ``batch_size``: the gamma/beta training per k (Adam, linear decay).
    ``distill``: weight of the distillation loss against the k=N network (temperature
    ``temperature``); ``1 - distill`` goes to the labels. ``max_samples``: training images used
    (a seeded subset). ``finetune``: old name of ``tune``.
    """
    if finetune is not None:
        tune = bool(finetune)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, not {steps!r}")
    if not 0 <= distill <= 1:
        raise ValueError(f"distill must be in [0, 1], not {distill!r}")
    if not 0 <= holdout < 1:
        raise ValueError(f"holdout must be in [0, 1), not {holdout!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, not {temperature!r}")
    t0 = time.time()
    x, y = ds.train_x, np.asarray(ds.train_y, np.int64)
    if max_samples is not None and len(x) > max_samples:
        sel = np.sort(np.random.default_rng(seed).choice(len(x), max_samples, replace=False))
        x, y = x[sel], y[sel]
    if not select:
        holdout = 0.0
    fit, hold = holdout_split(len(x), holdout, seed)
    xf, yf, xh, yh = x[fit], y[fit], x[hold], y[hold]
    n = net.nbits
    teacher = _logits(net, xf, n) if tune and distill > 0 else None
    fixed_state = table_state(net, n)
    log = {"tune": tune, "select": select, "samples": int(len(x)), "fit": int(len(xf)),
           "holdout": int(len(xh)), "steps": steps, "lr": lr, "distill": distill,
           "temperature": temperature, "per_k": {}}
    ks = range(1, n + 1)
    if progress:
        from tqdm import tqdm
        ks = tqdm(ks, desc="retrain-bn", unit="k")
    for k in ks:
        cands = {"fixed": fixed_state}
        if _was_trained(net, k):
            cands["trained"] = table_state(net, k)
        reestimate_bn(net, xf, k)
        cands["reestimated"] = table_state(net, k)
        if tune:
            load_table_state(net, k, fixed_state)
            reestimate_bn(net, xf, k)
            _tune(net, k, xf, yf, teacher, steps=steps, lr=lr, distill=distill,
                  temperature=temperature, batch_size=batch_size, seed=seed)
            reestimate_bn(net, xf, k)
            cands["tuned"] = table_state(net, k)
        entry = {}
        if select and len(xh):
            scores = {}
            for name in CANDIDATES:
                if name in cands:
                    load_table_state(net, k, cands[name])
                    scores[name] = _score(net, xh, yh, k)
            top = max(v[0] for v in scores.values())
            tied = [c for c in scores if scores[c][0] == top]
            # a new table must be strictly better than the one the network was trained with
            best = next((c for c in ("trained", "fixed") if c in tied),
                        min(tied, key=lambda c: scores[c][1]))
            entry = {"holdout_accuracy": {c: round(s[0], 5) for c, s in scores.items()},
                     "holdout_loss": {c: round(s[1], 5) for c, s in scores.items()}}
        else:
            best = "tuned" if tune else "reestimated"
        load_table_state(net, k, cands[best])
        entry["kept"] = best
        log["per_k"][str(k)] = entry
    net.eval()
    log["seconds"] = time.time() - t0
    return log
