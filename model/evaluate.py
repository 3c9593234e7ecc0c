"""Accuracy per k: float reference, fake-quant torch, and the integer golden model of the bundle.

All figures are on the same images: the first ``limit`` test images (default: all digits test
images, the first 1000 otherwise; the same images the bundle carries).
"""

from __future__ import annotations

import numpy as np
import torch

from . import golden
from .bwb import planes, set_quant
from .bundle import Bundle
from .nets import QNet
from .train import accuracy

__all__ = ["evaluate", "default_limit"]


def default_limit(dataset: str) -> int | None:
    return None if dataset == "digits" else 1000


def _torch_preds(net: QNet, x: np.ndarray, k: int, table=None) -> np.ndarray:
    out = []
    with torch.no_grad(), planes(net, k, table):
        for i in range(0, len(x), 500):
            out.append(net(torch.from_numpy(x[i:i + 500].astype(np.int64))).argmax(1))
    return torch.cat(out).numpy()


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
            g = golden.run_network(bundle, x, k, "retrained", method).pred.numpy()
            gf = golden.run_network(bundle, x, k, "fixed", method).pred.numpy()
            res["accuracy"][str(k)] = float((g == y).mean())
            res["accuracy_no_bn_retrain"][str(k)] = float((gf == y).mean())
            res["accuracy_fakequant"][str(k)] = float((tp == y).mean())
            res["agreement"][str(k)] = float((tp == g).mean())
    finally:
        net.float()
    return res
