"""Bundle export/load: round trip, validation of every kind of bad bundle, no torch needed."""

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from progressivenn.model import golden
from progressivenn.model.bundle import BundleError, load_bundle, save_bundle, validate_bundle
from progressivenn.model.fold import FoldError, choose_shift

from test_golden import tiny_bundle


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    b, _ = tiny_bundle()
    path = tmp_path_factory.mktemp("b") / "bundle"
    save_bundle(b, path)
    return b, path


def test_round_trip(saved):
    b, path = saved
    c = load_bundle(path)
    for f in ("nbits", "abits", "mbits", "num_classes", "input_scale", "dataset"):
        assert getattr(c, f) == getattr(b, f)
    assert tuple(c.input_shape) == tuple(b.input_shape)
    assert np.array_equal(c.test_x, b.test_x) and c.test_x.dtype == np.uint8
    assert np.array_equal(c.test_y, b.test_y)
    assert [l.kind for l in c.layers] == [l.kind for l in b.layers]
    for lb, lc in zip(b.layers, c.layers):
        assert (lb.name, tuple(lb.in_shape), tuple(lb.out_shape), lb.relu) == \
               (lc.name, tuple(lc.in_shape), tuple(lc.out_shape), lc.relu)
        if lb.is_compute:
            assert np.array_equal(lb.codes, lc.codes)
            for ts in ("retrained", "fixed"):
                for f in "MBS":
                    assert np.array_equal(getattr(lb.tables[ts], f), getattr(lc.tables[ts], f))
    for k in (1, 8):
        assert torch.equal(golden.run_network(b, b.test_x, k).logits,
                           golden.run_network(c, c.test_x, k).logits)
    for ts in ("retrained", "fixed"):
        assert c.meta["logit_scale"][ts] == pytest.approx(b.meta["logit_scale"][ts])


