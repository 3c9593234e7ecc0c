"""Old name of :mod:`.sequencer` (the RUN sequencer), kept so that old imports still work."""

from .sequencer import Sequencer  # noqa: F401

__all__ = ["Sequencer"]
