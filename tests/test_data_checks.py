"""Issue 13, dataset readers: truncated or corrupt .gz files, labels out of range and foreign
pickles are one-line errors naming the file (they were tracebacks, or silently scored)."""

import gzip
import os
import pickle

import numpy as np
import pytest

from progressivenn.cli import main
from progressivenn.model.data import load_dataset, read_idx


def _idx(arr: np.ndarray) -> bytes:
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def _mnist(folder, *, labels_hi=9, n=20):
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for split in ("train", "t10k"):
        x = rng.integers(0, 256, size=(n, 28, 28))
        y = rng.integers(0, 10, size=n)
        y[-1] = labels_hi
        (folder / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(x)))
        (folder / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(y)))
    return folder


def test_mnist_reads(tmp_path):
    ds = load_dataset("mnist", _mnist(tmp_path / "m"))
    assert ds.train_x.shape == (20, 1, 28, 28) and ds.test_y.max() <= 9


def test_label_out_of_range_refused(tmp_path):
    with pytest.raises(ValueError, match="t10k labels: label 200 outside 0..9|train labels: label"
                                         " 200 outside 0..9"):
        load_dataset("mnist", _mnist(tmp_path / "m", labels_hi=200))


@pytest.mark.parametrize("damage,msg", [
    (lambda raw: raw[:len(raw) // 2], "truncated or corrupt gzip"),
    (lambda raw: raw[:10] + bytes(b ^ 0xFF for b in raw[10:40]) + raw[40:], "truncated or corrupt"
                                                                              " gzip"),
    (lambda raw: b"not gzip at all", "truncated or corrupt gzip"),
])
def test_damaged_gzip_named(tmp_path, damage, msg, capsys):
    m = _mnist(tmp_path / "m")
    f = m / "train-images-idx3-ubyte.gz"
    f.write_bytes(damage(f.read_bytes()))
    with pytest.raises(ValueError, match=f"{f}: {msg}"):
        read_idx(f)
    assert main(["train", "--dataset", "mnist", "--data-dir", str(m), "--quiet",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(f) in err and msg in err


def _cifar(folder, labels_hi=9, payload=None):
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = {b"data": rng.integers(0, 256, size=(4, 3072)).astype(np.uint8),
             b"labels": [1, 2, 3, labels_hi]}
        with open(folder / name, "wb") as f:
            pickle.dump(payload if payload is not None else d, f, protocol=2)
    return folder


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/pnn_pwned",))


def test_cifar_reads_and_checks(tmp_path):
    ds = load_dataset("cifar10", _cifar(tmp_path / "ok"))
    assert ds.train_x.shape == (20, 3, 32, 32)
    with pytest.raises(ValueError, match=r"data_batch_1: label 12 outside 0..9"):
        load_dataset("cifar10", _cifar(tmp_path / "bad", labels_hi=12))


def test_cifar_pickle_runs_no_code(tmp_path):
    with pytest.raises(ValueError, match=r"data_batch_1: damaged or foreign pickle .*refusing to"
                                         r" load posix.system"):
        load_dataset("cifar10", _cifar(tmp_path / "evil", payload={b"data": Evil()}))
    assert not os.path.exists("/tmp/pnn_pwned")


def test_cifar_truncated_pickle_named(tmp_path):
    c = _cifar(tmp_path / "t")
    f = c / "data_batch_3"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"data_batch_3: damaged or foreign pickle"):
        load_dataset("cifar10", c)
