"""Resident-network mode: the whole network (weights, per-k tables, layer program) and its feature
maps live on chip; per image the host sends the image and a request, and gets the class back.
See ``docs/resident.md``."""

from .layout import ResidentConfig, Op, Kind, ResKind
from .engine import ResidentEngine
from .window import WindowGen

__all__ = ["ResidentConfig", "ResidentEngine", "WindowGen", "Op", "Kind", "ResKind"]
