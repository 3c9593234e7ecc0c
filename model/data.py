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
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Dataset", "load_dataset", "DATASETS", "read_idx", "check_labels"]

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


#: largest idx file read (bytes, after decompression): MNIST's training images are 47 MB
MAX_IDX_BYTES = 256 << 20


def read_idx(path: Path, *, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Read one idx file (``.gz`` or plain); checks magic, sizes and the gzip stream (a truncated
    or corrupt ``.gz`` is a ValueError naming the file, never more than ``max_bytes`` read)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise ValueError(f"{path}: truncated or corrupt gzip file ({type(e).__name__}:"
                         f" {' '.join(str(e).split())})") from None
    if len(raw) > max_bytes:
        raise ValueError(f"{path}: more than {max_bytes} bytes; not an idx file of this size")
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte idx file (bad magic)")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * d: 8 + 4 * d], "big") for d in range(ndim)]
    start = 4 + 4 * ndim
    size = int(np.prod(dims, dtype=object)) if dims else 1
    if len(raw) - start != size:
        raise ValueError(f"{path}: expected {size} bytes of data for shape {dims}, "
                         f"found {len(raw) - start}")
    return np.frombuffer(raw, np.uint8, size, start).reshape(dims)


class _ArraysOnly(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a dataset file runs no code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _load_pickle(p: Path) -> dict:
    """A CIFAR python file as a dict; any damage is a ValueError naming the file."""
    try:
        with open(p, "rb") as f:
            d = _ArraysOnly(f, encoding="bytes").load()
    except OSError:
        raise
    except Exception as e:  # UnpicklingError, EOFError, ValueError, ... of a damaged file
        raise ValueError(f"{p}: damaged or foreign pickle ({type(e).__name__}:"
                         f" {' '.join(str(e).split())[:160]})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{p}: not a CIFAR python file (no dict inside)")
    return d


def _images(p: Path, d: dict, labels_key: bytes):
    """(x [n, 3, 32, 32] uint8, y int64) from a CIFAR dict; ValueError naming ``p``."""
    if b"data" not in d or labels_key not in d:
        raise ValueError(f"{p}: not a CIFAR python file (no data/{labels_key.decode()})")
    try:
        x = np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(d[labels_key], np.int64).reshape(-1)
    except (ValueError, TypeError, OverflowError) as e:
        raise ValueError(f"{p}: images or labels of the wrong shape or type ({e})") from None
    return x, y


def check_labels(where, x: np.ndarray, y: np.ndarray, classes: int) -> None:
    """Refuse labels outside ``[0, classes-1]`` or a count different from the images'."""
    if len(x) != len(y):
        raise ValueError(f"{where}: {len(x)} images but {len(y)} labels")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= classes):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise ValueError(f"{where}: label {bad} outside 0..{classes - 1}")


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
        check_labels(f"{data_dir}: {split} labels", x, y, 10)
        out += [x[:, None], y.astype(np.int64)]
    return out


def _load_cifar10(data_dir: Path):
    base = data_dir / "cifar-10-batches-py" if (data_dir / "cifar-10-batches-py").is_dir() else data_dir

    def batch(name):
        p = base / name
        if not p.is_file():
            raise FileNotFoundError(f"{base}: missing {name} (the CIFAR-10 python batches)")
        x, y = _images(p, _load_pickle(p), b"labels")
        check_labels(p, x, y, 10)
        return x, y

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
        x, y = _images(p, _load_pickle(p), b"fine_labels")
        check_labels(p, x, y, 100)
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
