"""A text progress bar for long work (``pnn bench`` per training and simulator run, ...).

    with Progress(12, "bench", enabled=not args.json) as bar:
        for job in jobs:
            bar.step(f"training {job}")       # starts the next of the 12 steps
            ...
            bar.log("a line that must not be overwritten")

The bar is one line on stderr, redrawn in place::

    [bench]  3/12 |######------------------|  25%  1m23s, ~4m10s left  training digits k8 seed 1

It is drawn only when the stream is a terminal and ``enabled`` (callers pass ``not --json`` and
``not --quiet``); otherwise the object does nothing, so output redirected to a file or parsed as
JSON never holds it. ``log`` prints a line above the bar (or just the line when there is no bar).
Standard library only.
"""

from __future__ import annotations

import sys
import time

__all__ = ["Progress", "format_seconds"]


def format_seconds(s: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    s = int(round(max(s, 0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """Progress over ``total`` steps, labelled ``label`` (module docstring)."""

    WIDTH = 24

    def __init__(self, total: int, label: str, *, enabled: bool = True, stream=None):
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise ValueError(f"Progress total must be a non-negative integer, not {total!r}")
        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.drawn = bool(enabled) and callable(isatty) and isatty()
        self.total, self.label = total, label
        self.done = 0            # steps finished (the current one is done + 1)
        self.what = ""
        self.t0 = time.monotonic()
        self._shown = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def line(self) -> str:
        """The bar's text now (also when it is not drawn)."""
        total = max(self.total, self.done, 1)
        frac = self.done / total
        fill = int(round(frac * self.WIDTH))
        el = time.monotonic() - self.t0
        eta = f", ~{format_seconds(el / self.done * (total - self.done))} left" \
            if 0 < self.done < total else ""
        return (f"[{self.label}] {self.done:>{len(str(total))}}/{total} "
                f"|{'#' * fill}{'-' * (self.WIDTH - fill)}| {100 * frac:3.0f}%  "
                f"{format_seconds(el)}{eta}  {self.what}").rstrip()

    def _draw(self) -> None:
        if self.drawn:
            self.stream.write("\r\x1b[2K" + self.line())
            self.stream.flush()
            self._shown = True

    def _clear(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[2K")
            self._shown = False

    def step(self, what: str = "") -> None:
        """The previous step is finished; the next one (``what``) starts."""
        if self.what:
            self.done += 1
        self.what = what
        self._draw()

    def add(self, steps: int) -> None:
        """``steps`` more steps than planned (work found on the way)."""
        self.total += steps
        self._draw()

    def log(self, msg: str) -> None:
        """Print ``msg`` as a line of its own above the bar (used for log lines that stay)."""
        self._clear()
        print(msg, file=self.stream, flush=True)
        self._draw()

    def close(self) -> None:
        """All steps finished: the full bar stays on its line."""
        if self.what:
            self.done += 1
            self.what = ""
        if self.drawn:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = self._shown = False
