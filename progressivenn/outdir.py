"""Output folders that never lose data: the one helper every folder-writing command uses.

``pnn train``, ``export``, ``verilog``, ``build``, ``asic``, ``bench`` and ``demo`` write a
whole folder.
:func:`output_dir` guards it:

- a target that exists and is not a folder, or is a non-empty folder of another kind (or of no
  kind at all: a user's own files), is refused, naming what it holds;
- a target of the same kind is replaced only with ``force`` (``--force``);
- the folder records its kind and completion in ``.pnn-output.json``
  (``{"kind": ..., "complete": true, "command": ..., "finished": <UTC time>}``); an incomplete
  one (an interrupted in-place run of an older version) is refused by name unless ``force``.

Everything is written into a temporary sibling ``.<name>.tmp-<pid>-*``; at the end the old
folder is moved aside and the new one renamed into place, then the old one deleted. Until then
the previous complete result stays where it was; an interrupt leaves it (or, during the two
renames, the old one under ``.<name>.old-*``) and never a mix of old and new files. When the
target changed meanwhile (another run finished first, without ``force``; or a rename fails) the
new result is kept under ``.<name>.kept-<pid>-*`` and :class:`OutputError` names it. A command
whose report records its own paths writes them with the final folder in place of the temporary
one: :func:`relocate` (a dict), :func:`relocate_files` (JSON files written).

Older versions wrote ``build``, ``demo`` and ``asic`` in place with ``complete: false`` until
done; such a folder left by an interrupt is refused by name until ``--force``.
Folders written before these markers existed are recognised by their files (``KINDS``).
Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

__all__ = ["MARKER", "KINDS", "OutputError", "kind_of", "check_target", "output_dir",
           "write_marker", "relocate", "relocate_files"]

MARKER = ".pnn-output.json"

#: kind -> files (globs) that identify a folder of that kind written without a marker
KINDS = {
    "run": ("config.json", "model.pt"),
    "bundle": ("manifest.json",),
    "verilog": ("*pnn_engine.json",),
    "fpga-build": ("report.json", "top.*"),
    "bench": ("bench.json",),
    "demo": ("report", "bundle"),
}


class OutputError(ValueError):
    """A target folder that would lose data; the message names it and what to do."""


def _marker(path: Path):
    try:
        m = json.loads((path / MARKER).read_text())
        return m if isinstance(m, dict) else None
    except (OSError, ValueError):
        return None


def kind_of(path) -> tuple:
    """``(kind, complete)`` of an existing folder: from its marker, else from its files
    (``(None, True)``: a folder of nobody's kind)."""
    path = Path(path)
    m = _marker(path)
    if m is not None and isinstance(m.get("kind"), str):
        return m["kind"], bool(m.get("complete"))
    for kind, globs in KINDS.items():
        if all(any(path.glob(g)) for g in globs):
            return kind, True
    return None, True


def write_marker(path, kind: str, *, complete: bool, command: str | None = None) -> None:
    """Write ``path/.pnn-output.json`` atomically (temporary file, then rename)."""
    path = Path(path)
    data = {"kind": kind, "complete": complete, "command": command or f"pnn {kind}",
            ("finished" if complete else "started"): time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                   time.gmtime())}
    tmp = path / (MARKER + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path / MARKER)


def check_target(path, kind: str, *, force: bool = False) -> bool:
    """Refuse a target that would lose data; return True when an old folder will be replaced."""
    path = Path(path)
    if not path.exists():
        return False
    if not path.is_dir():
        raise OutputError(f"{path}: exists and is not a folder; choose another output")
    if not any(path.iterdir()):
        return False
    have, complete = kind_of(path)
    if have != kind:
        what = f"a {have} folder" if have else "files that no pnn command wrote"
        raise OutputError(f"{path}: holds {what}, not a {kind}; refusing to write into it"
                          f" (choose an empty or new folder)")
    if not force:
        state = "an incomplete (interrupted)" if not complete else "a"
        raise OutputError(f"{path}: already holds {state} {kind}; pass --force to replace it")
    return True


def relocate(obj, tmp, final):
    """``obj`` (JSON-like: dicts, lists, strings) with every path under the temporary folder
    ``tmp`` (as given or resolved) rewritten to lie under ``final``: what a command that records
    its own files writes into its report while it still works in the temporary folder."""
    final = str(Path(final).resolve())
    olds = sorted({str(Path(tmp)), str(Path(tmp).resolve())}, key=len, reverse=True)

    def fix(v):
        if isinstance(v, str):
            for old in olds:
                if v == old or v.startswith(old + os.sep):
                    return final + v[len(old):]
            return v
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return type(v)(fix(x) for x in v)
        return v
    return fix(obj)


def relocate_files(tmp, final, patterns, *, indent=1) -> list:
    """Rewrite the JSON files under the temporary folder ``tmp`` matching the glob ``patterns``
    (relative to ``tmp``) through :func:`relocate`; files without such paths are left untouched
    (byte for byte). Returns the rewritten files. A file that is not JSON is an error (it was
    just written by the command)."""
    tmp = Path(tmp)
    changed = []
    for pattern in patterns:
        for f in sorted(tmp.glob(pattern)):
            data = json.loads(f.read_text())
            new = relocate(data, tmp, final)
            if new != data:
                f.write_text(json.dumps(new, indent=indent) + "\n")
                changed.append(f)
    return changed


def _keep(tmp: Path, path: Path, why: str) -> OutputError:
    """Keep the finished ``tmp`` under a name of its own; the error names it and ``why``."""
    kept = Path(tempfile.mkdtemp(prefix=f".{path.name}.kept-{os.getpid()}-", dir=path.parent))
    os.replace(tmp, kept / path.name)
    return OutputError(f"{path}: {why}; this run's complete result is kept in {kept / path.name}")


def _swap_into_place(tmp: Path, path: Path, kind: str, force: bool) -> None:
    """Rename the finished ``tmp`` to ``path``, moving a previous result aside first."""
    old = None
    if path.exists():
        try:
            check_target(path, kind, force=force)  # again: it may have appeared meanwhile
        except OutputError as e:
            raise _keep(tmp, path, f"changed while this run worked ({e})") from None
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-{os.getpid()}-", dir=path.parent))
        os.replace(path, old / path.name)
    try:
        os.replace(tmp, path)
    except OSError as e:
        if old is not None and not path.exists():
            os.replace(old / path.name, path)     # put the previous result back
        raise _keep(tmp, path, f"cannot rename the new result into place ({e.strerror})") \
            from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def output_dir(path, kind: str, *, force: bool = False, command: str | None = None):
    """Guard the output folder ``path`` of kind ``kind`` (module docstring); yields the temporary
    folder to write into. On an exception the new files (and the empty parents made for them)
    are removed, the previous result stays, and the exception propagates."""
    path = Path(path)
    check_target(path, kind, force=force)
    made = [p for p in [path.parent, *path.parent.parents] if not p.exists()]   # deepest first
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
    umask = os.umask(0o022)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)      # a folder as mkdir makes it, not mkdtemp's private 0700
    try:
        yield tmp
        write_marker(tmp, kind, complete=True, command=command)
        _swap_into_place(tmp, path, kind, force)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
            for p in made:             # a failed run leaves no empty folders it created
                try:
                    p.rmdir()
                except OSError:
                    break
