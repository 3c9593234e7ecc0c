"""``pnn dynamic``: dynamic bit-precision on sequential data, on the golden model and the RTL."""

from __future__ import annotations

import json
import sys

NAME = "dynamic"
HELP = ("choose the number of planes k per frame of a sequence (escalate / temporal / hybrid "
        "policies), sweep their thresholds against fixed k on the golden model, and run the "
        "chosen operating points through the RTL")


def _ints(text: str, what: str) -> list[int]:
    try:
        out = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated integers, not {text!r}") from None
    if not out:
        raise ValueError(f"{what} is empty")
    return out


def _floats(text: str, what: str) -> list[float]:
    try:
        out = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated numbers, not {text!r}") from None
    if not out:
        raise ValueError(f"{what} is empty")
    return out


def add_arguments(p) -> None:
    from .sim import add_engine_arguments

    p.add_argument("bundle", help="bundle directory written by `pnn export`")
    p.add_argument("--policy", default="all",
                   help="escalate, temporal, hybrid, a comma list of them, or all (default)")
    p.add_argument("--thresholds", default=None,
                   help="target accuracies in per-mille to sweep, e.g. 800,900,950,990 "
                        "(default: 0,500,700,...,1000)")
    p.add_argument("--clips", type=int, default=100, help="synthetic clips to evaluate on")
    p.add_argument("--frames", type=int, default=30, help="frames per synthetic clip")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic clips")
    p.add_argument("--calib-clips", type=int, default=None,
                   help="synthetic calibration clips (default: --clips); made with seed+1 from "
                        "the other half of the bundle's test images")
    p.add_argument("--sequence", default=None,
                   help="evaluate on your own sequence instead: an .npz with frames [T,C,H,W] "
                        "and labels [T], or a folder of .npy/.npz frames")
    p.add_argument("--budgets", default="2,3",
                   help="average-plane budgets of the operating points (default 2,3)")
    p.add_argument("--tables", choices=["retrained", "fixed"], default="retrained")
    p.add_argument("--rtl", action="store_true",
                   help="run the operating points through the generated Verilog under cocotb")
    p.add_argument("--simulator", choices=["icarus", "verilator"], default="icarus")
    p.add_argument("--rtl-clips", type=int, default=2, help="clips run on the RTL (default 2)")
    p.add_argument("--rtl-frames", type=int, default=10,
                   help="frames of each of those clips run on the RTL (default 10)")
    p.add_argument("--stall", type=float, default=0.05,
                   help="probability of a random valid/ready stall per beat on the RTL")
    p.add_argument("--build-dir", default="build/sim", help="simulator builds are kept here")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="write accuracy vs average planes (fixed k and every policy)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    add_engine_arguments(p)
    g = p.add_argument_group("engine memories")
    g.add_argument("--adepth", type=int, default=512,
                   help="activation words per bank (default 512)")
    g.add_argument("--accdepth", type=int, default=256,
                   help="saved-accumulator words (default 256); the first layer is continued "
                        "only when its positions x row groups fit")


# ---- analysis ------------------------------------------------------------------------------------

def frontier(points: list[dict]) -> list[dict]:
    """The Pareto-optimal points (no other point is cheaper and at least as accurate)."""
    pts = sorted(points, key=lambda r: (r["avg_planes"], -r["accuracy"]))
    out, best = [], -1.0
    for r in pts:
        if r["accuracy"] > best:
            out.append(r)
            best = r["accuracy"]
    return out


def summarize_policies(results: list[dict], fixed: dict, names) -> dict:
    from ..model.dynamic import interp_fixed

    import numpy as np

    out = {}
    top = max(int(k) for k in fixed)
    for name in names:
        front = frontier([r for r in results if r["name"] == name])
        gaps = [r["accuracy"] - interp_fixed(fixed, r["avg_planes"]) for r in front]
        # everywhere in [first point, N]: the policy's curve is its frontier, linear between
        # points (alternating two thresholds achieves that) and flat after the last one
        xs = np.linspace(max(1.0, front[0]["avg_planes"]), top, 701)
        pol = np.interp(xs, [r["avg_planes"] for r in front], [r["accuracy"] for r in front])
        every = pol - np.array([interp_fixed(fixed, float(x)) for x in xs])
        i = int(np.argmin(every))
        out[name] = {"frontier": [{"threshold": r["threshold"], "avg_planes": r["avg_planes"],
                                   "accuracy": r["accuracy"]} for r in front],
                     "worst_gap": min(gaps), "mean_gap": sum(gaps) / len(gaps),
                     "on_or_above_fixed": min(gaps) >= -1e-12,
                     "worst_gap_everywhere": float(every[i]),
                     "worst_gap_everywhere_at": float(xs[i])}
    return out


