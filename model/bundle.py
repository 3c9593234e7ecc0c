"""The exported bundle: the only interface between ``model/`` and ``hw/`` + ``sim/``.

numpy only (no torch): the hardware side and users' own flows read bundles without torch.
The format is documented in ``docs/bundle.md``: a directory with ``manifest.json`` (format, version,
N/A, shapes, layer list, input quantization) and ``arrays.npz`` (weight codes, post-processing tables
``M/B/S`` per k for the "retrained" and "fixed" BN tables, and test images as input codes).

:func:`load_bundle` validates everything and raises :class:`BundleError` with a one-line message
naming the field, e.g. ``bundle: layers[1].tables.retrained.M: shape (8, 31) != (8, 32)``.
:func:`save_bundle` validates before it writes.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .npz import MAX_BYTES, NpzError, read_arrays

from . import contract

__all__ = [
    "FORMAT", "VERSION", "BBITS", "OBITS", "SBITS", "KINDS", "TABLE_SETS", "BundleError", "Tables",
    "LayerSpec", "Bundle", "load_bundle", "save_bundle", "validate_bundle", "conv_out_hw",
]

FORMAT = "progressivenn-bundle"
VERSION = 1
#: signed width of B, of a logit, and unsigned width of the shift S (fixed by format version 1)
BBITS = 48
OBITS = 32
SBITS = 6
KINDS = ("conv", "linear", "maxpool", "flatten", "add")
TABLE_SETS = ("retrained", "fixed")
MANIFEST = "manifest.json"
ARRAYS = "arrays.npz"
#: largest manifest.json read (bytes)
MAX_MANIFEST = 16 << 20


class BundleError(ValueError):
    """A malformed, truncated, mismatched or out-of-range bundle; the message names the field."""


@dataclass
class Tables:
    """Post-processing tables of one layer for one BN table set: row ``k-1`` is for ``k`` planes."""
    M: np.ndarray  # int64 [N, O]
    B: np.ndarray  # int64 [N, O]
    S: np.ndarray  # int64 [N]


@dataclass
class LayerSpec:
    name: str
    kind: str                      # "conv" | "linear" | "maxpool" | "flatten"
    in_shape: tuple                # (C, H, W) or (F,)
    out_shape: tuple
    kernel: tuple | None = None    # conv and maxpool
    stride: tuple | None = None
    padding: tuple | None = None
    codes: np.ndarray | None = None  # [O, I] unsigned codes; conv I in (cin, kh, kw) order
    relu: bool = False             # True: hidden layer (clamp); False: last layer (signed logits)
    tables: dict = field(default_factory=dict)  # "retrained" / "fixed" -> Tables
    #: index of the layer whose output this layer reads (-1: the network input); ``None``: the
    #: previous layer (a plain chain). Not used by ``add``, which reads ``inputs``.
    input: int | None = None
    inputs: tuple | None = None    # add: (a, b) layer indices (-1: the network input)
    add_m: tuple | None = None     # add: (Ma, Mb) integer rescaling factors
    add_s: int | None = None       # add: shift S

    @property
    def is_compute(self) -> bool:
        return self.kind in ("conv", "linear")

    @property
    def reduction(self) -> int:
        """Reduction length I of a conv/linear layer."""
        return int(self.codes.shape[1])


@dataclass
class Bundle:
    nbits: int
    abits: int
    mbits: int
    input_shape: tuple
    num_classes: int
    input_scale: float
    dataset: str
    layers: list
    test_x: np.ndarray
    test_y: np.ndarray
    meta: dict = field(default_factory=dict)

    def compute_layers(self) -> list:
        return [layer for layer in self.layers if layer.is_compute]


def _fail(where: str, msg: str):
    raise BundleError(f"bundle: {where}: {msg}")


def conv_out_hw(h: int, w: int, kernel, stride, padding) -> tuple:
    return ((h + 2 * padding[0] - kernel[0]) // stride[0] + 1,
            (w + 2 * padding[1] - kernel[1]) // stride[1] + 1)


def _int(where, v, lo=None, hi=None):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        _fail(where, f"must be an integer, not {v!r}")
    v = int(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        _fail(where, f"{v} outside [{lo}, {hi}]")
    return v


def _shape(where, v, n=None):
    if not isinstance(v, (list, tuple)) or not v or (n is not None and len(v) != n):
        _fail(where, f"must be a list of {n or 'some'} positive integers, not {v!r}")
    return tuple(_int(f"{where}[{i}]", x, 1) for i, x in enumerate(v))


def _int_array(where, a, shape, lo, hi):
    if not isinstance(a, np.ndarray):
        _fail(where, "missing array")
    if a.dtype.kind not in "iu":
        _fail(where, f"dtype {a.dtype} is not an integer type")
    if tuple(a.shape) != tuple(shape):
        _fail(where, f"shape {tuple(a.shape)} != {tuple(shape)}")
    if a.size:
        mn, mx = int(a.min()), int(a.max())
        if mn < lo or mx > hi:
            bad = mn if mn < lo else mx
            _fail(where, f"value {bad} outside [{lo}, {hi}]")


def _index(where, v, i):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        _fail(where, f"must be an integer layer index, not {v!r}")
    if not -1 <= int(v) < i:
        _fail(where, f"{int(v)} is not an earlier layer (-1 .. {i - 1}; -1 is the network input)")
    return int(v)


def _layer_input(w, layer, i) -> int:
    """The index of the layer whose output ``layer`` (at ``i``) reads; -1: the network input."""
    if layer.inputs is not None:
        _fail(f"{w}.inputs", f"only an add layer has inputs (this is a {layer.kind})")
    if layer.input is None:
        return i - 1
    return _index(f"{w}.input", layer.input, i)


def _add_inputs(w, layer, i) -> tuple:
    if layer.input is not None:
        _fail(f"{w}.input", "an add layer reads `inputs` (two layers), not `input`")
    if not isinstance(layer.inputs, (list, tuple)) or len(layer.inputs) != 2:
        _fail(f"{w}.inputs", f"must be a list of two layer indices, not {layer.inputs!r}")
    return tuple(_index(f"{w}.inputs[{j}]", v, i) for j, v in enumerate(layer.inputs))


def _check_add(w, layer, abits, mbits) -> None:
    if layer.codes is not None:
        _fail(f"{w}.codes", "an add layer has no codes")
    if layer.tables:
        _fail(f"{w}.tables", "an add layer has no tables")
    if not isinstance(layer.relu, (bool, np.bool_)) or not layer.relu:
        _fail(f"{w}.relu", "an add layer is a hidden layer: relu must be true")
    if not isinstance(layer.add_m, (list, tuple)) or len(layer.add_m) != 2:
        _fail(f"{w}.M", f"must be two integers [Ma, Mb], not {layer.add_m!r}")
    mmax = (1 << (mbits - 1)) - 1
    ms = [_int(f"{w}.M[{j}]", v, -mmax - 1, mmax) for j, v in enumerate(layer.add_m)]
    sh = _int(f"{w}.S", layer.add_s, 0, (1 << SBITS) - 1)
    zmax = ((1 << abits) - 1) * (abs(ms[0]) + abs(ms[1]))
    if zmax + contract.round_half(sh) >= 1 << contract.Z_BITS:
        _fail(f"{w}.M", f"xa*Ma + xb*Mb can reach {zmax}, beyond {contract.Z_BITS} bits")


def _check_header(b: Bundle) -> tuple:
    """The bundle's scalar fields; returns ``(N, A, mbits, input_shape, num_classes)``."""
    n = _int("nbits", b.nbits, 1, 16)
    a = _int("abits", b.abits, 1, 16)
    mb = _int("mbits", b.mbits, 2, 32)
    shape = _shape("input_shape", b.input_shape, 3)
    classes = _int("num_classes", b.num_classes, 1)
    if isinstance(b.input_scale, bool) or not isinstance(b.input_scale, (int, float)) \
            or not math.isfinite(b.input_scale) or b.input_scale <= 0:
        _fail("input_scale", f"must be a positive finite number, not {b.input_scale!r}")
    if not isinstance(b.dataset, str):
        _fail("dataset", f"must be a string, not {b.dataset!r}")
    if not isinstance(b.meta, dict):
        _fail("meta", "must be an object")
    if not isinstance(b.layers, list) or not b.layers:
        _fail("layers", "must be a non-empty list")
    return n, a, mb, shape, classes


