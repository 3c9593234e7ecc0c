"""A defensive reader of numpy ``.npz`` files: only the arrays asked for, sizes checked first.

``np.load(...)[key]`` trusts the file: it inflates whatever the zip entry holds and allocates the
shape the ``.npy`` header declares, so a 1.6 MB file can ask for gigabytes, and a damaged entry
escapes as one of a dozen exception types (zip, zlib, npy header, encryption, unknown compression).
:func:`read_arrays` instead

1. reads only the named members (``<name>.npy``) of the zip directory;
2. refuses encrypted entries and compression other than stored/deflated;
3. parses each ``.npy`` header (format 1.0/2.0) and checks the dtype (integer, unsigned integer
   or bool only: no objects, so no pickles), that the header's byte count agrees with the zip
   entry's size, and the total of all declared sizes against ``max_bytes`` -- all before any
   array memory is allocated;
4. reads exactly the declared bytes, so a truncated or corrupt stream is found.

Every failure is one :class:`NpzError` naming the member (``field``) and what is wrong.
numpy only.
"""

from __future__ import annotations

import contextlib
import zipfile
import zlib
from pathlib import Path

import numpy as np

__all__ = ["NpzError", "read_arrays", "MAX_BYTES"]

#: default cap on the bytes of all arrays read from one file (256 MiB)
MAX_BYTES = 256 << 20
_KINDS = "iub"                      # integer, unsigned integer, bool
_CHUNK = 1 << 20


class NpzError(ValueError):
    """A damaged, hostile or oversized ``.npz``; ``field`` names the array ('' for the file)."""

    def __init__(self, field: str, msg: str):
        super().__init__(f"{field}: {msg}" if field else msg)
        self.field = field
        self.msg = msg


def _header(fp, name: str):
    """(shape, fortran_order, dtype) of the ``.npy`` stream ``fp``, read from its header only."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fp)
        else:
            raise NpzError(name, f"npy format version {version} is not supported")
    except NpzError:
        raise
    except (ValueError, SyntaxError, TypeError) as e:   # zlib/zip errors: the caller's _guard
        raise NpzError(name, f"bad npy header ({type(e).__name__}: {_short(e)})") from None
    if not isinstance(dtype, np.dtype) or dtype.kind not in _KINDS or dtype.hasobject:
        raise NpzError(name, f"dtype {dtype} is not an integer type")
    return tuple(shape), bool(fortran), dtype


def _short(e: BaseException) -> str:
    return " ".join(str(e).split())[:160] or type(e).__name__


def _read_exact(fp, n: int, name: str) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = fp.readinto(view[got:got + _CHUNK])
        if not k:
            raise NpzError(name, f"truncated: {got} of {n} data bytes")
        got += k
    if fp.read(1):
        raise NpzError(name, "more data than its header declares")
    return buf


_DAMAGE = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError, RuntimeError,
           KeyError, IndexError, OverflowError, UnicodeDecodeError, OSError)


@contextlib.contextmanager
def _guard(name: str):
    """Any zip/zlib/npy failure inside becomes an NpzError naming ``name``."""
    try:
        yield
    except NpzError:
        raise
    except _DAMAGE as e:
        if isinstance(e, OSError) and e.filename is not None:
            raise                                 # the file system, not the file's content
        what = "damaged" if name else "cannot read"
        raise NpzError(name, f"{what} ({type(e).__name__}: {_short(e)})") from None


def _count(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _plan(z: zipfile.ZipFile, info: zipfile.ZipInfo, name: str):
    """Check one member from the zip directory and its npy header; no array memory yet."""
    if info.flag_bits & 0x1:
        raise NpzError(name, "encrypted zip entry")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise NpzError(name, f"zip compression method {info.compress_type} is not supported"
                             f" (stored or deflated only)")
    with z.open(info) as fp:
        shape, fortran, dtype = _header(fp, name)
        hlen = fp.tell()
    if any(d < 0 for d in shape):
        raise NpzError(name, f"negative dimension in shape {shape}")
    return shape, fortran, dtype, _count(shape) * dtype.itemsize, info.file_size - hlen


def read_arrays(path, names, *, max_bytes: int = MAX_BYTES) -> dict:
    """Read arrays ``names`` from the ``.npz`` at ``path`` (checks: module docstring).

    Returns ``{name: ndarray}``; a name the file lacks is simply absent (the caller says which
    field wanted it). Raises :class:`NpzError`; a missing or unreadable file is an ``OSError``.
    """
    names = list(dict.fromkeys(names))
    out = {}
    with _guard(""):
        with zipfile.ZipFile(Path(path)) as z:
            infos = {i.filename[:-4]: i for i in z.infolist() if i.filename.endswith(".npy")}
            plans, total = [], 0
            for name in names:
                if name in infos:
                    with _guard(name):
                        shape, fortran, dtype, nbytes, held = _plan(z, infos[name], name)
                    total += nbytes
                    if total > max_bytes:
                        raise NpzError(name, f"declares {nbytes} bytes (shape {shape}); the"
                                             f" arrays together exceed the {max_bytes}-byte cap")
                    if held != nbytes:
                        raise NpzError(name, f"zip entry holds {held} data bytes, its header"
                                             f" declares {nbytes} (shape {shape}, {dtype})")
                    plans.append((name, (shape, fortran, dtype, nbytes)))
            for name, (shape, fortran, dtype, nbytes) in plans:
                with _guard(name), z.open(infos[name]) as fp:
                    _header(fp, name)
                    buf = _read_exact(fp, nbytes, name)
                a = np.frombuffer(buf, dtype=dtype, count=_count(shape))
                out[name] = a.reshape(shape, order="F" if fortran else "C")
    return out
