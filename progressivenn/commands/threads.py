"""The ``--threads`` option (torch's CPU threads) declared and applied once for the commands that
run torch (``pnn train``, ``retrain-bn``, ``eval``, ``bench``). Not a subcommand."""

from __future__ import annotations

HELP = ("torch CPU threads (default 1: these small nets gain nothing from more and "
        "oversubscribed cores slow torch down badly; 0: torch's default)")


def add_threads_argument(p, help: str = HELP) -> None:
    """Add ``--threads`` (default 1) to parser ``p``."""
    p.add_argument("--threads", type=int, default=1, help=help)


def set_threads(threads: int) -> None:
    """Refuse a negative ``--threads`` (one-line ValueError); give torch ``threads`` CPU threads
    (0: leave torch's default)."""
    if threads < 0:
        raise ValueError(f"--threads must be >= 0, not {threads}")
    if threads:
        import torch
        torch.set_num_threads(threads)
