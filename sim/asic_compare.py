"""Area x cycles per inference: the bit-serial engine at k planes against the int8 baseline.

Cycles come from the Amaranth simulator running one of a bundle's test images through the
streamed-layers driver, exactly as :mod:`.throughput` measures them for the FPGA table (every
layer's weights, tables and activations loaded per image; every run checked value by value against
the golden model): the engine's own ``total`` counter, and for the baseline (no counters) the
clock cycles of the whole exchange. The baseline's cycles do not depend on k (it holds int8
weights, so it runs the golden k = min(N, 7) network). Areas come from :func:`hw.asic.synthesize`.
"""

from __future__ import annotations

import numpy as np

from ..hw.isa import EngineConfig
from .driver import BASELINE_WBITS, require_counters
from .throughput import run_image

__all__ = ["area_cycles"]


def area_cycles(bundle, cfg: EngineConfig, engine: dict, baseline: dict, *, ks=(1, 2, 4, 8),
                image: int = 0) -> dict:
    """Engine against baseline for :func:`hw.asic.synthesize` reports ``engine`` and ``baseline``:
    ``{"baseline": {"k", "cycles", "area_x_cycles", ...}, "engine": [{"k", "cycles",
    "area_x_cycles", "ratio", "ratio_logic"}...]}``. ``ratio`` = engine area x cycles / baseline
    area x cycles with ``area_um2`` (logic + memory), ``ratio_logic`` with ``logic_area_um2``
    (memories left out); below 1 the engine costs less silicon-time per inference. Raises
    ``ValueError`` when a run disagrees with the golden model."""
    require_counters(cfg, ("total",), "the ASIC comparison")
    x = np.asarray(bundle.test_x[image])
    kb = min(bundle.nbits, BASELINE_WBITS - 1)
    _, tcycles, cmp = run_image(bundle, cfg, x, kb, True, None)
    if cmp.mismatches:
        raise ValueError(f"baseline run disagrees with the golden model: {cmp.first}")
    ba, bl = baseline["area_um2"], baseline["logic_area_um2"]
    base = {"k": kb, "cycles": tcycles, "area_um2": ba, "logic_area_um2": bl,
            "area_x_cycles": ba * tcycles, "compared": cmp.compared}
    ea, el = engine["area_um2"], engine["logic_area_um2"]
    rows = []
    for k in ks:
        if k > bundle.nbits:
            continue
        res, _, cmp = run_image(bundle, cfg, x, k, False, "auto")
        if cmp.mismatches:
            raise ValueError(f"engine run at k={k} disagrees with the golden model: {cmp.first}")
        cyc = res.counters["total"]
        rows.append({"k": k, "cycles": cyc, "area_x_cycles": ea * cyc,
                     "ratio": round(ea * cyc / (ba * tcycles), 4),
                     "ratio_logic": round(el * cyc / (bl * tcycles), 4),
                     "compared": cmp.compared})
    return {"baseline": base, "engine": rows, "image": image}
