"""Inferences per second per LUT: the bit-serial engine at k planes against the int8 baseline.

Cycles are measured in the Amaranth simulator (one image, streamed-layers driver, loads included);
Fmax and LUT4 counts are the measured builds of ``docs/boards.md`` (``BUILDS``). Every run is also
checked value by value against the golden model at its k.

    python -m progressivenn.sim.throughput BUNDLE_DIR [--board ulx3s-85f] [--image 0]

Other array sizes: pass the measured builds as ``pnn build --json`` output (or a build folder's
``report.json``) with ``--report FILE`` (repeatable); the simulated engine configuration is the
reports' ``config`` (one for all), and the designs without a placed-and-routed report are left out:

    python -m progressivenn.sim.throughput BUNDLE_DIR --report engine.json --report lut.json
"""

from __future__ import annotations

import argparse

import numpy as np

from ..hw.isa import EngineConfig
from .compare import compare_outputs, golden_outputs
from .driver import BASELINE_WBITS, infer
from .transport import AmaranthTransport

__all__ = ["BUILDS", "load_reports", "throughput_per_lut", "format_table", "main"]

#: measured builds, docs/boards.md "Measured": board -> design -> (LUT4, post-route Fmax in MHz)
BUILDS = {
    "ulx3s-85f": {"engine": (12296, 51.93), "baseline-int8-lut": (43248, 31.27)},
}


def load_reports(paths) -> tuple[str, EngineConfig, dict]:
    """Measured builds from ``pnn build --json`` outputs / ``report.json`` files (a report or a
    list of them each): ``(board, cfg, {design: (LUT4, post-route Fmax in MHz)})``.

    Every report must carry the same engine configuration (``config``: what is simulated); the
    boards may differ (a baseline too big for the board's part, built on a larger die with the
    same configuration); ``board`` is the engine report's, else the first. Reports that did not
    place and route (``fits`` false: no Fmax) are left out."""
    import json
    from pathlib import Path

    reps = []
    for path in paths:
        data = json.loads(Path(path).read_text())
        reps += data if isinstance(data, list) else [data]
    fields = EngineConfig.__dataclass_fields__
    cfgs = {tuple(sorted((k, v) for k, v in r["config"].items() if k in fields)) for r in reps}
    if len(cfgs) != 1:
        raise ValueError(f"reports are for more than one engine configuration: "
                         f"{sorted({(r['board'], r['rows'], r['cols']) for r in reps})}")
    cfg = EngineConfig(**dict(next(iter(cfgs))))
    board = next((r["board"] for r in reps if r["design"] == "engine"), reps[0]["board"])
    builds = {}
    for r in reps:
        if not r.get("fits") or r.get("fmax_mhz") is None:
            continue          # synthesized but not placed and routed: no Fmax
        builds[r["design"]] = (r["luts"], r["fmax_mhz"])
    return board, cfg, builds


def _run(bundle, cfg: EngineConfig, image, k: int, baseline: bool, tile_positions):
    comp = None
    if baseline:
        from ..hw.baseline import MACArray
        comp = MACArray
    tr = AmaranthTransport(cfg, component=comp)
    res = tr.run(infer(bundle, cfg, image, k=k, baseline=baseline, tile_positions=tile_positions))
    exp = golden_outputs(bundle, np.asarray(image)[None], k)
    cmp = compare_outputs(bundle, res.outputs, [e[0] for e in exp], k=k, image=0)
    return res, tr.cycles, cmp


