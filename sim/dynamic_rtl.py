"""``pnn dynamic --rtl``: the chosen operating points (and fixed k) on the RTL, against the golden
policy on the same frames.

- **resident** (the bundle fits the resident engine): the policy runs *on chip*
  (``hw/resident/policy.py``) in the Amaranth simulation or on its generated Verilog under cocotb
  (Verilator, Icarus: ``sim/resident_policy_cocotb.py``) (:mod:`.resident_policy`); every frame's
  k path and prediction are compared (``decisions_differ``), its final logits and its per-layer
  busy counters too. With a continuation memory (``ResidentConfig.accdepth``, when the first
  convolution's accumulators fit) an escalation continues the first layer and recomputes the
  later ones (``docs/dynamic.md``'s cost model); without, it recomputes every layer.
- **streamed**: the host runs the policy and drives the streamed engine's generated Verilog under
  cocotb (``sim/cocotb_dynamic.py``); an escalation continues the first layer from saved
  accumulators.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..model.dynamic import make_policy, run_policy

__all__ = ["rtl_points", "resident_program", "run_resident", "run_streamed", "compare_streamed"]


def rtl_points(points: list[dict], nbits: int) -> list[dict]:
    """The operating points plus fixed k=2 and k=N, as RTL run requests."""
    out = [{"label": f"{p['name']}<= {p['budget']:g}", "name": p["name"],
            "threshold": p["threshold"], "options": p["options"]} for p in points]
    out += [{"label": f"fixed{k}", "name": f"fixed{k}", "threshold": 0, "options": {}}
            for k in sorted({min(2, nbits), nbits})]
    return out


def resident_program(bundle, rows: int, cols: int, tables: str, accdepth: int = 0):
    """``(program, note)`` for the resident engine of R x C: ``(None, reason)`` when the bundle
    does not fit it. With ``accdepth`` the engine gets a continuation memory of that many words
    when the first convolution's accumulators fit it (note ``None``); otherwise the program is
    the one without (escalations recompute the first layer) and the note says why."""
    from .resident import ResidentFitError, compile_program
    from .resident_policy import continuation_config
    from .resident_runner import resident_config

    try:
        prog = compile_program(bundle, resident_config(rows=rows, cols=cols, bundle=bundle),
                               tables)
    except (ResidentFitError, ValueError) as e:
        return None, str(e)
    cfg, note = continuation_config(prog, accdepth)
    return (prog if note else compile_program(bundle, cfg, tables)), note


def run_resident(prog, frames, table, gates, points: list[dict], *, stall: float = 0.0,
                 seed: int = 0, log=lambda *a: None, simulator: str = "amaranth",
                 build_dir="build/sim") -> dict:
    """Every point's policy on chip over ``frames`` [clips, T, C, H, W] (Amaranth simulation, or
    the Verilog under cocotb: ``simulator`` icarus / verilator), compared frame by frame with the
    golden policy on ``table`` (the same frames)."""
    from .resident_policy import compare_frames, run_clips_amaranth, run_clips_cocotb

    rows = []
    t0 = time.perf_counter()
    build_s = 0.0
    for p in points:
        pol = make_policy(p["name"], table.nbits, gates, p["threshold"], **p["options"])
        t1 = time.perf_counter()
        if simulator == "amaranth":
            res = run_clips_amaranth(prog, frames, pol, seed=seed, p_idle=stall, p_stall=stall)
        else:
            res, info = run_clips_cocotb(prog, frames, pol, simulator=simulator,
                                         build_root=build_dir, seed=seed, p_idle=stall,
                                         p_stall=stall)
            build_s += info["build_seconds"]
            t1 += info["build_seconds"]
        row = {"label": p["label"], "name": p["name"], "threshold": p["threshold"],
               **compare_frames(res, table, pol, prog),
               "sim_seconds": time.perf_counter() - t1}
        log(f"  {row['label']}: {row['frames']} frames, {row['decisions_differ']} decisions "
            f"differ, {row['avg_cycles']:.1f} cycles/frame ({row['sim_seconds']:.0f} s)")
        rows.append(row)
    return {"engine": "resident", "simulator": simulator, "stall": stall,
            "build_seconds": round(build_s, 2),
            "continuation": prog.cfg.accdepth > 0, "accdepth": prog.cfg.accdepth, "points": rows,
            "decisions_differ": sum(r["decisions_differ"] for r in rows),
            "mismatches": sum(r["decisions_differ"] + r["logit_mismatches"] + r["busy_mismatches"]
                              for r in rows),
            "failed_tests": [], "sim_seconds": time.perf_counter() - t0}


def run_streamed(bundle_path, cfg, frames, table, gates, cost, points: list[dict], *,
                 simulator: str, build_dir, tables: str, stall: float, seed: int) -> dict:
    """The host-side policies driving the streamed engine's Verilog under cocotb."""
    from .runner import new_run_dir, run_test_module

    targets = set()
    for p in points:
        targets |= make_policy(p["name"], table.nbits, gates, p["threshold"],
                               **p["options"]).targets()
    frozen = gates.export(sorted(targets))
    run_dir = new_run_dir(build_dir, "dynamic")   # this run's own files
    frames_file = run_dir / "dynamic_frames.npz"
    np.savez(frames_file, frames=frames)
    rep = run_test_module(
        "progressivenn.sim.cocotb_dynamic", cfg,
        {"bundle": str(Path(bundle_path).resolve()), "frames": str(frames_file),
         "points": points, "gates": frozen.to_json(), "tables": tables,
         "stall": stall, "seed": seed},
        simulator=simulator, build_root=build_dir, name="dynamic", run_dir=run_dir)
    if rep.get("error"):
        last = rep["error"].strip().splitlines()[-1]
        raise RuntimeError(f"the RTL run failed: {last}")
    rows = compare_streamed(rep, table, cost, frozen, points)
    return {"engine": "streamed", "simulator": simulator, "stall": stall, "points": rows,
            "decisions_differ": sum(r["decisions_differ"] for r in rows),
            "mismatches": sum(r["mismatches"] for r in rows),
            "failed_tests": rep.get("failed_tests", []),
            "build_seconds": rep.get("build_seconds"), "sim_seconds": rep.get("sim_seconds")}