def pick(results: list[dict], budget: float) -> dict | None:
    ok = [r for r in results if r["avg_planes"] <= budget + 1e-12]
    return max(ok, key=lambda r: (r["accuracy"], -r["avg_planes"])) if ok else None


def _golden_subset(table, clips: int, frames: int):
    from ..model.dynamic import LogitTable

    return LogitTable(table.logits[:, :clips, :frames], table.labels[:clips, :frames])


def compare_rtl(rtl: dict, table, cost, gates, points: list[dict]) -> list[dict]:
    """RTL report vs the same policies on the golden logits of the same frames."""
    from ..model.dynamic import make_policy, run_policy

    out = []
    nbits = table.nbits
    for point, rec in zip(points, rtl["points"]):
        pol = make_policy(point["name"], nbits, gates, point["threshold"],
                          **point.get("options", {}))
        paths, preds = run_policy(pol, table)
        frames = rec["frames"]
        labels = table.labels.reshape(-1)
        gold_logits = [table.logits[p[-1] - 1].reshape(-1, table.logits.shape[-1])[i]
                       for i, p in enumerate(paths)]
        mism = []
        for i, fr in enumerate(frames):
            exp_cycles = cost.frame_cycles(paths[i])
            got = {"path": tuple(fr["path"]), "logits": list(fr["logits"]),
                   "busy": fr["counters"].get("busy"), "passes": fr["counters"].get("plane_passes")}
            exp = {"path": paths[i], "logits": [int(v) for v in gold_logits[i]],
                   "busy": exp_cycles, "passes": cost.frame_passes(paths[i])}
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
            "frames": n, "mismatches": len(mism), "first_mismatch": mism[0] if mism else None,
            "accuracy": sum(int(fr["pred"] == labels[i]) for i, fr in enumerate(frames)) / n,
            "golden_accuracy": sum(int(p == labels[i]) for i, p in enumerate(preds)) / n,
            "avg_planes": busy / (n * cost.plane_cycles),
            "golden_avg_planes": gold_cycles / (n * cost.plane_cycles),
            "avg_cycles": busy / n, "golden_avg_cycles": gold_cycles / n,
            "avg_total_cycles": total / n, "avg_plane_passes": passes / n,
            "continued_frames": sum(int(fr["continued"]) for fr in frames),
        })
    return out