def throughput_per_lut(bundle, board: str = "ulx3s-85f", image: int = 0,
                       ks=(1, 2, 4, 8), baseline_ks=None, tile_positions="auto",
                       baseline_tile_positions=("auto", None), builds: dict | None = None,
                       cfg: EngineConfig | None = None) -> list[dict]:
    """One row per run: design, k, activation tiling, engine counter ``total`` (engine only),
    transport cycles, the array's ideal cycles, golden mismatches, inferences/s = Fmax / cycles and
    that per LUT4.

    ``tile_positions`` (engine) and each of ``baseline_tile_positions`` go to the driver
    (:func:`~.driver.layer_exchange`). The baseline's RTL does not overlap activation loads with
    compute (its loads wait while it computes), so it is fastest with ``None`` (one tile per layer);
    the engine is faster with ``"auto"`` (ping-pong).

    The baseline holds int8 weights, i.e. the golden k-plane weights for k <= 7 only
    (``driver.baseline_weight_words``); its cycles do not depend on k. ``baseline_ks`` defaults to
    ``(min(N, 7),)``. ``cycles`` (what the rates use) is the engine's own ``total`` counter for
    the engine and the simulated clock cycles of the whole exchange for the baseline, which has no
    counters; ``transport_cycles`` gives the latter for both.

    ``builds`` (``{design: (LUT4, Fmax MHz)}``, e.g. from :func:`load_reports`) replaces
    ``BUILDS[board]``; ``cfg`` (default: the board's) is the simulated engine configuration,
    the one that was built. Designs without figures are skipped.
    """
    from ..hw.boards import BOARDS
    from .driver import plan_layers

    if cfg is None:
        cfg = BOARDS[board].cfg
    if builds is None:
        builds = BUILDS[board]
    x = bundle.test_x[image]
    if baseline_ks is None:
        baseline_ks = (min(bundle.nbits, BASELINE_WBITS - 1),)
    plans = plan_layers(bundle, cfg)
    rows = []
    for design, kk, bl, tp in ([("engine", k, False, tile_positions) for k in ks]
                               + [("baseline-int8-lut", k, True, t) for t in baseline_tile_positions
                                  for k in baseline_ks]):
        if design not in builds:
            continue
        luts, fmax = builds[design]
        res, tcycles, cmp = _run(bundle, cfg, x, kk, bl, tp)
        cycles = res.counters["total"] if not bl else tcycles
        ips = fmax * 1e6 / cycles
        ideal = sum(p.ideal_cycles(1 if bl else kk) for p in plans)
        rows.append({"design": design, "k": kk, "tiles": tp, "ideal_cycles": ideal,
                     "counter_total": res.counters.get("total"),
                     "busy": res.counters.get("busy"), "transport_cycles": tcycles,
                     "cycles": cycles, "compared": cmp.compared, "mismatches": cmp.mismatches,
                     "pred": res.pred, "luts": luts, "fmax_mhz": fmax,
                     "inf_per_s": ips, "inf_per_s_per_lut": ips / luts})
    return rows


def format_table(rows: list[dict]) -> str:
    out = ["| design | k | tiles | cycles | engine `total` | sim cycles | array cycles (ideal) |"
           " vs golden | LUT4 | Fmax (MHz) | inferences/s | inferences/s per LUT4 |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        tot = r["counter_total"] if r["counter_total"] is not None else "- (no counters)"
        gold = (f"{r['compared']} values exact" if not r["mismatches"]
                else f"{r['mismatches']}/{r['compared']} differ")
        out.append(f"| {r['design']} | {r['k']} | {r['tiles']} | {r['cycles']} | {tot}"
                   f" | {r['transport_cycles']} | {r['ideal_cycles']} | {gold} | {r['luts']}"
                   f" | {r['fmax_mhz']} | {r['inf_per_s']:.0f}"
                   f" | {r['inf_per_s_per_lut']:.3f} |")
    return "\n".join(out)


def main(argv=None) -> int:
    from ..model.bundle import load_bundle

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--board", default="ulx3s-85f", choices=sorted(BUILDS),
                    help="the built-in figures (BUILDS); ignored with --report")
    ap.add_argument("--image", type=int, default=0)
    ap.add_argument("--report", action="append", default=[], metavar="FILE",
                    help="a `pnn build --json` output or report.json (repeatable): measured LUT4"
                         " and Fmax per design, with its board and R x C")
    a = ap.parse_args(argv)
    if a.report:
        board, cfg, builds = load_reports(a.report)
        if not builds:
            ap.error("no report with a place-and-route result (fits: true)")
        rows_out = throughput_per_lut(load_bundle(a.bundle), board, a.image, builds=builds,
                                      cfg=cfg)
    else:
        rows_out = throughput_per_lut(load_bundle(a.bundle), a.board, a.image)
    print(format_table(rows_out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
