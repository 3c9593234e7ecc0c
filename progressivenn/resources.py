"""Where the runtime data lives: the documentation and the constraint files.

In a checkout they are the repository's ``docs/`` and ``constraints/``; in an installed wheel the
same files are package data (``progressivenn/docs``, ``progressivenn/constraints``). Standard library
only."""

from __future__ import annotations

from pathlib import Path

__all__ = ["docs_dir", "constraints_dir", "doc"]

_HERE = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    for cand in (_HERE / name, _HERE.parent / name):       # wheel, then checkout
        if cand.is_dir():
            return cand
    raise FileNotFoundError(f"progressivenn's {name}/ folder is missing from this installation "
                            f"(looked in {_HERE} and {_HERE.parent})")


def docs_dir() -> Path:
    """The folder holding ``engine.md``, ``bundle.md``, ``boards.md``, ... ."""
    return _data_dir("docs")


def constraints_dir() -> Path:
    """The folder holding the board constraint files (``icebreaker.pcf``, ``ulx3s.lpf``)."""
    return _data_dir("constraints")


def doc(name: str) -> Path:
    """The path of one document, e.g. ``doc("engine.md")``."""
    path = docs_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"no document {name!r} in {docs_dir()}")
    return path