def compare_streamed(rtl: dict, table, cost, gates, points: list[dict]) -> list[dict]:
    """Streamed RTL report vs the same policies on the golden logits of the same frames."""
    out = []
    nbits = table.nbits
    labels = table.labels.reshape(-1)
    for point, rec in zip(points, rtl["points"]):
        pol = make_policy(point["name"], nbits, gates, point["threshold"],
                          **point.get("options", {}))
        paths, preds = run_policy(pol, table)
        frames = rec["frames"]
        gold_logits = [table.logits[p[-1] - 1].reshape(-1, table.logits.shape[-1])[i]
                       for i, p in enumerate(paths)]
        mism = []
        differ = 0
        for i, fr in enumerate(frames):
            got = {"path": tuple(fr["path"]), "logits": list(fr["logits"]),
                   "busy": fr["counters"].get("busy"), "passes": fr["counters"].get("plane_passes")}
            exp = {"path": paths[i], "logits": [int(v) for v in gold_logits[i]],
                   "busy": cost.frame_cycles(paths[i]), "passes": cost.frame_passes(paths[i])}
            differ += int(got["path"] != exp["path"] or fr["pred"] != preds[i])
            for key in exp:
                if got[key] != exp[key]:
                    mism.append({"clip": fr["clip"], "t": fr["t"], "field": key,
                                 "expected": exp[key], "got": got[key]})
        n = len(frames)
        busy = sum(fr["counters"].get("busy", 0) for fr in frames)
        total = sum(fr["counters"].get("total", 0) for fr in frames)
        passes = sum(fr["counters"].get("plane_passes", 0) for fr in frames)
        gold_cycles = sum(cost.frame_cycles(p) for p in paths)
        out.append({
            "label": rec["label"], "name": point["name"], "threshold": point["threshold"],
            "frames": n, "decisions_differ": differ, "mismatches": len(mism),
            "first_mismatch": mism[0] if mism else None,
            "accuracy": sum(int(fr["pred"] == labels[i]) for i, fr in enumerate(frames)) / n,
            "golden_accuracy": sum(int(p == labels[i]) for i, p in enumerate(preds)) / n,
            "avg_planes": busy / (n * cost.plane_cycles),
            "golden_avg_planes": gold_cycles / (n * cost.plane_cycles),
            "avg_cycles": busy / n, "golden_avg_cycles": gold_cycles / n,
            "avg_total_cycles": total / n, "avg_plane_passes": passes / n,
            "continued_frames": sum(int(fr["continued"]) for fr in frames),
        })
    return out
