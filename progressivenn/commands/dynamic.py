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
                   help="run the operating points (and fixed k=2, k=N) on the RTL and compare "
                        "every frame's decision with the golden policy")
    p.add_argument("--rtl-engine", choices=["auto", "resident", "streamed"], default="auto",
                   help="resident: the policy runs on chip (Amaranth simulation, or its "
                        "Verilog under --simulator icarus|verilator); streamed: the host runs it "
                        "and drives the streamed engine under cocotb; auto (default): resident "
                        "when the bundle fits and no cocotb simulator is named")
    p.add_argument("--simulator", choices=["amaranth", "icarus", "verilator"], default=None,
                   help="amaranth (resident's default) or icarus / verilator (streamed's "
                        "default icarus; resident with --rtl-engine resident)")
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
                   help="saved-accumulator words (default 256), of the streamed engine and of "
                        "the resident engine's continuation memory (0: none); the first layer is "
                        "continued only when its positions x row groups fit")


# ---- command -------------------------------------------------------------------------------------

def _check_args(args) -> tuple[list, list, list]:
    """Names, thresholds and budgets of the command line; ValueError names a bad option."""
    from ..model import dynamic as dyn

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
    for name, v in (("--clips", args.clips), ("--frames", args.frames),
                    ("--rtl-clips", args.rtl_clips), ("--rtl-frames", args.rtl_frames)):
        if v < 1:
            raise ValueError(f"{name} must be >= 1, not {v}")
    if not 0 <= args.stall < 1:
        raise ValueError(f"--stall must be in [0, 1), not {args.stall}")
    return names, thresholds, _floats(args.budgets, "--budgets")


def _rtl_engine(args, bundle):
    """``(resident program or None, why not)`` for ``--rtl``; ValueError on a contradiction."""
    from ..sim import dynamic_rtl

    cocotb_sim = args.simulator in ("icarus", "verilator")
    if args.rtl_engine == "streamed" and args.simulator == "amaranth":
        raise ValueError("--rtl-engine streamed runs under cocotb: --simulator icarus|verilator")
    if args.rtl_engine == "streamed" or (args.rtl_engine == "auto" and cocotb_sim):
        return None, f"--rtl-engine {args.rtl_engine} --simulator {args.simulator}"
    prog, why = dynamic_rtl.resident_program(bundle, args.rows, args.cols, args.tables,
                                             args.accdepth)
    if args.rtl_engine == "resident" and prog is None:
        raise ValueError(f"--rtl-engine resident: {why}")
    return prog, why


def _rtl(args, bundle, cfg, cost, clips, table, gates, points, engine, log) -> dict:
    """The ``rtl`` section: resident (policy on chip) or streamed, as :func:`_rtl_engine` chose."""
    from ..sim import dynamic_rtl

    rc, rf = min(args.rtl_clips, clips.n_clips), min(args.rtl_frames, clips.n_frames)
    prog, why = engine
    pts = dynamic_rtl.rtl_points(points, bundle.nbits)
    frames, sub = clips.frames[:rc, :rf], table.subset(rc, rf)
    if prog is not None:
        sim = args.simulator or "amaranth"
        log(f"RTL (resident, policy on chip, {sim}): {len(pts)} points x {rc} clips x {rf} "
            f"frames ...")
        out = dynamic_rtl.run_resident(prog, frames, sub, gates, pts, stall=args.stall,
                                       seed=args.seed, log=log, simulator=sim,
                                       build_dir=args.build_dir)
        out["continuation_note"] = why
        out["fixed_cycles"] = {p["name"][5:]: p["avg_cycles"] for p in out["points"]
                               if p["name"].startswith("fixed")}
    else:
        sim = args.simulator or "icarus"
        log(f"RTL (streamed, {sim}): {len(pts)} points x {rc} clips x {rf} frames ...")
        out = dynamic_rtl.run_streamed(args.bundle, cfg, frames, sub, gates, cost, pts,
                                       simulator=sim, build_dir=args.build_dir,
                                       tables=args.tables, stall=args.stall, seed=args.seed)
        out["resident_refused"] = why
    return {**out, "clips": rc, "frames_per_clip": rf}


