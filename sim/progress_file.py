"""Progress of a cocotb run across the simulator process: the test module appends one line per
finished (image, k) to the file named by ``PNN_PROGRESS_FILE`` (:func:`note`; unset: nothing is
written), and the runner, while the simulator runs, polls that file in a thread
(:class:`ProgressWatcher`) and steps a :class:`progressivenn.progress.Progress` bar once per new
line. One short write per image x k: Python stays off the per-cycle path. Standard library only.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

__all__ = ["ENV", "note", "ProgressWatcher", "sim_steps"]

#: environment variable naming the progress file
ENV = "PNN_PROGRESS_FILE"


def note(what: str) -> None:
    """Append ``what`` as one line to the progress file, if ``PNN_PROGRESS_FILE`` names one."""
    path = os.environ.get(ENV)
    if path:
        with open(path, "a") as f:
            f.write(what.replace("\n", " ") + "\n")


def sim_steps(images: int, bits) -> int:
    """The bar's steps for a run: the build, every image x k, then the reset test and report."""
    return 1 + images * len(bits) + 1


class ProgressWatcher:
    """Polls ``path`` every ``interval`` s while open and calls ``bar.step(line)`` for every new
    complete line (the file may not exist yet); on exit it reads what is left, then stops.
    ``bar=None``: does nothing (and starts no thread). ``env()``: the variables for the simulator
    process (empty without a bar)."""

    def __init__(self, bar, path, interval: float = 0.5):
        self.bar, self.path, self.interval = bar, Path(path), interval
        self._pos, self._rest = 0, ""
        self._stop = threading.Event()
        self._thread = None
        self.lines = 0

    def env(self) -> dict:
        return {ENV: str(self.path)} if self.bar is not None else {}

    def poll(self) -> int:
        """Step the bar for the lines appended since the last poll; return how many."""
        try:
            with open(self.path) as f:
                f.seek(self._pos)
                chunk = f.read()
                self._pos = f.tell()
        except FileNotFoundError:
            return 0
        *done, self._rest = (self._rest + chunk).split("\n")
        for line in done:
            self.bar.step(line)
        self.lines += len(done)
        return len(done)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def __enter__(self):
        if self.bar is not None:
            self.path.unlink(missing_ok=True)
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.poll()
        return False
