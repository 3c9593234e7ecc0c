"""Inferences per second per LUT: the bit-serial engine at k planes against the int8 baseline.

Cycles are measured in the Amaranth simulator (one image, the streamed-layers driver: every
layer's weights, tables and activations loaded per image, as on a board); every run is also checked
value by value against the golden model at its k. Area and Fmax come from measured builds: the
``pnn build --json`` outputs (or build folders' ``report.json``) given with ``--report``, or the
built-in figures of ``docs/boards.md`` (``BUILDS``).

    python -m progressivenn.sim.throughput BUNDLE_DIR [--board ulx3s-85f] [--image 0] [--json]
    python -m progressivenn.sim.throughput BUNDLE_DIR --report engine.json --report lut.json ...

Area is counted two ways: **logic cells** as placed by nextpnr (``TRELLIS_COMB`` on ECP5, which
counts every LUT4 including the two in each carry cell; ``ICESTORM_LC`` on iCE40, a LUT4 with its
carry and flip-flop) -- the figure the rates are "per LUT" of -- and Yosys' ``LUT4`` cells (which
leave out carry-chain LUTs, so they flatter designs built from adders).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np

from ..hw.isa import EngineConfig
from .compare import compare_outputs, golden_outputs
from .driver import BASELINE_WBITS, infer
from .transport import AmaranthTransport

__all__ = ["BUILDS", "load_reports", "throughput_per_lut", "format_table", "resident_rates",
           "format_resident_rates", "main"]

#: measured builds (docs/boards.md), board -> design -> figures; ``logic_cells`` are nextpnr's.
#: Each names its ``source``: the commit whose RTL was built and the command (``pnn build ...
#: --json``, whose output ``--report`` reads directly). Figures given with ``--report`` carry the
#: report's path instead.
BUILDS = {
    "ulx3s-85f": {
        "engine": {"luts": 4815, "logic_cells": 8595, "fmax_mhz": 104.89, "dsps": 5,
                   "source": {"commit": "02a6d40",
                              "command": "pnn build --board ulx3s-85f --mode streamed --json"}},
        "engine-lut": {"luts": 7070, "logic_cells": 10966, "fmax_mhz": 72.73, "dsps": 0,
                       "source": {"commit": "349026e with the engine files of 1aa5be9",
                                  "command": "pnn build --board ulx3s-85f --mode streamed"
                                             " --dsp off --json"}},
        # the MAC array in LUTs; its 8 post-processing lanes on 16 MULT18X18D since 6e3d636
        "baseline-int8-lut": {"luts": 39238, "logic_cells": 44658, "fmax_mhz": 45.34, "dsps": 16,
                              "source": {"commit": "cb70727",
                                         "command": "pnn build --board ulx3s-85f --baseline"
                                                    " --json"}},
    },
}

#: engine designs (the bit-serial RTL; "-lut": built without DSP blocks) and baseline designs
ENGINE_DESIGNS = ("engine", "engine-lut")
BASELINE_DESIGNS = ("baseline-int8-lut", "baseline-int8-dsp")
#: the pipelined int8 array (``MACArray(cfg, pipelined=True)``; ``build_board(...,
#: int8_pipelined=True)``): its own RTL, one cycle more latency per RUN
PIPELINED_DESIGNS = ("baseline-int8-pipelined-lut", "baseline-int8-pipelined-dsp")


def _cfg_key(cfg: dict) -> tuple:
    fields = EngineConfig.__dataclass_fields__
    return tuple(sorted((k, v) for k, v in cfg.items() if k in fields and k != "pp_lanes"))


def load_reports(paths) -> tuple[str, EngineConfig, dict]:
    """Measured builds from ``pnn build --json`` outputs / ``report.json`` files (a report or a
    list of them each): ``(board, cfg, {design: {"luts", "logic_cells", "fmax_mhz", "dsps"}})``.

    Every report must be of the same engine configuration (``config``; the baseline's, which
    always has one post-processing lane per row, may differ from the engine's in ``pp_lanes``
    only); the boards may differ (a baseline too big for the board's part, built on a larger die
    with the same configuration). ``cfg`` is the engine report's (what is simulated) and ``board``
    its board. Reports that did not place and route (``fits`` false: no Fmax) are left out."""
    from pathlib import Path

    reps = []
    for path in paths:
        data = json.loads(Path(path).read_text())
        reps += [dict(r, _path=str(path)) for r in (data if isinstance(data, list) else [data])]
    if len({_cfg_key(r["config"]) for r in reps}) != 1:
        raise ValueError(f"reports are for more than one engine configuration: "
                         f"{sorted({(r['board'], r['rows'], r['cols']) for r in reps})}")
    eng = next((r for r in reps if r["design"] in ENGINE_DESIGNS), reps[0])
    fields = EngineConfig.__dataclass_fields__
    cfg = EngineConfig(**{k: v for k, v in eng["config"].items() if k in fields})
    builds = {}
    for r in reps:
        if not r.get("fits") or r.get("fmax_mhz") is None:
            continue          # synthesized but not placed and routed: no Fmax
        builds[r["design"]] = {"luts": r["luts"], "logic_cells": r["logic_cells"],
                               "fmax_mhz": r["fmax_mhz"], "dsps": r.get("dsps", 0),
                               "source": {"report": r["_path"]}}
    return eng["board"], cfg, builds


def run_image(bundle, cfg: EngineConfig, image, k: int, baseline: bool, tile_positions,
              pipelined: bool = False):
    """One image through the engine (or, ``baseline``, the int8 MAC array; ``pipelined``, its
    pipelined variant) in the Amaranth simulator with the streamed-layers driver, checked against
    the golden model at ``k``: ``(driver result, clock cycles of the whole exchange,
    comparison)``."""
    comp = None
    if baseline:
        from ..hw.baseline import MACArray
        comp = (lambda c: MACArray(c, pipelined=True)) if pipelined else MACArray
    tr = AmaranthTransport(cfg, component=comp)
    res = tr.run(infer(bundle, cfg, image, k=k, baseline=baseline, tile_positions=tile_positions))
    exp = golden_outputs(bundle, np.asarray(image)[None], k)
    cmp = compare_outputs(bundle, res.outputs, [e[0] for e in exp], k=k, image=0)
    return res, tr.cycles, cmp


def throughput_per_lut(bundle, board: str = "ulx3s-85f", image: int = 0,
                       ks=(1, 2, 4, 8), baseline_ks=None, tile_positions="auto",
                       baseline_tile_positions=("auto", None), builds: dict | None = None,
                       cfg: EngineConfig | None = None) -> list[dict]:
    """One row per (design, k, tiling): the engine counter ``total`` (engine only), transport
    cycles, the array's ideal cycles, golden mismatches, inferences/s = Fmax / cycles, and that per
    logic cell and per Yosys LUT4.

    Each (k, tiling) is simulated once per RTL (engine, baseline) and the row repeated for every
    build of that RTL in ``builds``. ``tile_positions`` (engine) and each of
    ``baseline_tile_positions`` go to the driver (:func:`~.driver.layer_exchange`). Since the
    baseline is the engine with an int8 exec stage it overlaps activation loads with compute as
    the engine does and is fastest with ``"auto"`` (ping-pong) too; ``None`` (one tile per layer)
    is kept for comparison.

    The baseline holds int8 weights, i.e. the golden k-plane weights for k <= 7 only
    (``driver.baseline_weight_words``); its cycles do not depend on k. ``baseline_ks`` defaults to
    ``(min(N, 7),)``. ``cycles`` (what the rates use) is the design's own ``total`` counter
    (CLEAR_COUNTERS to READ_COUNTERS; the baseline has the engine's counters), or the simulated
    clock cycles of the whole exchange for a design without counters; ``transport_cycles`` gives
    the latter for both.

    ``builds`` (``{design: {"luts", "logic_cells", "fmax_mhz"}}``, e.g. from
    :func:`load_reports`) replaces ``BUILDS[board]``; ``cfg`` (default: the board's) is the
    simulated engine configuration, the one that was built. Designs without figures are skipped.
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
    runs = []
    eng = [d for d in ENGINE_DESIGNS if d in builds]
    base = [d for d in BASELINE_DESIGNS if d in builds]
    piped = [d for d in PIPELINED_DESIGNS if d in builds]
    if eng:
        runs += [(eng, k, False, tile_positions, False) for k in ks]
    for designs, pl in ((base, False), (piped, True)):
        if designs:
            runs += [(designs, k, True, t, pl) for t in baseline_tile_positions
                     for k in baseline_ks]
    rows = []
    for designs, kk, bl, tp, pl in runs:
        res, tcycles, cmp = run_image(bundle, cfg, x, kk, bl, tp, pl)
        cycles = res.counters.get("total") or tcycles
        plans = plan_layers(bundle, cfg.full_rate_pp() if bl else cfg)
        ideal = sum(p.ideal_cycles(1 if bl else kk) for p in plans)
        for design in designs:
            b = builds[design]
            ips = b["fmax_mhz"] * 1e6 / cycles
            rows.append({"design": design, "k": kk, "tiles": tp, "ideal_cycles": ideal,
                         "counter_total": res.counters.get("total"),
                         "busy": res.counters.get("busy"), "stall": res.counters.get("stall"),
                         "transport_cycles": tcycles, "cycles": cycles,
                         "compared": cmp.compared, "mismatches": cmp.mismatches,
                         "pred": res.pred, "luts": b["luts"], "logic_cells": b["logic_cells"],
                         "dsps": b.get("dsps"), "fmax_mhz": b["fmax_mhz"], "inf_per_s": ips,
                         "inf_per_s_per_lc": ips / b["logic_cells"],
                         "inf_per_s_per_lut4": ips / b["luts"], "source": b.get("source")})
    return rows


def resident_rates(prog, *, clk_hz: float, baud: int, ks=None) -> list[dict]:
    """Images/s of a resident-mode board per k, from the cycle and link models (nothing runs).

    ``compute_cycles`` = the program's busy cycles (``P*k*nchunks*ngroups`` per layer) plus the
    engine's fixed ``layer_overhead`` per layer (descriptor fetch and pipeline drain), from the
    RUN to the SUMMARY; the image beats are written as the image's bytes arrive, under the link
    time. Link bytes per image are the resident bridge's frames and messages
    (:func:`~.resident_link.link_cost`: down = image + RUN frames, up = SUMMARY + LOGITS messages +
    credits; COUNTER messages off), 10 bits a byte at ``baud`` each way (the UART is full duplex).

    Per k: ``serial_per_s`` = one image at a time, as the host's ``ResidentLink.infer`` does
    (down, compute, up in turn; USB latency not counted); ``bound_per_s`` = the slowest of the
    three stages alone (what a host keeping the next image in flight could reach), with
    ``bound`` naming it ("link down", "link up" or "compute")."""
    from ..hw.resident import ResidentEngine
    from .resident_link import link_cost

    eng = ResidentEngine(prog.cfg)
    eng._MustUse__silence = True
    overhead = eng.layer_overhead * len(prog.layers)
    cost = link_cost(prog)
    t_down = cost["down"] * 10 / baud
    t_up = (cost["up"] + cost["credits"]) * 10 / baud
    rows = []
    for k in ks or range(1, prog.cfg.nbits + 1):
        cycles = sum(pl.busy(k) for pl in prog.layers) + overhead
        t_c = cycles / clk_hz
        stages = {"link down": t_down, "link up": t_up, "compute": t_c}
        bound = max(stages, key=stages.get)
        rows.append({"k": k, "compute_cycles": cycles, "compute_per_s": 1 / t_c,
                     "down_bytes": cost["down"], "up_bytes": round(cost["up"] + cost["credits"], 2),
                     "link_per_s": 1 / max(t_down, t_up),
                     "serial_per_s": 1 / (t_down + t_c + t_up),
                     "bound_per_s": 1 / stages[bound], "bound": bound})
    return rows


def format_resident_rates(rows: list[dict]) -> str:
    out = ["| k | compute cycles | compute images/s | link images/s | one at a time | bound |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['k']} | {r['compute_cycles']} | {r['compute_per_s']:,.0f}"
                   f" | {r['link_per_s']:,.0f} | {r['serial_per_s']:,.0f} | {r['bound']} |")
    return "\n".join(out)


def format_table(rows: list[dict]) -> str:
    out = ["| design | k | tiles | cycles | stall | array cycles (ideal) | vs golden | logic cells"
           " | LUT4 | DSP | Fmax (MHz) | inferences/s | per logic cell | per LUT4 |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gold = (f"{r['compared']} values exact" if not r["mismatches"]
                else f"{r['mismatches']}/{r['compared']} differ")
        stall = "-" if r["stall"] is None else r["stall"]
        out.append(f"| {r['design']} | {r['k']} | {r['tiles']} | {r['cycles']} | {stall}"
                   f" | {r['ideal_cycles']} | {gold} | {r['logic_cells']} | {r['luts']}"
                   f" | {r['dsps']} | {r['fmax_mhz']} | {r['inf_per_s']:.0f}"
                   f" | {r['inf_per_s_per_lc']:.3f} | {r['inf_per_s_per_lut4']:.3f} |")
    sources = {r["design"]: r.get("source") for r in rows if r.get("source")}
    out += [""] + [f"{d}: " + ", ".join(f"{k} {v}" for k, v in src.items())
                   for d, src in sources.items()]
    return "\n".join(out)


def main(argv=None) -> int:
    from ..model.bundle import BundleError, load_bundle

    ap = argparse.ArgumentParser(prog="python -m progressivenn.sim.throughput",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("bundle", help="bundle folder (pnn export), e.g. demo/bundle")
    ap.add_argument("--board", default="ulx3s-85f", choices=sorted(BUILDS),
                    help="the built-in figures (BUILDS); ignored with --report")
    ap.add_argument("--image", type=int, default=0, help="test image index (default 0)")
    ap.add_argument("--report", action="append", default=[], metavar="FILE",
                    help="a `pnn build --json` output or report.json (repeatable): measured logic"
                         " cells, LUT4 and Fmax per design, with its board and R x C")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    a = ap.parse_args(argv)
    try:
        bundle = load_bundle(a.bundle)
        if a.report:
            board, cfg, builds = load_reports(a.report)
            if not builds:
                ap.error("no report with a place-and-route result (fits: true)")
            rows_out = throughput_per_lut(bundle, board, a.image, builds=builds, cfg=cfg)
        else:
            rows_out = throughput_per_lut(bundle, a.board, a.image)
    except (BundleError, ValueError, FileNotFoundError) as e:
        ap.exit(2, f"{ap.prog}: error: {e}\n")
    print(json.dumps(rows_out, indent=2) if a.json else format_table(rows_out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
