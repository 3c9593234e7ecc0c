"""The demo report: accuracy vs k and cycles vs k, as plots, markdown and JSON."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["plot_accuracy", "plot_cycles", "write_report"]


def _ks(d: dict) -> list[str]:
    return sorted((k for k in d if k.isdigit()), key=int)


def _finish(fig, ax, ks: list[int], ylabel: str, title: str, path: Path) -> Path:
    """Label a k-axis plot, save it as ``path`` and close it."""
    import matplotlib.pyplot as plt

    ax.set_xlabel("weight planes k")
    ax.set_ylabel(ylabel)
    ax.set_xticks(ks)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_accuracy(ev: dict, path: Path, sim: dict | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    ax.set_title(f"{sim.get('dataset', 'bundle')}: cycles vs k, sums over {sim['images']} images"
                 f" ({sim['simulator']})", fontsize=10)
    dev.axhline(0, color="k", lw=0.8, ls=":")
    dev.plot(x, [c - i for c, i in zip(comp, ideal)], "o-", label="compute - k/" + top)
    dev.plot(x, [c - i for c, i in zip(tot, ideal)], "s--", label="total - k/" + top)
    return _finish(fig, dev, x, f"deviation from k/{top}", "", path)


def write_report(out: Path, ev: dict, sim: dict | None, extra: dict) -> Path:
    """Write ``report.md``, ``report.json`` and the plots into ``out``; return the markdown path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot_accuracy(ev, out / "accuracy_vs_k.png", sim)
    lines = ["# progressivenn demo report", ""]
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
        plot_cycles(sim, out / "cycles_vs_k.png")
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
        lines += ["", f"Simulation: {sim['sim_seconds']} s ({sim['sim_cycles_per_s']:.0f} "
                  f"simulated cycles/s), build {sim['build_seconds']} s.", "",
                  "![cycles vs k](cycles_vs_k.png)", ""]
    md = out / "report.md"
    md.write_text("\n".join(lines))
    (out / "report.json").write_text(json.dumps({"eval": ev, "sim": sim, **extra}, indent=1))
    return md