def _check_inputs(w, layer, i, ins, outs_by_index) -> None:
    """``in_shape`` agrees with the output of the layer (two for an add) that ``layer`` reads."""
    if layer.kind == "add":
        for j, src in enumerate(_add_inputs(w, layer, i)):
            if outs_by_index[src] != ins:
                _fail(f"{w}.inputs[{j}]", f"layer {src} gives {outs_by_index[src]}, not the "
                                          f"in_shape {ins}")
        return
    src = _layer_input(w, layer, i)
    cur = outs_by_index[src]
    if ins != cur:
        what = "the previous layer's output" if layer.input is None else \
            f"the output of input {src}"
        _fail(f"{w}.in_shape", f"{ins} != {cur} ({what})")


def _expected_out_shape(w, layer, ins, outs):
    """The output shape that a conv, max-pool, flatten or linear layer's geometry gives (None:
    no shape fits)."""
    if layer.kind in ("conv", "maxpool"):
        if len(ins) != 3:
            _fail(f"{w}.in_shape", f"{layer.kind} needs (C, H, W), not {ins}")
        k = _shape(f"{w}.kernel", layer.kernel, 2)
        s = _shape(f"{w}.stride", layer.stride, 2)
        if not isinstance(layer.padding, (list, tuple)) or len(layer.padding) != 2:
            _fail(f"{w}.padding", f"must be 2 non-negative integers, not {layer.padding!r}")
        p = tuple(_int(f"{w}.padding[{j}]", v, 0, 64) for j, v in enumerate(layer.padding))
        if layer.kind == "maxpool" and p != (0, 0):
            _fail(f"{w}.padding", "max-pool has no padding")
        ho, wo = conv_out_hw(ins[1], ins[2], k, s, p)
        if ho < 1 or wo < 1:
            _fail(f"{w}.kernel", f"{k} larger than the padded input {ins}")
        return (outs[0] if layer.kind == "conv" else ins[0], ho, wo)
    if layer.kind == "flatten":
        if len(ins) != 3:
            _fail(f"{w}.in_shape", f"flatten needs (C, H, W), not {ins}")
        return (ins[0] * ins[1] * ins[2],)
    if len(ins) != 1:
        _fail(f"{w}.in_shape", f"linear needs a flat (F,) input, not {ins}")
    return (outs[0],) if len(outs) == 1 else None


