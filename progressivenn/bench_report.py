"""The reports of ``pnn bench``: ``bench.json``, ``report.md`` (one function per section), the
summary lines and ``docs/results.md``. The plots are :func:`progressivenn.report.plot_bench`'s.

Accuracies are fractions in the JSON and percents (``_pct``) only in the markdown tables.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["report_markdown", "write_report", "summary_lines", "write_results_md"]


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def _row(label: str, cells) -> str:
    return f"| {label} | " + " | ".join(cells) + " |"


def _md_header(report: dict) -> list[str]:
    m = report["machine"]
    L = [f"Machine: {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, torch {m['torch']}, "
         f"{m['date']}. Bench wall time: {report['seconds']:.0f} s"
         f"{' (--quick)' if report['quick'] else ''}"
         + (" (" + ", ".join(f"{k} {v:.0f} s" for k, v in report["step_seconds"].items()) + ")"
            if report.get("step_seconds") else "") + "."]
    for n in report.get("notes", []):
        L.append(f"\nNote: {n}.")
    return L


def _md_seed_rows(r: dict, ks: list) -> list[str]:
    """Mean, standard deviation and min-max over the seeds, per table."""
    sp = r["spread"]
    L = []
    for table, label in (("retrained", "BN retrained"), ("fixed", "fixed BN")):
        L.append(_row(f"{label}, mean (%)", (_pct(r[table][k]) for k in ks)))
        L.append(_row(f"{label}, std (points)", (_pct(sp[table][k]["std"]) for k in ks)))
        L.append(_row(f"{label}, min-max (%)",
                      (f"{_pct(sp[table][k]['min'])}-{_pct(sp[table][k]['max'])}" for k in ks)))
    L.append(_row("torch = golden, lowest (%)", (_pct(sp["agreement"][k]["min"]) for k in ks))
             + "\n")
    return L


def _md_accuracy_entry(ds: str, mode: str, r: dict) -> list[str]:
    """One data set and training mode: the heading line and the table per k."""
    what = "trained with --any-k" if mode == "anyk" else "trained at k=8"
    secs = "" if r.get("train_seconds") is None else f", training {r['train_seconds']:.0f} s"
    seeds = r.get("seeds", [])
    many = (f" Seeds {', '.join(str(v) for v in seeds)}: mean, standard deviation and "
            f"min-max over the seeds." if len(seeds) > 1 else "")
    L = [f"**{ds}, {what}** — {r['epochs']} epoch(s) on {r['train_images']} training "
         f"images, {r['test_images']} test images; source: {r['source']}{secs}; "
         f"float (unquantized) {_pct(r['float'])}%.{many}\n"]
    ks = sorted(r["retrained"], key=int)
    L.append("| k | " + " | ".join(ks) + " |")
    L.append("|---|" + "---|" * len(ks))
    if many:
        return L + _md_seed_rows(r, ks)
    L.append(_row("BN retrained (%)", (_pct(r["retrained"][k]) for k in ks)))
    L.append(_row("fixed BN (%)", (_pct(r["fixed"][k]) for k in ks)))
    L.append(_row("torch = golden (%)", (_pct(r["agreement"][k]) for k in ks)) + "\n")
    return L


def _md_accuracy(report: dict, pre: str) -> list[str]:
    L = ["\n## Accuracy vs k (integer golden model on the exported bundle)\n"]
    for ds, modes in report["accuracy"].items():
        for mode, r in modes.items():
            L += _md_accuracy_entry(ds, mode, r)
    if report["accuracy"]:
        L.append(f"![accuracy vs k]({pre}accuracy_vs_k.png)\n")
    return L


def _md_residual(r: dict) -> list[str]:
    L = ["## Residual network (ResNet-8, ReLU-before-add units)\n",
         f"{r['arch']} on {r['dataset']}: {r['layers']} bundle layers, {r['adds']} adds; "
         f"{r['epochs']} epoch(s) on {r['train_images']} images; golden accuracy on "
         f"{r['test_images']} test images, BN retrained: k=1 {_pct(r['retrained']['1'])}%, "
         f"k=4 {_pct(r['retrained']['4'])}%, k=8 {_pct(r['retrained']['8'])}% "
         f"(fixed BN k=1 {_pct(r['fixed']['1'])}%)."]
    if "rtl" in r:
        t = r["rtl"]
        L.append(f"RTL ({t['simulator']}, random back-pressure 10%): {t['images']} images at "
                 f"k = 1, 4, 8: **{t['mismatches']} mismatches** in {t['compared_values']} "
                 f"compared values (every output of every layer); failed tests: "
                 f"{t['failed_tests'] or 'none'}.\n")
    return L


def _md_scalability(sc: dict, pre: str) -> list[str]:
    L = [f"## Scalability (RTL cycle counters, {sc['bundle']} net trained at 8, "
         f"{sc['images']} image(s), R={sc['engine']['rows']} C={sc['engine']['cols']})\n",
         "Counters read around every compute layer; `total` counts every engine cycle from "
         "the layer's first command to its counter read (weight, table and activation "
         "loads, pipeline fill and drain included); `busy` counts array cycles. The driver "
         "runs with `tile_positions=\"auto\"` (about 8 activation tiles per layer, so that "
         "the ping-pong banks hide all loads but the first tile's); the row below the "
         "deviation shows the driver's default tiling (one tile per bank-full).\n"]
    pk = sc["per_k"]
    ks = sorted(pk, key=int)
    L.append("| | " + " | ".join(f"k={k}" for k in ks) + " |")
    L.append("|---|" + "---|" * len(ks))
    L.append(_row("ideal k/8", (f"{pk[k]['ideal']:.4f}" for k in ks)))
    L.append(_row("network, total cycles", (f"{pk[k]['measured']:.4f}" for k in ks)))
    L.append(_row("deviation from k/8", (f"{100 * pk[k]['deviation']:+.2f}%" for k in ks)))
    if sc.get("default_tiling"):
        dt = sc["default_tiling"]
        L.append(_row("network, driver's default tiling",
                      (f"{dt[k]['measured']:.4f}" if k in dt else "-" for k in ks)))
    L.append(_row("network, busy cycles", (f"{pk[k]['measured_busy']:.4f}" for k in ks)))
    for lname, per in sc["layers"].items():
        L.append(_row(f"{lname}, total cycles", (f"{per[k]['measured']:.4f}" for k in ks)))
    L.append(f"\nTotal cycles at k=8: {pk[ks[-1]]['cycles']}, of which busy "
             f"{pk[ks[-1]]['busy']} (= ideal {pk[ks[-1]]['ideal_cycles']}).\n")
    L.append(f"![cycles vs k]({pre}cycles_vs_k.png)\n")
    return L


def _md_utilization(ut: dict, pre: str) -> list[str]:
    L = [f"## Array utilization per layer (k={ut['k']})\n",
         "| layer | C_in | I | O | busy / ideal | lane-ops / (R*C*busy) | lane-ops / (R*C*total) |",
         "|---|---|---|---|---|---|---|"]
    for n, u in ut["layers"].items():
        L.append(f"| {n} ({u['kind']}) | {u['in_channels']} | {u['I']} | {u['O']} | "
                 f"{u['busy_over_ideal']:.4f} | {_pct(u['lane_utilization'])}% | "
                 f"{_pct(u['lane_utilization_total'])}% |")
    L.append(f"\n![utilization]({pre}utilization.png)\n")
    return L


def _md_throughput_fpga(report: dict) -> list[str]:
    L = ["## Simulation throughput\n"]
    for sim, v in report.get("sim_cycles_per_s", {}).items():
        L.append(f"- {sim}: {v:,.0f} simulated cycles / s ({report.get('sim_workload', '')}; "
                 f"cocotb drives every stream beat from Python and the wall time includes the "
                 f"golden comparison, so small layers (many beats per cycle of work) run slower)")
    for ds, v in report.get("golden_images_per_s", {}).items():
        L.append(f"- golden model ({ds}, k=8, torch int64): {v:,.1f} images / s")
    L.append("\n## FPGA\n")
    L.append("```\n" + json.dumps(report.get("fpga", {}), indent=1)[:4000] + "\n```")
    return L


def report_markdown(report: dict, plot_dir: str | None = None) -> str:
    """The report as markdown (plots referenced relative to ``plot_dir``)."""
    pre = f"{plot_dir.rstrip('/')}/" if plot_dir else ""
    L = _md_header(report) + _md_accuracy(report, pre)
    if report.get("residual"):
        L += _md_residual(report["residual"])
    sc = report.get("scalability")
    if sc and sc.get("per_k"):
        L += _md_scalability(sc, pre)
    ut = report.get("utilization")
    if ut and ut.get("layers"):
        L += _md_utilization(ut, pre)
    if "sim_cycles_per_s" in report:          # not with --accuracy-only
        L += _md_throughput_fpga(report)
    return "\n".join(L) + "\n"


def write_report(report: dict, out) -> dict:
    """``bench.json``, the plots and ``report.md`` in folder ``out``; returns their paths."""
    from .report import plot_bench

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=1) + "\n")
    plots = plot_bench(report, out)
    (out / "report.md").write_text("# pnn bench report\n\n" + report_markdown(report))
    return {"json": str(out / "bench.json"), "markdown": str(out / "report.md"), "plots": plots}


def summary_lines(report: dict) -> list[str]:
    """A few lines with the headline figures of a report (for a second run in results.md)."""
    L = [f"- wall time {report['seconds']:.0f} s ({'--quick' if report['quick'] else 'full'}), "
         f"{report['machine']['nproc']} CPUs, {report['machine']['date']}"]
    for ds, modes in report.get("accuracy", {}).items():
        for mode, r in modes.items():
            many = len(r.get("seeds", [])) > 1
            what = f", mean of seeds {','.join(str(v) for v in r['seeds'])}" if many else ""
            lo = (f" (k=1 lowest seed {_pct(r['spread']['retrained']['1']['min'])}%)"
                  if many else "")
            L.append(f"- {ds} {mode} ({r['epochs']} epoch(s), {r['train_images']} images{what}): "
                     f"k=1 {_pct(r['retrained']['1'])}% BN retrained / {_pct(r['fixed']['1'])}% "
                     f"fixed BN, k=8 {_pct(r['retrained']['8'])}%{lo}")
    r = report.get("residual", {})
    if r.get("rtl"):
        L.append(f"- {r['arch']} on {r['dataset']}: RTL k = 1, 4, 8, {r['rtl']['images']} images: "
                 f"{r['rtl']['mismatches']} mismatches")
    sc = report.get("scalability", {})
    if sc.get("per_k"):
        worst = max(abs(v["deviation"]) for v in sc["per_k"].values())
        L.append(f"- scalability ({sc['bundle']}): largest deviation from k/8 {100 * worst:.2f}% "
                 f"(k=1: {sc['per_k']['1']['measured']:.4f} vs 0.1250)")
    for sim, v in report.get("sim_cycles_per_s", {}).items():
        L.append(f"- {sim}: {v:,.0f} simulated cycles/s")
    for ds, v in report.get("golden_images_per_s", {}).items():
        L.append(f"- golden model {ds}: {v:,.0f} images/s")
    return L


def write_results_md(report: dict, path, *, command: str, plot_dir: str | None = None,
                     extra: str = "", plots_from=None) -> Path:
    """``docs/results.md`` from a bench report: the exact command, the machine and the figures.

    ``plots_from``: the bench's output folder; its PNG plots are copied to ``<path's folder>/
    <plot_dir>`` so that the markdown's image links work.
    """
    import shutil
    path = Path(path)
    if plots_from is not None and plot_dir:
        dst = path.parent / plot_dir
        dst.mkdir(parents=True, exist_ok=True)
        for png in Path(plots_from).glob("*.png"):
            shutil.copyfile(png, dst / png.name)
    m = report["machine"]
    head = (f"# Results\n\nGenerated by `progressivenn.bench.write_results_md` from the report of "
            f"the `pnn bench` run below; every number in the report's sections was measured by "
            f"that run.\n\n"
            f"Command: `{command}`\n\n"
            f"Machine: `nproc` = {m['nproc']}, CPU: {m['cpu']}, {m['platform']}; date "
            f"{m['date']}. The 2 CPUs were shared with other jobs during the run.\n\n")
    path.write_text(head + extra + report_markdown(report, plot_dir))
    return path
