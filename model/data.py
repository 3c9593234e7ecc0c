"""Datasets with fixed, seeded splits, quantized to unsigned A-bit input codes (zero-point 0).

Nothing is ever downloaded. Input mapping (``A`` = activation bits, ``L = 2^A - 1``):

========  ==========================================  ===================  =====================
dataset   source                                      code               input_scale (real/code)
========  ==========================================  ===================  =====================
digits    scikit-learn ``load_digits`` (8x8, 0..16)   round(v * L / 16)  16 / L
mnist     ``--data-dir`` idx files (28x28 uint8)      round(p * L / 255) 1 / L  (A=8: code = p)
cifar10   ``--data-dir`` python pickles (32x32x3)     round(p * L / 255) 1 / L  (A=8: code = p)
cifar100  ``--data-dir`` python pickles ``train``/``test`` (fine labels)  same as CIFAR-10
========  ==========================================  ===================  =====================

``round`` is round-half-up on integers. The real input a network sees is ``code * input_scale``
(digits: the original 0..16 value, MNIST/CIFAR: the pixel / 255). Splits: digits, 80/20 stratified
with seed 0 (1437 train / 360 test); MNIST and CIFAR-10 their standard train/test sets.
"""

from __future__ import annotations

import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Dataset", "load_dataset", "DATASETS", "read_idx"]

DATASETS = ("digits", "mnist", "cifar10", "cifar100")


@dataclass
class Dataset:
    name: str
    train_x: np.ndarray      # unsigned codes [n, C, H, W]
    train_y: np.ndarray      # int64 [n]
    test_x: np.ndarray
    test_y: np.ndarray
    input_scale: float
    input_shape: tuple
    num_classes: int
    abits: int


def _requant(v: np.ndarray, num: int, den: int) -> np.ndarray:
    """round-half-up(v * num / den) on non-negative integers, exactly."""
    v = v.astype(np.int64)
    return (2 * v * num + den) // (2 * den)


def _code_dtype(abits: int):
    return np.uint8 if abits <= 8 else np.uint16


def read_idx(path: Path) -> np.ndarray:
    """Read one idx file (``.gz`` or plain); checks magic and sizes."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte idx file (bad magic)")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * d: 8 + 4 * d], "big") for d in range(ndim)]
    start = 4 + 4 * ndim
    size = int(np.prod(dims))
    if len(raw) - start != size:
        raise ValueError(f"{path}: expected {size} bytes of data for shape {dims}, "
                         f"found {len(raw) - start}")
    return np.frombuffer(raw, np.uint8, size, start).reshape(dims)


def _find(data_dir: Path, stem: str) -> Path:
    for cand in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        p = data_dir / cand
        if p.is_file():
            return p
    raise FileNotFoundError(f"{data_dir}: missing {stem}[.gz] (the standard MNIST idx files)")


def _check_dir(data_dir, name: str) -> Path:
    if data_dir is None:
        raise ValueError(f"dataset {name} needs --data-dir (nothing is downloaded)")
    p = Path(data_dir)
    if not p.is_dir():
        raise FileNotFoundError(f"--data-dir {data_dir}: no such directory")
    return p


def _load_mnist(data_dir: Path):
    out = []
    for split in ("train", "t10k"):
        x = read_idx(_find(data_dir, f"{split}-images-idx3-ubyte"))
        y = read_idx(_find(data_dir, f"{split}-labels-idx1-ubyte"))
        if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0] or x.shape[1:] != (28, 28):
            raise ValueError(f"{data_dir}: {split} images {x.shape} and labels {y.shape} do not match")
        out += [x[:, None], y.astype(np.int64)]
    return out


def _load_cifar10(data_dir: Path):
    base = data_dir / "cifar-10-batches-py" if (data_dir / "cifar-10-batches-py").is_dir() else data_dir

    def batch(name):
        p = base / name
        if not p.is_file():
            raise FileNotFoundError(f"{base}: missing {name} (the CIFAR-10 python batches)")
        with open(p, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        x = np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32)
        return x, np.asarray(d[b"labels"], np.int64)

    tr = [batch(f"data_batch_{i}") for i in range(1, 6)]
    te = batch("test_batch")
    return (np.concatenate([t[0] for t in tr]), np.concatenate([t[1] for t in tr]), te[0], te[1])


def _load_cifar100(data_dir: Path):
    """The standard CIFAR-100 python version: ``train`` and ``test`` pickles (``cifar-100-python/``
    or the folder itself), 100 fine labels."""
    base = data_dir / "cifar-100-python" if (data_dir / "cifar-100-python").is_dir() else data_dir

    def part(name):
        p = base / name
        if not p.is_file():
            raise FileNotFoundError(f"{base}: missing {name} (the CIFAR-100 python files)")
        with open(p, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        if b"data" not in d or b"fine_labels" not in d:
            raise ValueError(f"{p}: not a CIFAR-100 python file (no data/fine_labels)")
        x = np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(d[b"fine_labels"], np.int64)
        if len(x) != len(y) or (len(y) and (y.min() < 0 or y.max() > 99)):
            raise ValueError(f"{p}: {len(x)} images, {len(y)} labels or labels outside 0..99")
        return x, y

    return (*part("train"), *part("test"))


def load_dataset(name: str, data_dir=None, *, abits: int = 8) -> Dataset:
    """Load ``digits`` (bundled), ``mnist``, ``cifar10`` or ``cifar100`` (from ``data_dir``) as
    input codes."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if isinstance(abits, bool) or not isinstance(abits, int) or not 1 <= abits <= 16:
        raise ValueError(f"abits must be an integer in [1, 16], not {abits!r}")
    levels = (1 << abits) - 1
    dt = _code_dtype(abits)
    if name == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
        d = load_digits()
        x = d.images.astype(np.int64)[:, None]  # 0..16
        y = d.target.astype(np.int64)
        xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
        return Dataset(name, _requant(xtr, levels, 16).astype(dt), ytr,
                       _requant(xte, levels, 16).astype(dt), yte, 16.0 / levels, (1, 8, 8), 10, abits)
    path = _check_dir(data_dir, name)
    loader = {"mnist": _load_mnist, "cifar10": _load_cifar10, "cifar100": _load_cifar100}[name]
    xtr, ytr, xte, yte = loader(path)
    if abits != 8:
        xtr, xte = _requant(xtr, levels, 255), _requant(xte, levels, 255)
    shape = (1, 28, 28) if name == "mnist" else (3, 32, 32)
    classes = 100 if name == "cifar100" else 10
    return Dataset(name, xtr.astype(dt), ytr, xte.astype(dt), yte, 1.0 / levels, shape, classes,
                   abits)
