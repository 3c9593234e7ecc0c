"""The project's plots (the one plotting module), and the demo/flow report: accuracy vs k and
cycles vs k as plots, markdown and JSON (``write_report``); the bench's plots (``plot_bench``; its
markdown is :mod:`progressivenn.bench_report`'s); ``pnn dynamic``'s (``plot_dynamic``)."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["plot_accuracy", "plot_cycles", "plot_bench", "plot_dynamic", "write_report"]


def _ks(d: dict) -> list[str]:
    return sorted((k for k in d if k.isdigit()), key=int)


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _axes(ax, xlabel: str, ylabel: str, title: str, *, legend: int = 8, grid: bool = True,
          title_size=None, loc=None) -> None:
    """The labels, grid and legend every plot here has."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if grid:
        ax.grid(alpha=0.3)
    ax.legend(fontsize=legend, **({"loc": loc} if loc else {}))
    ax.set_title(title, **({"fontsize": title_size} if title_size else {}))


def _save(fig, path, dpi: int = 110) -> Path:
    """Lay out, save as ``path`` and close ``fig``."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return Path(path)


def _finish(fig, ax, ks: list[int], ylabel: str, title: str, path: Path) -> Path:
    """Label a k-axis plot, save it as ``path`` and close it."""
    ax.set_xticks(ks)
    _axes(ax, "weight planes k", ylabel, title)
    return _save(fig, path)


def plot_accuracy(ev: dict, path: Path, sim: dict | None = None) -> Path:
    """Accuracy vs k: golden with and without BN retraining, float, and the RTL's when given."""
    plt = _pyplot()
    ks = _ks(ev["accuracy"])
    x = [int(k) for k in ks]
    fig, ax = plt.subplots(figsize=(6, 4))
    main = ("golden, k=N BN at every k" if ev.get("tables") == "fixed"
            else "golden, BN retrained per k")
    ax.plot(x, [100 * ev["accuracy"][k] for k in ks], "o-",
            label=f"{main} ({ev.get('n_test', '?')} images)")
    if "accuracy_no_bn_retrain" in ev:
        ax.plot(x, [100 * ev["accuracy_no_bn_retrain"][k] for k in ks], "s--",
                label="golden, k=N BN at every k")
    if "float" in ev["accuracy"]:
        ax.axhline(100 * ev["accuracy"]["float"], color="gray", lw=0.8, ls=":", label="float")
    if sim:
        sk = _ks(sim["accuracy"])
        ax.plot([int(k) for k in sk], [100 * sim["accuracy"][k] for k in sk], "x", ms=9,
                label=f"RTL ({sim['simulator']}, {sim['images']} images)")
    where = ev.get("images_from", "test images")
    return _finish(fig, ax, x, "test accuracy (%)",
                   f"{ev.get('dataset', '?')}: accuracy vs bit-planes ({where})", path)


