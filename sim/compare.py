"""The judge: engine outputs layer by layer against the integer golden model.

A mismatch is reported where it is: layer, channel, position, k, image, expected, got.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Comparison", "golden_outputs", "compare_outputs"]


@dataclass
class Comparison:
    compared: int = 0
    mismatches: int = 0
    first: dict | None = None


def golden_outputs(bundle, images: np.ndarray, k: int, tables: str = "retrained") -> list:
    """Per-layer golden outputs (numpy int64, batch first) for codes ``images`` [n,C,H,W]."""
    import torch

    from ..model.golden import run_network

    res = run_network(bundle, torch.as_tensor(np.asarray(images, dtype=np.int64)), k,
                      tables=tables, method="planes")
    return [o.numpy() for o in res.outputs]


def compare_outputs(bundle, got: list, expected: list, *, k: int, image: int) -> Comparison:
    """Compare every value of every layer; remember the first mismatch."""
    cmp = Comparison()
    if len(got) != len(expected):
        raise ValueError(f"{len(got)} layer outputs from the engine, {len(expected)} from golden")
    for li, (g, e) in enumerate(zip(got, expected)):
        g, e = np.asarray(g), np.asarray(e)
        layer = bundle.layers[li]
        if g.shape != e.shape:
            cmp.mismatches += e.size
            cmp.first = cmp.first or {"layer": li, "name": layer.name, "k": k, "image": image,
                                      "error": f"shape {g.shape} != expected {e.shape}"}
            continue
        cmp.compared += e.size
        diff = g != e
        n = int(diff.sum())
        if n:
            cmp.mismatches += n
            if cmp.first is None:
                idx = tuple(int(v) for v in np.argwhere(diff)[0])
                cmp.first = {"layer": li, "name": layer.name, "kind": layer.kind, "k": k,
                             "image": image, "channel": idx[0], "position": list(idx[1:]),
                             "expected": int(e[idx]), "got": int(g[idx])}
    return cmp