def test_loader_needs_no_torch(saved):
    _, path = saved
    code = ("import sys; from progressivenn.model.bundle import load_bundle; "
            f"b = load_bundle({str(path)!r}); assert 'torch' not in sys.modules, 'torch imported'; "
            "print(len(b.layers))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "6"


def _edit(path, tmp_path, *, manifest=None, arrays=None):
    """Copy the bundle with the manifest and/or arrays edited; return the new path."""
    new = tmp_path / "edited"
    new.mkdir()
    man = json.loads((path / "manifest.json").read_text())
    with np.load(path / "arrays.npz") as z:
        arr = {k: z[k] for k in z.files}
    if manifest:
        manifest(man)
    if arrays:
        arrays(arr)
    (new / "manifest.json").write_text(json.dumps(man))
    np.savez(new / "arrays.npz", **arr)
    return new


def _set(d, key, value):
    d[key] = value


BAD = [
    ("version", dict(manifest=lambda m: _set(m, "version", 2)), "bundle: version: 2 is not supported"),
    ("format", dict(manifest=lambda m: _set(m, "format", "onnx")), "bundle: format"),
    ("nbits", dict(manifest=lambda m: _set(m, "nbits", 0)), "bundle: nbits"),
    ("missing key", dict(manifest=lambda m: m.pop("layers")), "bundle: layers: missing"),
    ("missing array", dict(arrays=lambda a: a.pop("layers.0.tables.fixed.B")),
     "bundle: layers\\[0\\].tables.fixed.B: array 'layers.0.tables.fixed.B' missing"),
    ("M shape", dict(arrays=lambda a: _set(a, "layers.4.tables.retrained.M",
                                            a["layers.4.tables.retrained.M"][:, :5])),
     "bundle: layers\\[4\\].tables.retrained.M: shape \\(8, 5\\) != \\(8, 8\\)"),
    ("codes range", dict(arrays=lambda a: _set(a, "layers.0.codes",
                                                a["layers.0.codes"].astype(np.int64) + 256)),
     "bundle: layers\\[0\\].codes: value .* outside \\[0, 255\\]"),
    ("M range", dict(arrays=lambda a: _set(a, "layers.0.tables.retrained.M",
                                            a["layers.0.tables.retrained.M"] * 0 + (1 << 17))),
     "bundle: layers\\[0\\].tables.retrained.M: value 131072 outside"),
    ("S < 0", dict(arrays=lambda a: _set(a, "layers.0.tables.fixed.S",
                                          a["layers.0.tables.fixed.S"] * 0 - 1)),
     "bundle: layers\\[0\\].tables.fixed.S: value -1 outside \\[0, 63\\]"),
    ("float M", dict(arrays=lambda a: _set(a, "layers.0.tables.fixed.M",
                                            a["layers.0.tables.fixed.M"].astype(float))),
     "bundle: layers\\[0\\].tables.fixed.M: dtype float64"),
    ("shape chain", dict(manifest=lambda m: _set(m["layers"][1], "in_shape", [4, 8, 4])),
     "bundle: layers\\[1\\].in_shape: \\(4, 8, 4\\) != \\(4, 8, 8\\)"),
    ("out shape", dict(manifest=lambda m: _set(m["layers"][1], "out_shape", [4, 3, 3])),
     "bundle: layers\\[1\\].out_shape"),
    ("kind", dict(manifest=lambda m: _set(m["layers"][1], "kind", "avgpool")),
     "bundle: layers\\[1\\].kind: 'avgpool'"),
    ("relu", dict(manifest=lambda m: _set(m["layers"][-1], "relu", True)),
     "bundle: layers\\[5\\].relu"),
    ("tables set", dict(manifest=lambda m: m["layers"][0]["tables"].pop("fixed")),
     "bundle: layers\\[0\\].tables: keys"),
    ("test labels", dict(arrays=lambda a: _set(a, "test_y", a["test_y"] + 10)),
     "bundle: test_y: value"),
    ("test codes", dict(arrays=lambda a: _set(a, "test_x", a["test_x"].astype(np.uint16) + 256)),
     "bundle: test_x: value"),
    ("test count", dict(manifest=lambda m: _set(m["test"], "count", 3)), "bundle: test.count"),
    ("classes", dict(manifest=lambda m: _set(m, "num_classes", 7)), "bundle: layers\\[5\\].out_shape: \\(5,\\) != \\(7,\\)"),
]


@pytest.mark.parametrize("name,edit,msg", BAD, ids=[b[0] for b in BAD])
def test_bad_bundles_refused(saved, tmp_path, name, edit, msg):
    _, path = saved
    with pytest.raises(BundleError, match=msg) as e:
        load_bundle(_edit(path, tmp_path, **edit))
    assert "\n" not in str(e.value)


def test_truncated_and_missing_files(saved, tmp_path):
    _, path = saved
    t = tmp_path / "t"
    t.mkdir()
    (t / "manifest.json").write_text((path / "manifest.json").read_text())
    raw = (path / "arrays.npz").read_bytes()
    (t / "arrays.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(BundleError, match="bundle: arrays.npz: cannot read"):
        load_bundle(t)
    (t / "arrays.npz").unlink()
    with pytest.raises(BundleError, match="arrays.npz: missing"):
        load_bundle(t)
    (t / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="manifest.json: not valid JSON"):
        load_bundle(t)
    with pytest.raises(BundleError, match="not a bundle directory"):
        load_bundle(tmp_path / "nothing")
    assert issubclass(BundleError, ValueError)


def test_logit_overflow_refused():
    b, _ = tiny_bundle()
    b.layers[-1].tables["fixed"].B[0] = (1 << 40)
    b.layers[-1].tables["fixed"].S[0] = 0
    with pytest.raises(BundleError, match="layers\\[5\\].tables.fixed.M: k=1: logits can reach"):
        validate_bundle(b)


def test_save_refuses_invalid(tmp_path):
    b, _ = tiny_bundle()
    b.layers[0].codes = b.layers[0].codes[:, :-1]
    with pytest.raises(BundleError, match="layers\\[0\\].codes: shape"):
        save_bundle(b, tmp_path / "x")
    assert not (tmp_path / "x" / "manifest.json").exists()


def test_choose_shift_fits_and_refuses():
    m = np.array([0.75, -0.001, 3e-4])
    b = np.array([10.5, -3.0, 0.0])
    M, B, S = choose_shift(m, b, mbits=18, acc_bound=1 << 20, last=False, where="x")
    assert np.abs(M).max() <= (1 << 17) - 1 and np.abs(M).max() > (1 << 16)
    assert np.allclose(M / 2.0 ** S, m, atol=2.0 ** -S) and np.allclose(B / 2.0 ** S, b, atol=2.0 ** -S)
    with pytest.raises(FoldError, match="layer9 k=3: no shift S"):
        choose_shift(np.array([1e6]), np.array([0.0]), mbits=18, acc_bound=10, last=False,
                     where="layer9 k=3")