def plot_cycles(sim: dict, path: Path) -> Path:
    """Cycles relative to the largest k against the ideal k/N, and the deviation from it."""
    plt = _pyplot()
    ks = _ks(sim["compute_cycles"])
    x = [int(k) for k in ks]
    top = ks[-1]
    fig, (ax, dev) = plt.subplots(2, 1, figsize=(6, 5.5), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 2]})
    comp = [sim["compute_cycles"][k] / sim["compute_cycles"][top] for k in ks]
    tot = [sim["cycles"][k] / sim["cycles"][top] for k in ks]
    ideal = [int(k) / int(top) for k in ks]
    ax.plot(x, comp, "o-", label="array compute cycles (RTL counter)")
    ax.plot(x, tot, "s--", label="total cycles, loads included")
    ax.plot(x, ideal, "k:", label=f"ideal k/{top}")
    ax.set_ylabel(f"cycles relative to k={top}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    over = sim.get("cycles_over", f"sums over {sim['images']} images")
    ax.set_title(f"{sim.get('dataset', 'bundle')}: cycles vs k, {over} ({sim['simulator']})",
                 fontsize=10 if len(over) < 40 else 8)
    dev.axhline(0, color="k", lw=0.8, ls=":")
    dev.plot(x, [c - i for c, i in zip(comp, ideal)], "o-", label="compute - k/" + top)
    dev.plot(x, [c - i for c, i in zip(tot, ideal)], "s--", label="total - k/" + top)
    return _finish(fig, dev, x, f"deviation from k/{top}", "", path)


def write_report(out: Path, ev: dict, sim: dict | None, extra: dict, *,
                 title: str = "progressivenn demo report") -> Path:
    """Write ``report.md``, ``report.json`` and the plots into ``out``; return the markdown path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot_accuracy(ev, out / "accuracy_vs_k.png", sim)
    lines = [f"# {title}", ""]
    for key, value in extra.items():
        if isinstance(value, dict):      # numbers in report.json, text here
            value = ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
                              for k, v in value.items())
        lines.append(f"- {key}: {value}")
    lines += ["", f"## Accuracy per k (integer golden model, {ev.get('n_test', '?')} "
                  f"{ev.get('dataset', '')} test images)", "",
              "| k | BN retrained | k=N BN | agreement torch/golden |" +
              (f" RTL ({sim['images']} images) |" if sim else ""),
              "|---|---|---|---|" + ("---|" if sim else "")]
    for k in _ks(ev["accuracy"]):
        row = (f"| {k} | {100 * ev['accuracy'][k]:.2f}% | "
               f"{100 * ev['accuracy_no_bn_retrain'][k]:.2f}% | "
               f"{100 * ev['agreement'][k]:.2f}% |")
        if sim:
            row += (f" {100 * sim['accuracy'][k]:.1f}% |" if k in sim["accuracy"] else " - |")
        lines.append(row)
    if "float" in ev["accuracy"]:
        lines += ["", f"Float model: {100 * ev['accuracy']['float']:.2f}%"]
    lines += ["", "![accuracy vs k](accuracy_vs_k.png)", ""]
    if sim:
        plot_cycles({"dataset": ev.get("dataset", "bundle"), **sim}, out / "cycles_vs_k.png")
        top = str(max(sim["bits"]))
        lines += ["## RTL simulation (cocotb)", "",
                  f"{sim['simulator']}, {sim['images']} test images, "
                  f"{sim['compared_values']} integers compared with the golden model, "
                  f"**{sim['mismatches']} mismatches**.", "",
                  f"| k | cycles | compute cycles | ideal | compute/k{top} | ideal k/{top} |"
                  " RTL accuracy |",
                  "|---|---|---|---|---|---|---|"]
        for k in map(str, sim["bits"]):
            lines.append(f"| {k} | {sim['cycles'][k]} | {sim['compute_cycles'][k]} | "
                         f"{sim['ideal_cycles'][k]} | {sim['compute_ratio'][k]:.4f} | "
                         f"{int(k) / int(top):.4f} | {100 * sim['accuracy'][k]:.1f}% |")
        run_rate = (f"; image in to result out {sim['run_cycles_per_s']:.0f} per second, "
                    f"{sim['run_cycles_per_cpu_s']:.0f} per CPU second"
                    if "run_cycles_per_s" in sim and "run_cycles_per_cpu_s" in sim else "")
        lines += ["", f"Simulation: {sim['sim_seconds']} s ({sim['sim_cycles_per_s']:.0f} "
                  f"simulated cycles/s over the whole simulation, start-up included{run_rate}), "
                  f"build {sim['build_seconds']} s.", "",
                  "![cycles vs k](cycles_vs_k.png)", ""]
    md = out / "report.md"
    md.write_text("\n".join(lines))
    (out / "report.json").write_text(json.dumps({"eval": ev, "sim": sim, **extra}, indent=1))
    return md


# ---- pnn bench ------------------------------------------------------------------------------------

def _bench_accuracy(plt, acc: dict, path: Path) -> None:
    """Accuracy vs k per data set: BN retrained and fixed BN, per training mode."""
    fig, axes = plt.subplots(1, len(acc), figsize=(5 * len(acc), 3.6), squeeze=False)
    for ax, (ds, modes) in zip(axes[0], acc.items()):
        for mode, r in modes.items():
            ks = sorted(r["retrained"], key=int)
            ax.plot([int(k) for k in ks], [100 * r["retrained"][k] for k in ks], "o-",
                    label=f"{mode}, BN retrained")
            ax.plot([int(k) for k in ks], [100 * r["fixed"][k] for k in ks], "x--",
                    label=f"{mode}, fixed BN")
        _axes(ax, "k (weight planes)", "test accuracy (%)", ds, legend=7)
    _save(fig, path)


def _bench_cycles(plt, sc: dict, path: Path) -> None:
    """cycles(k)/cycles(N) of the network and of each layer against the ideal k/N."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ks = sorted(sc["per_k"], key=int)
    ax.plot([int(k) for k in ks], [sc["per_k"][k]["ideal"] for k in ks], "k-", lw=2,
            label="ideal k/N")
    ax.plot([int(k) for k in ks], [sc["per_k"][k]["measured"] for k in ks], "o-",
            label="network (total cycles)")
    for lname, per in sc["layers"].items():
        ax.plot([int(k) for k in ks], [per[k]["measured"] for k in ks], ".--", alpha=0.7,
                label=lname)
    _axes(ax, "k", "cycles(k) / cycles(N)", f"RTL cycles vs k ({sc['bundle']})", legend=7)
    _save(fig, path)


def _bench_utilization(plt, ut: dict, path: Path) -> None:
    """Useful lane-ops per layer against busy and against all cycles."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    names = list(ut["layers"])
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [100 * ut["layers"][n]["lane_utilization"] for n in names],
           0.4, label="useful lane-ops / (R*C*busy)")
    ax.bar([x + 0.2 for x in xs],
           [100 * ut["layers"][n]["lane_utilization_total"] for n in names], 0.4,
           label="useful lane-ops / (R*C*total)")
    ax.set_xticks(list(xs), names)
    ax.set_ylim(0, 105)
    _axes(ax, "", "%", f"array utilization per layer (R={ut['engine']['rows']}, "
                       f"C={ut['engine']['cols']})", legend=7, grid=False)
    _save(fig, path)


def plot_bench(report: dict, out: Path) -> list[str]:
    """The plots of a ``pnn bench`` report that has the data for them, into folder ``out``:
    ``accuracy_vs_k.png``, ``cycles_vs_k.png``, ``utilization.png``; returns the file names."""
    plt = _pyplot()
    out = Path(out)
    files = []
    if report.get("accuracy", {}):
        _bench_accuracy(plt, report["accuracy"], out / "accuracy_vs_k.png")
        files.append("accuracy_vs_k.png")
    if report.get("scalability", {}).get("per_k"):
        _bench_cycles(plt, report["scalability"], out / "cycles_vs_k.png")
        files.append("cycles_vs_k.png")
    if report.get("utilization", {}).get("layers"):
        _bench_utilization(plt, report["utilization"], out / "utilization.png")
        files.append("utilization.png")
    return files


# ---- pnn dynamic ----------------------------------------------------------------------------------

def plot_dynamic(path, fixed: dict, results: list[dict], names, points, title: str) -> Path:
    """``pnn dynamic --plot``: accuracy vs average planes, the fixed-k points and every policy's
    sweep (its frontier drawn), the operating points starred."""
    from .model.dynamic import frontier

    plt = _pyplot()
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
    _axes(ax, "average planes per frame (engine cycles / cycles of one plane)",
          "accuracy on the clips (%)", title, title_size=9, loc="lower right")
    return _save(fig, path, dpi=120)
