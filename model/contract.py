"""The numeric contract's bounds and checks, defined once (``docs/bundle.md``, ``docs/engine.md``).

numpy only: the folding (``fold.py``), the bundle validation (``bundle.py``), the host driver's fit
check (``sim/driver.py``) and the tests all import these, so the rules cannot drift apart.

The arithmetic they bound (all integers)::

    acc_k = sum_i q_k[o,i] * x[i]          |acc_k| <= (2^k - 1) * I * (2^A - 1)     (acc_bound)
    z     = acc_k * M + B                  |z| <= acc_bound * max|M| + max|B|        (z_bound)
    y     = (z + 2^(S-1)) >> S             (round half up; S = 0: y = z)            (y_range)

``fits`` holds when z (plus the rounding constant) stays below 2^62, so int64 host code never
wraps, and, given ``obits``, when every y fits a signed ``obits``-bit integer (the logits).
"""

from __future__ import annotations

import numpy as np

__all__ = ["Z_BITS", "acc_bound", "z_bound", "round_half", "y_range", "fit_problem", "fits",
           "check_int", "check_k"]

#: |z| + the rounding constant stays below 2^Z_BITS (int64 arithmetic on the host never wraps)
Z_BITS = 62


def acc_bound(k: int, reduction: int, abits: int) -> int:
    """Largest possible ``|acc_k|`` for a reduction of length I: ``(2^k-1) * I * (2^A-1)``."""
    return ((1 << int(k)) - 1) * int(reduction) * ((1 << int(abits)) - 1)


def z_bound(M, B, acc_max: int) -> int:
    """Largest ``|acc*M + B|`` over ``|acc| <= acc_max`` and the rows of ``M``, ``B``."""
    m = int(np.abs(np.asarray(M, dtype=np.int64)).max(initial=0))
    b = int(np.abs(np.asarray(B, dtype=np.int64)).max(initial=0))
    return int(acc_max) * m + b


def round_half(shift: int) -> int:
    """The rounding constant of ``(z + 2^(S-1)) >> S``: ``2^(S-1)``, or 0 for ``S = 0``."""
    return (1 << int(shift)) >> 1


def y_range(zmax: int, shift: int) -> tuple[int, int]:
    """(lowest, highest) ``y = (z + 2^(S-1)) >> S`` over ``|z| <= zmax`` (arithmetic shift)."""
    h = round_half(shift)
    return (-int(zmax) + h) >> int(shift), (int(zmax) + h) >> int(shift)


def fit_problem(M, B, shift: int, *, acc_max: int, obits: int | None = None) -> str | None:
    """Why one (M, B, S) table of one k breaks the contract for accumulators ``|acc| <= acc_max``,
    or None when it fits (see the module doc). The message is meant to follow a field name."""
    zmax = z_bound(M, B, acc_max)
    if zmax + round_half(shift) >= 1 << Z_BITS:
        return f"acc*M + B can reach {zmax}, beyond {Z_BITS} bits"
    if obits is not None:
        lo, hi = y_range(zmax, shift)
        if lo < -(1 << (obits - 1)) or hi > (1 << (obits - 1)) - 1:
            return f"logits can reach {hi}, beyond signed {obits} bits"
    return None


def fits(M, B, shift: int, *, acc_max: int, obits: int | None = None) -> bool:
    """True when :func:`fit_problem` finds nothing."""
    return fit_problem(M, B, shift, acc_max=acc_max, obits=obits) is None


def check_int(name: str, value, lo: int | None = None, hi: int | None = None, *,
              error=ValueError) -> int:
    """``value`` as an int when it is an integer (not a bool) in [lo, hi]; else ``error`` naming
    ``name`` and the bad value."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise error(f"{name} must be an integer, not {value!r}")
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        lo_s = "-inf" if lo is None else lo
        hi_s = "inf" if hi is None else hi
        raise error(f"{name} must be an integer in [{lo_s}, {hi_s}], not {v}")
    return v


def check_k(k, nbits: int) -> int:
    """``k`` as an int when it is an integer number of planes in [1, nbits]; else ValueError."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= nbits:
        raise ValueError(f"k must be an integer in [1, {nbits}] (planes used), not {k!r}")
    return int(k)