def _check_tables(w, tables, *, n, a, mb, outputs, red, last) -> None:
    """Both table sets of a compute layer: shapes, ranges, and the fits rule at every k."""
    mmax, bmax = (1 << (mb - 1)) - 1, (1 << (BBITS - 1)) - 1
    if not isinstance(tables, dict) or set(tables) != set(TABLE_SETS):
        got = sorted(tables) if isinstance(tables, dict) else tables
        _fail(f"{w}.tables", f"keys {got} != {list(TABLE_SETS)}")
    for ts in TABLE_SETS:
        t = tables[ts]
        tw = f"{w}.tables.{ts}"
        if not isinstance(t, Tables):
            _fail(tw, "not a table set")
        _int_array(f"{tw}.M", t.M, (n, outputs), -mmax - 1, mmax)
        _int_array(f"{tw}.B", t.B, (n, outputs), -bmax - 1, bmax)
        _int_array(f"{tw}.S", t.S, (n,), 0, (1 << SBITS) - 1)
        for kk in range(1, n + 1):
            why = contract.fit_problem(t.M[kk - 1], t.B[kk - 1], int(t.S[kk - 1]),
                                       acc_max=contract.acc_bound(kk, red, a),
                                       obits=OBITS if last else None)
            if why:
                _fail(f"{tw}.M", f"k={kk}: {why}")


def _check_compute(w, layer, ins, outs, *, n, a, mb, last, final, classes) -> None:
    """A conv/linear layer's codes, relu flag, place in the network and tables (``last``: the
    last compute layer; ``final``: the network's last layer)."""
    o = outs[0]
    red = ins[0] * layer.kernel[0] * layer.kernel[1] if layer.kind == "conv" else ins[0]
    _int_array(f"{w}.codes", layer.codes, (o, red), 0, (1 << n) - 1)
    if not isinstance(layer.relu, (bool, np.bool_)):
        _fail(f"{w}.relu", f"must be true or false, not {layer.relu!r}")
    if bool(layer.relu) == last:
        _fail(f"{w}.relu", "the last compute layer has relu false (signed logits), every "
                           "other compute layer relu true")
    if last and (layer.kind != "linear" or not final):
        _fail(f"{w}.kind", "the last layer must be the linear layer giving the logits")
    if last and outs != (classes,):
        _fail(f"{w}.out_shape", f"{outs} != ({classes},) (num_classes)")
    _check_tables(w, layer.tables, n=n, a=a, mb=mb, outputs=o, red=red, last=last)