def run(args) -> int:
    from ..model import dynamic as dyn
    from ..model.bundle import load_bundle
    from ..model.clips import ClipError, eval_and_calibration
    from ..sim.driver import check_fits
    from ..sim.progressive import cost_model, first_layer_continues
    from .sim import engine_config

    names, thresholds, budgets = _check_args(args)
    bundle = load_bundle(args.bundle)
    cfg = engine_config(args, bundle)
    plans = check_fits(bundle, cfg)
    cost = cost_model(bundle, cfg, plans)
    reason = first_layer_continues(bundle, cfg, plans)
    engine = _rtl_engine(args, bundle) if args.rtl else None
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr))
    try:
        clips, calib = eval_and_calibration(bundle, n_clips=args.clips, n_frames=args.frames,
                                            seed=args.seed, calib_clips=args.calib_clips,
                                            sequence=args.sequence)
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
    summary = dyn.summarize_policies(results, fixed, names)
    best = max(names, key=lambda n: (summary[n]["worst_gap"], summary[n]["mean_gap"]))
    points = dyn.operating_points(cal_results, results, fixed, budgets, bundle.nbits)
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
        "policies": results, "summary": summary, "best_policy": best,
        "operating_points": points,
    }
    if args.rtl:
        out["rtl"] = _rtl(args, bundle, cfg, cost, clips, table, gates, points, engine, log)
    if args.plot:
        from ..report import plot_dynamic
        plot_dynamic(args.plot, fixed, results, names, points,
                     f"{bundle.dataset}: {clips.n_clips}x{clips.n_frames} "
                     f"{'synthetic clips' if clips.meta.get('synthetic') else 'frames'}, engine "
                     f"R={cfg.rows} C={cfg.cols}")
        log(f"plot written to {args.plot}")
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print_report(out)
    return int("rtl" in out and bool(out["rtl"]["mismatches"] or out["rtl"]["failed_tests"]))


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
        print_rtl(o["rtl"], p)


def print_rtl(r: dict, p) -> None:
    p(f"RTL ({r['engine']}, {r['simulator']}, {r['clips']} clips x {r['frames_per_clip']} frames, "
      f"stall {r['stall']}): {r['decisions_differ']} decisions differ, {r['mismatches']} "
      f"mismatches vs golden")
    if r["engine"] == "resident":
        p("first layer continued on escalation (continuation memory of "
          f"{r['accdepth']} words)" if r["continuation"] else
          f"first layer recomputed on escalation: {r.get('continuation_note')}")
        p("point             acc(RTL)  acc(gold)  differ  planes(busy)  final k  cycles/frame  "
          "busy/frame  busy if continued")
        for x in r["points"]:
            p(f"{x['label']:16s}  {100 * x['accuracy']:7.2f}  {100 * x['golden_accuracy']:8.2f}  "
              f"{x['decisions_differ']:6d}  {x['avg_planes']:12.3f}  {x['avg_final_k']:7.2f}  "
              f"{x['avg_cycles']:12.1f}  {x['avg_busy']:10.1f}  {x['avg_busy_continuation']:17.1f}")
        first = next((x["first_difference"] for x in r["points"] if x["first_difference"]), None)
    else:
        p("point             acc(RTL)  acc(gold)  planes(RTL busy)  planes(gold)  busy/frame  "
          "total/frame  passes/frame  continued")
        for x in r["points"]:
            p(f"{x['label']:16s}  {100 * x['accuracy']:7.2f}  {100 * x['golden_accuracy']:8.2f}  "
              f"{x['avg_planes']:16.3f}  {x['golden_avg_planes']:12.3f}  {x['avg_cycles']:10.1f}  "
              f"{x['avg_total_cycles']:11.1f}  {x['avg_plane_passes']:12.1f}  "
              f"{x['continued_frames']:9d}")
        first = next((x["first_mismatch"] for x in r["points"] if x["first_mismatch"]), None)
    if first:
        p(f"first difference: {first}")
