"""Quantization-aware training from scratch (Adam, cosine learning rate).

Two modes:

- default (the paper): train at ``k = N`` planes; BN table ``N`` is trained.
- ``any_k``: every step samples ``k`` uniformly from ``1..N``, runs the network with the top ``k``
  planes and trains BN table ``k`` (the shared weights and activation clips learn from every k).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn

from .bwb import planes, set_k
from .data import Dataset
from .nets import QNet

__all__ = ["train", "accuracy", "batches"]


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator | None = None):
    """Yield (codes, labels) torch batches; shuffled when ``rng`` is given."""
    idx = rng.permutation(len(x)) if rng is not None else np.arange(len(x))
    for i in range(0, len(x), batch_size):
        j = idx[i:i + batch_size]
        yield torch.from_numpy(x[j].astype(np.int64)), torch.from_numpy(y[j])


@torch.no_grad()
def accuracy(net: QNet, x: np.ndarray, y: np.ndarray, k: int | None = None, table: int | None = None,
             batch_size: int = 500) -> float:
    """Fake-quant torch accuracy (eval mode) with ``k`` planes (default N) and BN ``table``."""
    was = net.training
    net.eval()
    k = net.nbits if k is None else k
    correct = 0
    with planes(net, k, table):
        for xb, yb in batches(x, y, batch_size):
            correct += int((net(xb).argmax(1) == yb).sum())
    net.train(was)
    return correct / max(len(x), 1)


def train(net: QNet, ds: Dataset, *, epochs: int = 20, any_k: bool = False, seed: int = 0,
          batch_size: int = 64, lr: float = 3e-3, limit: int | None = None,
          progress: bool = True) -> dict:
    """Train ``net`` on ``ds`` in place; returns a log (per-epoch loss and test accuracy at k=N)."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, not {epochs!r}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x, y = ds.train_x, ds.train_y
    if limit is not None:
        x, y = x[:limit], y[:limit]
    steps_per_epoch = math.ceil(len(x) / batch_size)
    total = epochs * steps_per_epoch
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    loss_fn = nn.CrossEntropyLoss()
    log = {"epochs": [], "any_k": any_k, "seed": seed, "batch_size": batch_size, "lr": lr}
    t0 = time.time()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, desc="train", unit="step", leave=True)
    n = net.nbits
    for ep in range(epochs):
        net.train()
        tot, cnt = 0.0, 0
        for xb, yb in batches(x, y, batch_size, rng):
            k = int(rng.integers(1, n + 1)) if any_k else n
            set_k(net, k)
            loss = loss_fn(net(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(yb)
            cnt += len(yb)
            if bar is not None:
                bar.update(1)
        set_k(net, n)
        acc = accuracy(net, ds.test_x, ds.test_y)
        log["epochs"].append({"epoch": ep + 1, "loss": tot / cnt, "test_acc_k%d" % n: acc})
        if bar is not None:
            bar.set_postfix(loss=f"{tot / cnt:.3f}", acc=f"{acc:.3f}")
    if bar is not None:
        bar.close()
    net.eval()
    log["seconds"] = time.time() - t0
    return log