def _check_layer(b: Bundle, i: int, outs_by_index: dict, *, n, a, mb, classes,
                 last_compute: int) -> tuple:
    """Layer ``i`` against the layers before it; returns its output shape."""
    layer = b.layers[i]
    w = f"layers[{i}]"
    if not isinstance(layer, LayerSpec):
        _fail(w, "not a layer")
    if not isinstance(layer.name, str) or not layer.name:
        _fail(f"{w}.name", f"must be a non-empty string, not {layer.name!r}")
    if layer.kind not in KINDS:
        _fail(f"{w}.kind", f"{layer.kind!r} is not one of {', '.join(KINDS)}")
    ins = _shape(f"{w}.in_shape", layer.in_shape)
    _check_inputs(w, layer, i, ins, outs_by_index)
    outs = _shape(f"{w}.out_shape", layer.out_shape)
    if layer.kind == "add":
        if outs != ins:
            _fail(f"{w}.out_shape", f"{outs} != {ins} (an add keeps the shape)")
        _check_add(w, layer, a, mb)
        return outs
    exp = _expected_out_shape(w, layer, ins, outs)
    if exp is None or outs != exp:
        _fail(f"{w}.out_shape", f"{outs} != {exp}")
    if layer.is_compute:
        _check_compute(w, layer, ins, outs, n=n, a=a, mb=mb, last=i == last_compute,
                       final=i == len(b.layers) - 1, classes=classes)
    else:
        if layer.codes is not None:
            _fail(f"{w}.codes", f"a {layer.kind} layer has no codes")
        if layer.tables:
            _fail(f"{w}.tables", f"a {layer.kind} layer has no tables")
    return outs


def validate_bundle(b: Bundle) -> Bundle:
    """Check every field of ``b``; raise :class:`BundleError` naming the first bad one."""
    n, a, mb, shape, classes = _check_header(b)
    outs_by_index = {-1: shape}   # output shape of every layer so far (-1: the network input)
    computes = [i for i, layer in enumerate(b.layers)
                if getattr(layer, "kind", None) in ("conv", "linear")]
    if not computes:
        _fail("layers", "no conv or linear layer")
    for i in range(len(b.layers)):
        outs_by_index[i] = _check_layer(b, i, outs_by_index, n=n, a=a, mb=mb, classes=classes,
                                        last_compute=computes[-1])
    if not isinstance(b.test_x, np.ndarray) or b.test_x.dtype not in (np.uint8, np.uint16):
        _fail("test_x", f"must be a uint8/uint16 array, not {getattr(b.test_x, 'dtype', b.test_x)!r}")
    if b.test_x.ndim != 4 or tuple(b.test_x.shape[1:]) != shape:
        _fail("test_x", f"shape {tuple(b.test_x.shape)} != (n, {', '.join(map(str, shape))})")
    nt = b.test_x.shape[0]
    _int_array("test_x", b.test_x, b.test_x.shape, 0, (1 << a) - 1)
    _int_array("test_y", b.test_y, (nt,), 0, classes - 1)
    return b


# ---- files ----------------------------------------------------------------------------------------

def _tuple_or_none(v):
    """Lists become tuples; anything else is left for the validator to name."""
    return tuple(v) if isinstance(v, list) else v


