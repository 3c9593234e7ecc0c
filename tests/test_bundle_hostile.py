"""Issue 13, the bundle loader as an attacker sees it: arrays the manifest never names are not
read, declared sizes are checked from the npy headers before any allocation (a cap), every
zip/zlib/npy error is one BundleError naming file and field; plus a hypothesis fuzz of random
mutations of a valid bundle (never another exception, never more memory than the cap)."""

import io
import json
import shutil
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bundles import random_bundle
from progressivenn.model.bundle import BundleError, load_bundle, save_bundle

CAP = 1 << 20          # a 1 MiB cap keeps the bombs small; the default is 256 MiB


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return save_bundle(random_bundle(5), tmp_path_factory.mktemp("good") / "bundle")


@pytest.fixture(scope="module")
def unhashed(good, tmp_path_factory):
    return _copy(good, tmp_path_factory.mktemp("unhashed"), "bundle")


def _copy(good, tmp_path, name="b"):
    """A copy without the arrays' hash in the manifest, so that each damage below reaches the
    check it is about (with the hash, any change to arrays.npz is refused as a mismatch too)."""
    dst = tmp_path / name
    shutil.copytree(good, dst)
    man = json.loads((dst / "manifest.json").read_text())
    del man["arrays_sha256"]
    (dst / "manifest.json").write_text(json.dumps(man))
    return dst


def test_manifest_and_arrays_must_belong_together(good, tmp_path):
    """An interrupt between writing the arrays and the manifest used to pair new arrays with the
    old manifest; the manifest now records the hash of its arrays.npz."""
    other = save_bundle(random_bundle(6), tmp_path / "other")
    mixed = tmp_path / "mixed"
    shutil.copytree(good, mixed)
    shutil.copy(other / "arrays.npz", mixed / "arrays.npz")
    with pytest.raises(BundleError, match=r"^bundle: arrays.npz: does not match manifest.json"):
        load_bundle(mixed)


def _members(path) -> dict:
    with zipfile.ZipFile(path / "arrays.npz") as z:
        return {i.filename: z.read(i) for i in z.infolist()}


def _write(path, members: dict, compression=zipfile.ZIP_DEFLATED) -> None:
    with zipfile.ZipFile(path / "arrays.npz", "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)


def _npy_header(shape, descr="<u2") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                               "shape": tuple(shape)})
    return buf.getvalue()


