"""Accuracy per k: float reference, fake-quant torch, and the integer golden model of the bundle.

All figures are on the same images: the first ``limit`` test images (default: all digits test
images, the first 1000 otherwise; the same images the bundle carries).

The golden model runs over :data:`GOLDEN_CHUNK` images at a time (each image's result does not
depend on the others; the int64 patches of 10,000 MNIST images would take about 2 GB per layer at
once), and the fixed table at k=N is not run again where it is the retrained one (same M, B, S).
"""

from __future__ import annotations

import numpy as np
import torch

from . import golden
from .bwb import planes, set_quant
from .bundle import Bundle
from .nets import QNet
from .train import accuracy

__all__ = ["evaluate", "default_limit", "GOLDEN_CHUNK"]

#: images per golden-model call in :func:`evaluate`
GOLDEN_CHUNK = 1000


def default_limit(dataset: str) -> int | None:
    return None if dataset == "digits" else 1000


def _torch_preds(net: QNet, x: np.ndarray, k: int, table=None) -> np.ndarray:
    out = []
    with torch.no_grad(), planes(net, k, table):
        for i in range(0, len(x), 500):
            out.append(net(torch.from_numpy(x[i:i + 500].astype(np.int64))).argmax(1))
    return torch.cat(out).numpy()


def _golden_preds(bundle: Bundle, x: np.ndarray, k: int, tables: str, method: str) -> np.ndarray:
    """The golden model's predictions, :data:`GOLDEN_CHUNK` images per call."""
    return np.concatenate([golden.run_network(bundle, x[i:i + GOLDEN_CHUNK], k, tables,
                                              method).pred.numpy()
                           for i in range(0, len(x), GOLDEN_CHUNK)] or [np.zeros(0, np.int64)])


def _same_tables(bundle: Bundle, k: int) -> bool:
    """Whether the retrained and the fixed tables of every layer agree at ``k``."""
    return all(np.array_equal(getattr(layer.tables["retrained"], f)[k - 1],
                              getattr(layer.tables["fixed"], f)[k - 1])
               for layer in bundle.layers if layer.kind in ("conv", "linear") for f in "MBS")


def evaluate(net: QNet, bundle: Bundle, *, method: str = "direct") -> dict:
    """Accuracies on the bundle's test images; ``net`` holds the retrained BN tables.

    Returns ``accuracy`` (``"float"`` = no quantization at all with BN table N, ``"1"``..``"N"`` =
    integer golden model with per-k retrained BN), ``accuracy_no_bn_retrain`` (golden, the k=N BN at
    every k), ``accuracy_fakequant`` (torch fake-quant, retrained BN), ``agreement`` (share of images
    where fake-quant torch and the golden model predict the same class).
    """
    x, y = bundle.test_x, bundle.test_y
    n = bundle.nbits
    net = net.eval()
    res = {"n_test": int(len(x)), "dataset": bundle.dataset, "nbits": n, "abits": bundle.abits,
           "accuracy": {}, "accuracy_no_bn_retrain": {}, "accuracy_fakequant": {}, "agreement": {}}
    set_quant(net, False)
    try:
        res["accuracy"]["float"] = accuracy(net, x, y, n)
    finally:
        set_quant(net, True)
    dnet = net.double()
    try:
        for k in range(1, n + 1):
            tp = _torch_preds(dnet, x, k)
            g = _golden_preds(bundle, x, k, "retrained", method)
            gf = g if _same_tables(bundle, k) else _golden_preds(bundle, x, k, "fixed", method)
            res["accuracy"][str(k)] = float((g == y).mean())
            res["accuracy_no_bn_retrain"][str(k)] = float((gf == y).mean())
            res["accuracy_fakequant"][str(k)] = float((tp == y).mean())
            res["agreement"][str(k)] = float((tp == g).mean())
    finally:
        net.float()
    return res