def save_bundle(bundle: Bundle, path) -> Path:
    """Validate ``bundle`` and write it to directory ``path`` (created if needed)."""
    validate_bundle(bundle)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    arrays = {"test_x": bundle.test_x, "test_y": bundle.test_y.astype(np.int64)}
    layers = []
    for i, layer in enumerate(bundle.layers):
        d = {"name": layer.name, "kind": layer.kind, "in_shape": list(layer.in_shape),
             "out_shape": list(layer.out_shape)}
        if layer.kind in ("conv", "maxpool"):
            d.update(kernel=list(layer.kernel), stride=list(layer.stride), padding=list(layer.padding))
        if layer.input is not None:
            d["input"] = int(layer.input)
        if layer.kind == "add":
            d.update(inputs=[int(v) for v in layer.inputs], relu=True,
                     M=[int(v) for v in layer.add_m], S=int(layer.add_s))
        if layer.is_compute:
            d["relu"] = bool(layer.relu)
            key = f"layers.{i}.codes"
            arrays[key] = layer.codes.astype(np.uint8 if bundle.nbits <= 8 else np.uint16)
            d["codes"] = key
            d["tables"] = {}
            for ts in TABLE_SETS:
                t = layer.tables[ts]
                keys = {}
                for f in ("M", "B", "S"):
                    keys[f] = f"layers.{i}.tables.{ts}.{f}"
                    arrays[keys[f]] = np.asarray(getattr(t, f), np.int64)
                d["tables"][ts] = keys
        layers.append(d)
    manifest = {
        "format": FORMAT, "version": VERSION,
        "nbits": int(bundle.nbits), "abits": int(bundle.abits), "mbits": int(bundle.mbits),
        "bbits": BBITS, "obits": OBITS, "sbits": SBITS,
        "input_shape": list(bundle.input_shape), "num_classes": int(bundle.num_classes),
        "input_scale": float(bundle.input_scale), "dataset": bundle.dataset,
        "layers": layers, "test": {"x": "test_x", "y": "test_y", "count": int(bundle.test_x.shape[0])},
        "meta": bundle.meta,
    }
    # The manifest records the arrays' hash and is written last: an interrupt leaves either no
    # manifest (refused: missing) or a manifest whose hash names its own arrays.npz.
    tmp = path / (ARRAYS + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    manifest["arrays_sha256"] = _sha256(tmp)
    (path / MANIFEST).unlink(missing_ok=True)
    tmp.replace(path / ARRAYS)
    mtmp = path / (MANIFEST + ".tmp")
    mtmp.write_text(json.dumps(manifest, indent=1) + "\n")
    mtmp.replace(path / MANIFEST)
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _array_names(man: dict) -> dict:
    """``{array name: manifest field}`` for the arrays the manifest mentions (codes, tables,
    test), whatever else it holds: only these are read from ``arrays.npz``."""
    names = {}

    def add(where, name):
        if isinstance(name, str):
            names.setdefault(name, where)
    test = man.get("test")
    if isinstance(test, dict):
        add("test.x", test.get("x"))
        add("test.y", test.get("y"))
    for i, d in enumerate(man.get("layers") if isinstance(man.get("layers"), list) else []):
        if not isinstance(d, dict):
            continue
        add(f"layers[{i}].codes", d.get("codes"))
        tables = d.get("tables")
        for ts, keys in tables.items() if isinstance(tables, dict) else []:
            for f in ("M", "B", "S"):
                add(f"layers[{i}].tables.{ts}.{f}", keys.get(f) if isinstance(keys, dict) else None)
    return names


def _read_manifest(path: Path) -> dict:
    """``manifest.json`` of the bundle folder ``path``: a JSON object of this format and version."""
    if not path.is_dir():
        raise BundleError(f"bundle: {path}: not a bundle directory")
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"bundle: {MANIFEST}: missing in {path}")
    if mpath.stat().st_size > MAX_MANIFEST:
        _fail(MANIFEST, f"{mpath.stat().st_size} bytes, more than {MAX_MANIFEST}")
    try:
        man = json.loads(mpath.read_text())
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise BundleError(f"bundle: {MANIFEST}: not valid JSON ({e})") from None
    if not isinstance(man, dict):
        _fail(MANIFEST, "must hold a JSON object")
    if man.get("format") != FORMAT:
        _fail("format", f"{man.get('format')!r} != {FORMAT!r}")
    if man.get("version") != VERSION:
        _fail("version", f"{man.get('version')!r} is not supported (this reader knows {VERSION})")
    for name, want in (("bbits", BBITS), ("obits", OBITS), ("sbits", SBITS)):
        if man.get(name, want) != want:
            _fail(name, f"{man.get(name)!r} != {want} (fixed by version {VERSION})")
    return man


def _read_named_arrays(apath: Path, man: dict, max_bytes: int):
    """The arrays the manifest names, read from ``arrays.npz``; returns ``arr(where, key)``,
    which names the manifest field of a missing or misnamed array."""
    if not apath.is_file():
        raise BundleError(f"bundle: {ARRAYS}: missing in {apath.parent}")
    names = _array_names(man)
    try:
        arrays = read_arrays(apath, names, max_bytes=max_bytes)
    except NpzError as e:
        if not e.field:
            _fail(ARRAYS, e.msg)
        _fail(names[e.field], f"{e.msg} ({ARRAYS} member {e.field!r})")

    def arr(where, key):
        if not isinstance(key, str):
            _fail(where, f"must name an array, not {key!r}")
        if key not in arrays:
            _fail(where, f"array {key!r} missing from {ARRAYS}")
        return arrays[key]
    return arr


def _require(where: str, d: dict, fields) -> None:
    for req in fields:
        if req not in d:
            _fail(f"{where}.{req}" if where else req, "missing")


