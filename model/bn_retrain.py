"""BN retraining: weights frozen, one BatchNorm table per k re-estimated on training data.

For each ``k = 1..N`` the network runs with the top ``k`` planes and BN table ``k``; that table's
running statistics are reset and re-estimated as an exact average over the training images (BN in
training mode, so every layer sees the statistics of its own k). With ``finetune`` the table's
gamma/beta are first trained briefly (Adam, weights and clips frozen), then the statistics are
re-estimated. The "fixed" tables (the k=N table used at every k) are whatever the trained
checkpoint holds; this module does not touch that checkpoint.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from .bwb import planes
from .data import Dataset
from .nets import QNet
from .train import batches

__all__ = ["reestimate_bn", "retrain_bn"]


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


def _finetune(net: QNet, ds: Dataset, k: int, x, y, *, epochs: int, lr: float, seed: int):
    params = []
    for bn in net.bn_modules():
        params += list(bn.tables[k - 1].parameters())
    if not params:
        return
    for p in net.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(seed + k)
    net.train()
    with planes(net, k):
        for _ in range(epochs):
            for xb, yb in batches(x, y, 64, rng):
                loss = loss_fn(net(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    for p in net.parameters():
        p.requires_grad_(True)


def retrain_bn(net: QNet, ds: Dataset, *, finetune: bool = False, finetune_epochs: int = 1,
               lr: float = 1e-3, max_samples: int | None = 10000, seed: int = 0,
               progress: bool = True) -> dict:
    """Re-estimate (and with ``finetune`` train) BN table k for every k, in place; returns a log."""
    t0 = time.time()
    x, y = ds.train_x, ds.train_y
    if max_samples is not None and len(x) > max_samples:
        sel = np.random.default_rng(seed).choice(len(x), max_samples, replace=False)
        x, y = x[np.sort(sel)], y[np.sort(sel)]
    ks = range(1, net.nbits + 1)
    if progress:
        from tqdm import tqdm
        ks = tqdm(ks, desc="retrain-bn", unit="k")
    for k in ks:
        if finetune:
            _finetune(net, ds, k, x, y, epochs=finetune_epochs, lr=lr, seed=seed)
        reestimate_bn(net, x, k)
    net.eval()
    return {"finetune": finetune, "samples": int(len(x)), "seconds": time.time() - t0}