def _peak(fn):
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_unnamed_arrays_are_not_read(good, tmp_path):
    """The seen case: a zip bomb under a name the manifest never mentions cost 1000x its size."""
    b = _copy(good, tmp_path)
    m = _members(b)
    with zipfile.ZipFile(b / "arrays.npz", "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in m.items():
            z.writestr(name, data)
        with z.open("junk.npy", "w", force_zip64=True) as f:   # 8 MiB of zeros, ~8 KB on disk
            f.write(_npy_header((4 << 20,)))
            for _ in range(8):
                f.write(bytes(1 << 20))
    assert (b / "arrays.npz").stat().st_size < 200_000
    peak = _peak(lambda: load_bundle(b, max_bytes=CAP))
    assert peak < CAP


@pytest.mark.parametrize("shape", [(10 ** 9, 2, 6, 6), (1 << 62, 1, 1, 1)])
def test_declared_size_checked_before_allocation(good, tmp_path, shape):
    b = _copy(good, tmp_path)
    m = _members(b)
    m["test_x.npy"] = _npy_header(shape) + b"\0" * 64
    _write(b, m)
    with pytest.raises(BundleError, match=r"test\.x: declares .* cap"):
        assert _peak(lambda: load_bundle(b, max_bytes=CAP)) < CAP


def test_header_and_entry_size_disagree(good, tmp_path):
    b = _copy(good, tmp_path)
    m = _members(b)
    m["test_y.npy"] = _npy_header((4,), "<i8") + b"\0" * 8      # 4 labels declared, 1 present
    _write(b, m)
    with pytest.raises(BundleError, match=r"^bundle: test\.y: zip entry holds 8 data bytes"):
        load_bundle(b)


def _patch_entry(b, name, *, flag=None, method=None):
    """Set the general-purpose flag or the compression method of one member, in both the local
    header and the central directory."""
    raw = bytearray((b / "arrays.npz").read_bytes())
    fname = name.encode()
    for sig, off_flag, off_method, off_name in ((b"PK\x03\x04", 6, 8, 30),
                                                (b"PK\x01\x02", 8, 10, 46)):
        pos = 0
        while (pos := raw.find(sig, pos)) >= 0:
            if raw[pos + off_name:pos + off_name + len(fname)] == fname:
                if flag is not None:
                    raw[pos + off_flag] |= flag
                if method is not None:
                    raw[pos + off_method:pos + off_method + 2] = method.to_bytes(2, "little")
            pos += 4
    (b / "arrays.npz").write_bytes(bytes(raw))


@pytest.mark.parametrize("what,patch,msg", [
    ("encrypted", dict(flag=1), "encrypted zip entry"),
    ("implode", dict(method=6), "zip compression method 6 is not supported"),
])
def test_encrypted_and_unknown_compression(good, tmp_path, what, patch, msg):
    b = _copy(good, tmp_path)
    _patch_entry(b, "test_x.npy", **patch)
    with pytest.raises(BundleError, match=rf"^bundle: test\.x: {msg}"):
        load_bundle(b)


def test_damaged_deflate_data(good, tmp_path):
    b = _copy(good, tmp_path)
    m = _members(b)
    m["layers.0.codes.npy"] = m["layers.0.codes.npy"]
    _write(b, m)
    raw = bytearray((b / "arrays.npz").read_bytes())
    with zipfile.ZipFile(b / "arrays.npz") as z:
        info = z.getinfo("layers.0.codes.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for i in range(start + 20, start + info.compress_size - 4):
        raw[i] ^= 0x5A
    (b / "arrays.npz").write_bytes(bytes(raw))
    with pytest.raises(BundleError, match=r"^bundle: layers\[0\]\.codes: damaged"):
        load_bundle(b)


def test_zero_d_test_x_refused(good, tmp_path):
    b = _copy(good, tmp_path)
    m = _members(b)
    buf = io.BytesIO()
    np.save(buf, np.uint16(7))
    m["test_x.npy"] = buf.getvalue()
    _write(b, m)
    with pytest.raises(BundleError, match=r"^bundle: test_x: must be 4-d"):
        load_bundle(b)


def test_test_label_out_of_range_refused(good, tmp_path):
    b = _copy(good, tmp_path)
    m = _members(b)
    buf = io.BytesIO()
    np.save(buf, np.array([0, 1, 2, 99], np.int64))
    m["test_y.npy"] = buf.getvalue()
    _write(b, m)
    with pytest.raises(BundleError, match=r"^bundle: test_y: value 99 outside \[0, 3\]"):
        load_bundle(b)


def test_object_arrays_never_unpickled(good, tmp_path):
    b = _copy(good, tmp_path)
    m = _members(b)
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    m["test_y.npy"] = buf.getvalue()
    _write(b, m)
    with pytest.raises(BundleError, match=r"^bundle: test\.y: dtype object is not an integer"):
        load_bundle(b)


# ---- fuzzing ------------------------------------------------------------------------------------

def _mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for op, where, value in ops:
        if not buf:
            break
        i = where % len(buf)
        if op == "flip":
            buf[i] ^= 1 << (value % 8)
        elif op == "set":
            buf[i] = value % 256
        elif op == "cut":
            del buf[i:]
        elif op == "insert":
            buf[i:i] = bytes([value % 256]) * (1 + value % 7)
        elif op == "drop":
            del buf[i:i + 1 + value % 5]
    return bytes(buf)


OPS = st.lists(st.tuples(st.sampled_from(["flip", "set", "cut", "insert", "drop"]),
                         st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=4)


@pytest.fixture(scope="module")
def stored(good, tmp_path_factory):
    """The same bundle with stored (uncompressed) members: mutations reach the npy headers."""
    b = _copy(good, tmp_path_factory.mktemp("stored"), "bundle")
    _write(b, _members(good), zipfile.ZIP_STORED)
    load_bundle(b)
    return b


def _fuzz_one(src, tmp_path, target, ops, counts):
    b = tmp_path / "fuzz"
    if b.exists():
        shutil.rmtree(b)
    shutil.copytree(src, b)
    f = b / target
    f.write_bytes(_mutate(f.read_bytes(), ops))
    result = {}

    def load():
        try:
            load_bundle(b, max_bytes=CAP)
            result["ok"] = True
        except BundleError as e:
            assert "\n" not in str(e) and str(e).startswith("bundle: ")
            result["ok"] = False
    peak = _peak(load)
    assert peak < CAP + (256 << 10), f"{peak} bytes traced"
    counts["cases"] += 1
    counts["refused" if not result["ok"] else "accepted"] += 1


def _fuzz(examples):
    @settings(max_examples=examples, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(kind=st.sampled_from(["deflated", "stored"]),
           target=st.sampled_from(["arrays.npz", "arrays.npz", "manifest.json"]), ops=OPS)
    def run(good, stored, tmp_path, kind, target, ops, counts):
        _fuzz_one(good if kind == "deflated" else stored, tmp_path, target, ops, counts)
    # the fuzz runs on bundles without the arrays' hash, so that mutations reach the zip, npy
    # and manifest checks instead of all being refused by the hash
    return run


_fuzz_small = _fuzz(150)
_fuzz_large = _fuzz(2000)


def test_fuzz_loader(unhashed, stored, tmp_path):
    counts = {"cases": 0, "refused": 0, "accepted": 0}
    _fuzz_small(unhashed, stored, tmp_path, counts=counts)
    assert counts["cases"] >= 150 and counts["refused"] > 0
    print(f"\nloader fuzz: {counts}")


@pytest.mark.slow
def test_fuzz_loader_large(unhashed, stored, tmp_path):
    counts = {"cases": 0, "refused": 0, "accepted": 0}
    _fuzz_large(unhashed, stored, tmp_path, counts=counts)
    assert counts["cases"] >= 2000
    print(f"\nloader fuzz: {counts}")