def _layer_from_manifest(w: str, d, arr) -> LayerSpec:
    """One manifest layer entry as a (not yet validated) :class:`LayerSpec`."""
    if not isinstance(d, dict):
        _fail(w, "must be an object")
    _require(w, d, ("name", "kind", "in_shape", "out_shape"))
    kind = d["kind"]
    spec = LayerSpec(name=d["name"], kind=kind, in_shape=_tuple_or_none(d["in_shape"]),
                     out_shape=_tuple_or_none(d["out_shape"]))
    if kind in ("conv", "maxpool"):
        _require(w, d, ("kernel", "stride", "padding"))
        spec.kernel, spec.stride, spec.padding = (_tuple_or_none(d["kernel"]),
                                                  _tuple_or_none(d["stride"]),
                                                  _tuple_or_none(d["padding"]))
    if "input" in d:
        spec.input = d["input"]
    if kind == "add":
        _require(w, d, ("inputs", "relu", "M", "S"))
        spec.inputs = _tuple_or_none(d["inputs"])
        spec.relu, spec.add_m, spec.add_s = d["relu"], _tuple_or_none(d["M"]), d["S"]
    elif "inputs" in d:
        _fail(f"{w}.inputs", f"only an add layer has inputs (this is a {kind})")
    if kind in ("conv", "linear"):
        _require(w, d, ("relu", "codes", "tables"))
        spec.relu = d["relu"]
        spec.codes = arr(f"{w}.codes", d["codes"])
        if not isinstance(d["tables"], dict):
            _fail(f"{w}.tables", "must be an object")
        for ts, keys in d["tables"].items():
            if not isinstance(keys, dict):
                _fail(f"{w}.tables.{ts}", "must be an object")
            parts = {}
            for f in ("M", "B", "S"):
                if f not in keys:
                    _fail(f"{w}.tables.{ts}.{f}", "missing")
                parts[f] = arr(f"{w}.tables.{ts}.{f}", keys[f])
            spec.tables[ts] = Tables(**parts)
    return spec


def _check_arrays_hash(man: dict, apath: Path, max_bytes: int) -> None:
    """``arrays.npz`` is the one the manifest was written with (bundles written before the hash
    existed have none)."""
    if "arrays_sha256" not in man:
        return
    want = man["arrays_sha256"]
    if not isinstance(want, str) or len(want) != 64:
        _fail("arrays_sha256", f"must be 64 hex digits, not {want!r}")
    if apath.stat().st_size > 4 * max_bytes + (1 << 20):
        _fail(ARRAYS, f"{apath.stat().st_size} bytes on disk, beyond the cap")
    if _sha256(apath) != want.lower():
        _fail(ARRAYS, f"does not match {MANIFEST} (arrays_sha256 differs): an interrupted or"
                      f" mixed export; export the bundle again")


def load_bundle(path, *, max_bytes: int = MAX_BYTES) -> Bundle:
    """Read and validate the bundle in directory ``path``.

    Only the arrays the manifest names are read, each checked from its npy header (integer dtype,
    size agreeing with the zip entry) before any memory is allocated, and all of them together
    at most ``max_bytes`` (default 256 MiB); every damaged file is one :class:`BundleError`."""
    path = Path(path)
    man = _read_manifest(path)
    apath = path / ARRAYS
    arr = _read_named_arrays(apath, man, max_bytes)
    _require("", man, ("nbits", "abits", "mbits", "input_shape", "num_classes", "input_scale",
                       "dataset", "layers", "test"))
    if not isinstance(man["layers"], list):
        _fail("layers", "must be a list")
    layers = [_layer_from_manifest(f"layers[{i}]", d, arr) for i, d in enumerate(man["layers"])]
    test = man["test"]
    if not isinstance(test, dict):
        _fail("test", "must be an object")
    tx, ty = arr("test.x", test.get("x")), arr("test.y", test.get("y"))
    if tx.ndim != 4:
        _fail("test_x", f"must be 4-d (n, C, H, W), not shape {tuple(tx.shape)}")
    if "count" in test and test["count"] != tx.shape[0]:
        _fail("test.count", f"{test['count']!r} != {tx.shape[0]} images in test_x")
    b = Bundle(nbits=man["nbits"], abits=man["abits"], mbits=man["mbits"],
               input_shape=_tuple_or_none(man["input_shape"]),
               num_classes=man["num_classes"], input_scale=man["input_scale"],
               dataset=man["dataset"], layers=layers, test_x=tx, test_y=ty,
               meta=man.get("meta", {}))
    validate_bundle(b)
    _check_arrays_hash(man, apath, max_bytes)
    return b