def plot(path, fixed: dict, results: list[dict], names, points, title: str) -> None:
    """Accuracy vs average planes: the fixed-k points and every policy's sweep (frontier drawn),
    the operating points starred."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ks = sorted(int(k) for k in fixed)
    ax.plot(ks, [100 * fixed[str(k)] for k in ks], "k-o", label="fixed k", zorder=3)
    for name in names:
        pts = sorted([r for r in results if r["name"] == name], key=lambda r: r["avg_planes"])
        front = frontier(pts)
        line, = ax.plot([r["avg_planes"] for r in front], [100 * r["accuracy"] for r in front],
                        "-", label=f"{name} (frontier)")
        ax.plot([r["avg_planes"] for r in pts], [100 * r["accuracy"] for r in pts], ".",
                color=line.get_color(), alpha=0.5)
    for op in points:
        ev = op["eval"]
        ax.plot(ev["avg_planes"], 100 * ev["accuracy"], "*", ms=12, color="tab:red", zorder=4)
        ax.annotate(f"{op['name']} <= {op['budget']:g}", (ev["avg_planes"], 100 * ev["accuracy"]),
                    textcoords="offset points", xytext=(5, -12), fontsize=8)
    lo = min(100 * fixed[str(k)] for k in ks if k >= 2) - 8
    ax.set_ylim(max(0, lo), 100 * max(fixed.values()) + 3)
    ax.set_xlim(0.8, max(ks) + 0.5)
    ax.set_xlabel("average planes per frame (engine cycles / cycles of one plane)")
    ax.set_ylabel("accuracy on the clips (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---- command -------------------------------------------------------------------------------------

def run(args) -> int:
    import numpy as np

    from ..model import dynamic as dyn
    from ..model.bundle import load_bundle
    from ..model.clips import ClipError, Clips, load_sequence, make_clips
    from ..sim.driver import check_fits
    from ..sim.progressive import cost_model, first_layer_continues
    from .sim import engine_config

    names = (list(dyn.POLICIES) if args.policy == "all"
             else [s.strip() for s in args.policy.split(",") if s.strip()])
    for name in names:
        if name not in dyn.POLICIES:
            raise ValueError(f"--policy: unknown policy {name!r}; choose from "
                             f"{', '.join(dyn.POLICIES)} or all")
    thresholds = (_ints(args.thresholds, "--thresholds") if args.thresholds
                  else list(dyn.DEFAULT_THRESHOLDS))
    if min(thresholds) < 0 or max(thresholds) > 1000:
        raise ValueError("--thresholds are target accuracies in per-mille, in [0, 1000]")
    budgets = _floats(args.budgets, "--budgets")
    for name, v in (("--clips", args.clips), ("--frames", args.frames),
                    ("--rtl-clips", args.rtl_clips), ("--rtl-frames", args.rtl_frames)):
        if v < 1:
            raise ValueError(f"{name} must be >= 1, not {v}")
    if not 0 <= args.stall < 1:
        raise ValueError(f"--stall must be in [0, 1), not {args.stall}")

    bundle = load_bundle(args.bundle)
    cfg = engine_config(args, bundle)
    plans = check_fits(bundle, cfg)
    cost = cost_model(bundle, cfg, plans)
    reason = first_layer_continues(bundle, cfg, plans)
    n_test = len(bundle.test_x)
    idx = np.arange(n_test)
    eval_src, cal_src = (idx[idx % 2 == 0], idx[idx % 2 == 1]) if n_test > 1 else (idx, idx)
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr))
    try:
        if args.sequence:
            clips = load_sequence(args.sequence, input_shape=tuple(bundle.input_shape),
                                  abits=bundle.abits, num_classes=bundle.num_classes)
            cal_src = idx
        else:
            clips = make_clips(bundle.test_x, bundle.test_y, n_clips=args.clips,
                               n_frames=args.frames, seed=args.seed, abits=bundle.abits,
                               sources=eval_src)
        calib = make_clips(bundle.test_x, bundle.test_y, n_clips=args.calib_clips or args.clips,
                           n_frames=args.frames, seed=args.seed + 1, abits=bundle.abits,
                           sources=cal_src)
    except ClipError as e:
        raise ValueError(str(e)) from None
    log(f"pnn dynamic: {clips.n_clips} x {clips.n_frames} frames "
        f"({'synthetic' if clips.meta.get('synthetic') else args.sequence}), calibration "
        f"{calib.n_clips} x {calib.n_frames}; golden model at k=1..{bundle.nbits} ...")
    table = dyn.golden_logits(bundle, clips, args.tables)
    ctable = dyn.golden_logits(bundle, calib, args.tables)
    gates = dyn.Calibration.from_table(ctable)
    fixed = dyn.fixed_curve(table)
    log(f"sweeping {', '.join(names)} over {len(thresholds)} thresholds ...")
    results = dyn.sweep(table, cost, gates, names, thresholds)
    cal_results = dyn.sweep(ctable, cost, gates, names, thresholds)
    for r in results:
        r["vs_fixed"] = r["accuracy"] - dyn.interp_fixed(fixed, r["avg_planes"])
    summary = summarize_policies(results, fixed, names)
    best = max(names, key=lambda n: (summary[n]["worst_gap"], summary[n]["mean_gap"]))

    points = []
    for budget in budgets:
        sel = pick(cal_results, budget)            # chosen on calibration clips (held out)
        if sel is None:
            continue
        ev = next(r for r in results if r["name"] == sel["name"]
                  and r["threshold"] == sel["threshold"])
        insample = pick(results, budget)           # the best the eval curve itself offers
        kb = int(np.floor(budget))
        points.append({
            "budget": budget, "name": sel["name"], "threshold": sel["threshold"],
            "options": sel["options"],
            "calibration": {"avg_planes": sel["avg_planes"], "accuracy": sel["accuracy"]},
            "eval": {k: ev[k] for k in ("avg_planes", "accuracy", "avg_cycles", "avg_passes",
                                        "avg_final_k", "escalations", "k_hist")},
            "fixed_at_budget": {"k": kb, "accuracy": fixed[str(min(kb, bundle.nbits))]},
            "fixed_top": fixed[str(bundle.nbits)],
            "best_on_eval_curve": insample and {
                "name": insample["name"], "threshold": insample["threshold"],
                "avg_planes": insample["avg_planes"], "accuracy": insample["accuracy"]},
        })

    rtl_rows = None
    rtl_report = None
    if args.rtl:
        from ..sim.runner import new_run_dir, run_test_module

        rc, rf = min(args.rtl_clips, clips.n_clips), min(args.rtl_frames, clips.n_frames)
        rtl_points = [{"label": f"{p['name']}<= {p['budget']:g}", "name": p["name"],
                       "threshold": p["threshold"], "options": p["options"]} for p in points]
        rtl_points += [{"label": f"fixed{k}", "name": f"fixed{k}", "threshold": 0, "options": {}}
                       for k in sorted({2, bundle.nbits})]
        targets = set()
        for p in rtl_points:
            targets |= dyn.make_policy(p["name"], bundle.nbits, gates, p["threshold"],
                                       **p["options"]).targets()
        frozen = gates.export(sorted(targets))
        from pathlib import Path
        run_dir = new_run_dir(args.build_dir, "dynamic")   # this run's own files
        frames_file = run_dir / "dynamic_frames.npz"
        np.savez(frames_file, frames=clips.frames[:rc, :rf])
        log(f"RTL ({args.simulator}): {len(rtl_points)} operating points x {rc} clips x {rf} "
            f"frames ...")
        rtl_report = run_test_module(
            "progressivenn.sim.cocotb_dynamic", cfg,
            {"bundle": str(Path(args.bundle).resolve()), "frames": str(frames_file),
             "points": rtl_points, "gates": frozen.to_json(), "tables": args.tables,
             "stall": args.stall, "seed": args.seed},
            simulator=args.simulator, build_root=args.build_dir, name="dynamic", run_dir=run_dir)
        if rtl_report.get("error"):
            last = rtl_report["error"].strip().splitlines()[-1]
            raise RuntimeError(f"the RTL run failed: {last}")
        rtl_rows = compare_rtl(rtl_report, _golden_subset(table, rc, rf), cost, frozen,
                               rtl_points)

    out = {
        "bundle": str(args.bundle), "dataset": bundle.dataset, "nbits": bundle.nbits,
        "engine": {"rows": cfg.rows, "cols": cfg.cols, "adepth": cfg.adepth,
                   "accdepth": cfg.accdepth},
        "clips": {"n_clips": clips.n_clips, "n_frames": clips.n_frames,
                  "synthetic": bool(clips.meta.get("synthetic")), "seed": args.seed,
                  "calibration_clips": calib.n_clips, "calibration_seed": args.seed + 1,
                  "occluded_fraction": float(clips.occluded.mean())},
        "cost": {"cycles_per_plane": list(cost.cycles), "passes_per_plane": list(cost.passes),
                 "plane_cycles": cost.plane_cycles, "first_layer_continues": cost.continuation,
                 "note": reason or "the first layer continues from saved accumulators; later "
                                   "layers are recomputed at every visited k"},
        "fixed": fixed,
        "fixed_cycles": {str(k): k * cost.plane_cycles for k in range(1, bundle.nbits + 1)},
        "policies": results,
        "summary": summary,
        "best_policy": best,
        "operating_points": points,
    }
    if rtl_rows is not None:
        out["rtl"] = {"simulator": args.simulator, "clips": rc, "frames_per_clip": rf,
                      "stall": args.stall, "points": rtl_rows,
                      "mismatches": sum(r["mismatches"] for r in rtl_rows),
                      "failed_tests": rtl_report.get("failed_tests", []),
                      "build_seconds": rtl_report.get("build_seconds"),
                      "sim_seconds": rtl_report.get("sim_seconds")}
    if args.plot:
        plot(args.plot, fixed, results, names, points,
             f"{bundle.dataset}: {clips.n_clips}x{clips.n_frames} "
             f"{'synthetic clips' if clips.meta.get('synthetic') else 'frames'}, engine "
             f"R={cfg.rows} C={cfg.cols}")
        log(f"plot written to {args.plot}")
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print_report(out)
    if rtl_rows is not None and (out["rtl"]["mismatches"] or out["rtl"]["failed_tests"]):
        return 1
    return 0


def print_report(o: dict, file=sys.stdout) -> None:
    p = lambda *a: print(*a, file=file)  # noqa: E731
    c = o["clips"]
    p(f"{o['dataset']}: {c['n_clips']} clips x {c['n_frames']} frames "
      f"({'synthetic' if c['synthetic'] else 'user sequence'}, {100 * c['occluded_fraction']:.1f}%"
      f" occluded), calibration on {c['calibration_clips']} other clips")
    p(f"cost per plane (cycles) by layer: {o['cost']['cycles_per_plane']} = "
      f"{o['cost']['plane_cycles']}; {o['cost']['note']}")
    p("fixed k:  " + "  ".join(f"k={k}: {100 * v:.2f}" for k, v in o["fixed"].items()))
    p("policy     frontier (avg planes -> accuracy %)                  worst vs fixed: at points,"
      " anywhere up to N")
    for name, s in o["summary"].items():
        pts = ", ".join(f"{r['avg_planes']:.2f}->{100 * r['accuracy']:.1f}" for r in s["frontier"]
                        if r["avg_planes"] <= o["nbits"])
        p(f"{name:9s}  {pts[:60]:60s}  {100 * s['worst_gap']:+.2f} pts, "
          f"{100 * s['worst_gap_everywhere']:+.2f} pts at {s['worst_gap_everywhere_at']:.2f}")
    p(f"best policy: {o['best_policy']}")
    p("budget  policy    t     calib planes/acc   eval planes  eval acc  fixed k=floor  fixed k=N")
    for op in o["operating_points"]:
        ev, ca, fb = op["eval"], op["calibration"], op["fixed_at_budget"]
        p(f"{op['budget']:<6g}  {op['name']:8s} {op['threshold']:4d}   {ca['avg_planes']:5.2f} / "
          f"{100 * ca['accuracy']:5.2f}    {ev['avg_planes']:6.3f}     {100 * ev['accuracy']:6.2f}"
          f"    k={fb['k']}: {100 * fb['accuracy']:6.2f}   {100 * op['fixed_top']:6.2f}")
    if "rtl" in o:
        r = o["rtl"]
        p(f"RTL ({r['simulator']}, {r['clips']} clips x {r['frames_per_clip']} frames, stall "
          f"{r['stall']}): {r['mismatches']} mismatches vs golden")
        p("point             acc(RTL)  acc(gold)  planes(RTL busy)  planes(gold)  busy/frame  "
          "total/frame  passes/frame  continued")
        for x in r["points"]:
            p(f"{x['label']:16s}  {100 * x['accuracy']:7.2f}  {100 * x['golden_accuracy']:8.2f}  "
              f"{x['avg_planes']:16.3f}  {x['golden_avg_planes']:12.3f}  {x['avg_cycles']:10.1f}  "
              f"{x['avg_total_cycles']:11.1f}  {x['avg_plane_passes']:12.1f}  "
              f"{x['continued_frames']:9d}")
        first = next((x["first_mismatch"] for x in r["points"] if x["first_mismatch"]), None)
        if first:
            p(f"first mismatch: {first}")
