"""``pnn bench``: the project's benchmark, measured in one run (issue #7).

Sections (every figure is measured here, nothing is copied from elsewhere):

- **accuracy** vs k = 1..N, golden integer model on the exported bundle, with the per-k retrained BN
  tables and with the fixed (k = N) BN, for a net trained at k = N and one trained with ``--any-k``,
  on digits (bundled) and MNIST (``data_dir``; skipped with a note when missing); each trained with
  several seeds (``seeds``; MNIST ``mnist_seeds``): the tables give the mean over the seeds, and
  ``per_seed`` / ``spread`` (standard deviation, min, max per k) say how much a seed moves them;
- **residual**: a ResNet-8 trained here, exported and run through the generated Verilog at k = 1, 4, 8
  against the golden model (mismatches counted);
- **scalability** from the RTL's own cycle counters, read around every compute layer:
  ``cycles(k)/cycles(N)`` per layer and for the network, next to the ideal ``k/N``;
- **utilization** per compute layer: the busy counter against the ideal count, and the honest lane
  figure ``useful lane-ops / (R*C*busy)`` = ``I*O / (C*ceil(I/C) * R*ceil(O/R))`` (lanes padded
  past I and rows past O are wasted), also against all cycles (``R*C*total``);
- **simulation throughput**: simulated cycles per wall second on Icarus and Verilator (the same
  workload), and golden-model images per second;
- **fpga** (``fpga=True``): ``pnn build --json`` per board, when the tools are there.

:func:`run_bench` returns the report (JSON-able); :func:`write_report` writes ``bench.json``,
``report.md`` and the plots; :func:`write_results_md` writes ``docs/results.md`` from a report.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BenchConfig", "run_bench", "write_report", "write_results_md", "machine_info",
           "seed_summary", "lane_utilization", "default_mnist_dir", "summary_lines",
           "report_markdown"]

REPO = Path(__file__).resolve().parent.parent


def default_mnist_dir() -> Path | None:
    """``../shared/data/mnist`` relative to the repository, if it exists."""
    p = REPO.parent / "shared" / "data" / "mnist"
    return p if p.is_dir() else None


@dataclass
class BenchConfig:
    out: Path
    quick: bool = False
    data_dir: Path | None = None          # MNIST idx folder; None: skip MNIST
    fpga: bool = False
    simulators: tuple = ("verilator", "icarus")
    from_runs: Path | None = None         # reuse <from_runs>/<dataset>-<mode> RUN folders
    seed: int = 0
    seeds: tuple = (0, 1, 2)              # accuracy section: digits nets trained per seed
    mnist_seeds: tuple = (0,)             # MNIST nets (minutes each on a CPU)
    accuracy_only: bool = False           # stop after the accuracy section
    progress: bool = True
    notes: list = field(default_factory=list)

    # training / evaluation sizes: (quick, full)
    def sizes(self, dataset: str) -> dict:
        if dataset == "digits":
            return {"epochs": 12 if self.quick else 30, "limit": None, "bn_samples": None,
                    "test": None}
        return {"epochs": 1 if self.quick else 3, "limit": 6000 if self.quick else None,
                "bn_samples": 2000 if self.quick else 10000, "test": 500 if self.quick else 1000}


def _log(cfg: BenchConfig, msg: str) -> None:
    if cfg.progress:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def machine_info() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "platform": platform.platform()}


# ---- accuracy --------------------------------------------------------------------------------------

def _train_or_reuse(cfg: BenchConfig, dataset: str, mode: str, ds, arch: str | None = None,
                    seed: int | None = None):
    """Return (trained net, retrained net, info) for one dataset, training mode and seed
    (default ``cfg.seed``); ``from_runs`` folders are ``<name>-s<seed>``, or ``<name>`` for
    ``cfg.seed``."""
    import torch

    from .model.bn_retrain import retrain_bn
    from .model.nets import build_net
    from .model.runs import load_retrained, load_trained, read_config
    from .model.train import train

    seed = cfg.seed if seed is None else seed
    name = f"{dataset}-{mode}" if arch is None else f"{dataset}-{arch}-{mode}"
    if cfg.from_runs is not None:
        runs = [Path(cfg.from_runs) / f"{name}-s{seed}"]
        if seed == cfg.seed:
            runs.append(Path(cfg.from_runs) / name)
        run = next((r for r in runs if (r / "bn_retrained.pt").is_file()), runs[0])
        if (run / "bn_retrained.pt").is_file():
            rc = read_config(run)
            info = {"source": str(run), "epochs": rc.get("epochs"), "any_k": rc.get("any_k"),
                    "train_images": rc.get("limit") or len(ds.train_x), "seconds": None}
            tlog = run / "train.json"
            if tlog.is_file():
                info["train_seconds"] = json.loads(tlog.read_text()).get("seconds")
            return load_trained(run), load_retrained(run), info
    sz = cfg.sizes(dataset)
    torch.manual_seed(seed)
    net = build_net(arch or dataset, input_scale=ds.input_scale, input_shape=ds.input_shape,
                    num_classes=ds.num_classes)
    epochs = sz["epochs"] * (2 if mode == "anyk" and dataset == "digits" else 1)  # small data
    t0 = time.perf_counter()
    train(net, ds, epochs=epochs, any_k=(mode == "anyk"), seed=seed,
          limit=sz["limit"], progress=False, test_limit=sz["test"] or None)
    t_train = time.perf_counter() - t0
    fixed = copy.deepcopy(net).eval()
    retrain_bn(net, ds, max_samples=sz["bn_samples"], seed=seed, progress=False)
    info = {"source": "trained by this bench", "epochs": epochs, "any_k": mode == "anyk",
            "train_images": min(sz["limit"] or len(ds.train_x), len(ds.train_x)),
            "train_seconds": round(t_train, 1),
            "bn_samples": min(sz["bn_samples"] or len(ds.train_x), len(ds.train_x)),
            "seconds": round(time.perf_counter() - t0, 1)}
    return fixed, net, info


def _bundle(net, fixed, ds, dataset: str, n_test):
    from .model.fold import fold_network
    tx, ty = ds.test_x[:n_test], ds.test_y[:n_test]
    return fold_network(net, fixed_net=fixed, test_x=tx, test_y=ty, dataset=dataset,
                        meta={"note": "made by pnn bench"})


def bench_accuracy(cfg: BenchConfig) -> tuple[dict, dict]:
    """Accuracy per dataset / mode / k; returns (report section, {dataset-mode: bundle})."""
    from .model.data import load_dataset
    from .model.evaluate import evaluate

    datasets = ["digits"]
    if cfg.data_dir is not None:
        datasets.append("mnist")
    else:
        cfg.notes.append("MNIST skipped: no --data-dir and no ../shared/data/mnist")
    out, bundles = {}, {}
    for dataset in datasets:
        ds = load_dataset(dataset, cfg.data_dir if dataset != "digits" else None)
        out[dataset] = {}
        seeds = list(cfg.seeds if dataset == "digits" else cfg.mnist_seeds) or [cfg.seed]
        for mode in ("k8", "anyk"):
            runs = {}
            for seed in seeds:
                _log(cfg, f"accuracy: {dataset} {mode} seed {seed}: training / BN retraining")
                fixed, net, info = _train_or_reuse(cfg, dataset, mode, ds, seed=seed)
                b = _bundle(net, fixed, ds, dataset, cfg.sizes(dataset)["test"])
                t0 = time.perf_counter()
                ev = evaluate(net, b)
                info["eval_seconds"] = round(time.perf_counter() - t0, 1)
                runs[seed] = {
                    "retrained": {k: v for k, v in ev["accuracy"].items() if k != "float"},
                    "fixed": ev["accuracy_no_bn_retrain"],
                    "fakequant": ev["accuracy_fakequant"], "agreement": ev["agreement"],
                    "float": ev["accuracy"]["float"], "test_images": ev["n_test"], **info}
                if seed == seeds[0]:
                    bundles[f"{dataset}-{mode}"] = b   # the RTL sections run the first seed's
                r = runs[seed]
                _log(cfg, f"accuracy: {dataset} {mode} seed {seed}: k=1 {r['retrained']['1']:.4f}"
                          f" (fixed BN {r['fixed']['1']:.4f}), k=8 {r['retrained']['8']:.4f}")
            out[dataset][mode] = seed_summary(runs)
    return out, bundles


_PER_K = ("retrained", "fixed", "fakequant", "agreement")


def seed_summary(runs: dict) -> dict:
    """One entry from per-seed results ``{seed: entry}``: the per-k tables (``retrained``,
    ``fixed``, ``fakequant``, ``agreement``) and ``float`` are means over the seeds; ``spread``
    gives per table and k the standard deviation (population), min and max; ``per_seed`` keeps
    the per-seed tables; other fields come from the first seed (``train_seconds`` summed)."""
    import numpy as np
    seeds = list(runs)
    first = runs[seeds[0]]
    out = {key: v for key, v in first.items() if key not in _PER_K}
    out["seeds"] = seeds
    out["spread"] = {}
    for table in _PER_K:
        if table not in first:
            continue
        out[table], out["spread"][table] = {}, {}
        for k in first[table]:
            v = np.array([runs[s][table][k] for s in seeds], float)
            out[table][k] = float(v.mean())
            out["spread"][table][k] = {"std": float(v.std()), "min": float(v.min()),
                                       "max": float(v.max())}
    out["float"] = float(np.mean([runs[s]["float"] for s in seeds]))
    if all(runs[s].get("train_seconds") is not None for s in seeds):
        out["train_seconds"] = round(sum(runs[s]["train_seconds"] for s in seeds), 1)
    out["per_seed"] = {str(s): {t: runs[s][t] for t in ("retrained", "fixed", "agreement")
                                if t in runs[s]} for s in seeds}
    return out


# ---- RTL: scalability, utilization, throughput -------------------------------------------------

def lane_utilization(reduction: int, outputs: int, rows: int, cols: int) -> float:
    """Useful lane-ops per array lane-cycle while busy: ``I*O / (C*ceil(I/C) * R*ceil(O/R))``."""
    return reduction * outputs / (cols * -(-reduction // cols) * rows * -(-outputs // rows))


def _engine_for(bundle):
    from .hw.isa import EngineConfig
    from .sim.driver import plan_layers
    base = EngineConfig(abits=bundle.abits, nbits=bundle.nbits)
    red = max(p.reduction for p in plan_layers(bundle, base))
    return EngineConfig(abits=bundle.abits, nbits=bundle.nbits,
                        max_reduction=max(base.max_reduction, red))


def _rtl_run(cfg: BenchConfig, bundle, name: str, simulator: str, images: int, bits,
             layer_counters: bool = True, stall: float = 0.0, tile="auto", tag: str = "") -> dict:
    from .model.bundle import save_bundle
    from .sim.runner import run_test_module
    path = Path(cfg.out) / "bundles" / name
    if not (path / "manifest.json").is_file():
        save_bundle(bundle, path)
    ecfg = _engine_for(bundle)
    conf = {"bundle": str(path.resolve()), "images": images, "bits": list(bits),
            "tables": "retrained", "stall": stall, "seed": cfg.seed, "reset_test": False,
            "inject_fault": False, "layer_counters": layer_counters, "tile_positions": tile}
    _log(cfg, f"rtl: {name} on {simulator}, {images} image(s), k={list(bits)}")
    rep = run_test_module("progressivenn.sim.cocotb_bench", ecfg, conf, simulator=simulator,
                          build_root=str(Path(cfg.out) / "sim"), name=f"bench-{name}{tag}")
    rep["engine"] = {"rows": ecfg.rows, "cols": ecfg.cols}
    _log(cfg, f"rtl: {name} on {simulator}: {rep['mismatches']} mismatches, "
              f"{rep['sim_seconds']} s simulation, {rep['build_seconds']} s build")
    return rep


def _scalability(rep: dict, bundle, nbits: int) -> tuple[dict, dict]:
    from .sim.driver import plan_layers
    per_k = rep["per_k"]
    top = per_k[str(nbits)]
    R, C = rep["engine"]["rows"], rep["engine"]["cols"]
    scal = {"bundle": bundle.dataset, "images": rep["images"], "engine": rep["engine"],
            "per_k": {}, "layers": {}}
    for k in sorted(per_k, key=int):
        s = per_k[k]
        scal["per_k"][k] = {"measured": s["cycles"] / top["cycles"],
                            "measured_busy": s["compute_cycles"] / top["compute_cycles"],
                            "ideal": int(k) / nbits, "cycles": s["cycles"],
                            "busy": s["compute_cycles"], "ideal_cycles": s["ideal_cycles"]}
        scal["per_k"][k]["deviation"] = scal["per_k"][k]["measured"] / (int(k) / nbits) - 1
    plans = {p.name: p for p in plan_layers(bundle, _engine_for(bundle))}
    util = {"engine": rep["engine"], "k": nbits, "layers": {}}
    for lname in top.get("layers", {}):
        tl = top["layers"][lname]
        scal["layers"][lname] = {k: {"measured": per_k[k]["layers"][lname]["cycles"] / tl["cycles"],
                                     "ideal": int(k) / nbits} for k in sorted(per_k, key=int)}
        p = plans[lname]
        lane = lane_utilization(p.reduction, p.outputs, R, C)
        layer = bundle.layers[p.index]
        util["layers"][lname] = {
            "kind": layer.kind, "in_channels": layer.in_shape[0], "I": p.reduction,
            "O": p.outputs, "positions": p.positions,
            "busy_over_ideal": tl["compute_cycles"] / tl["ideal_cycles"],
            "lane_utilization": lane,
            "lane_utilization_total": lane * tl["compute_cycles"] / tl["cycles"],
            "busy": tl["compute_cycles"], "total": tl["cycles"], "ideal": tl["ideal_cycles"]}
    return scal, util


def bench_golden_speed(bundles: dict, images: int = 200) -> dict:
    import torch
    from .model.golden import run_network
    out = {}
    for name, b in bundles.items():
        ds = name.split("-")[0]
        if ds in out:
            continue
        x = torch.as_tensor(b.test_x[:images].astype("int64"))
        n = len(x)
        t0 = time.perf_counter()
        run_network(b, x, b.nbits, method="direct")
        dt = time.perf_counter() - t0
        out[ds] = {"images_per_s": n / dt, "images": n, "k": b.nbits, "method": "direct",
                   "torch_threads": torch.get_num_threads()}
    return out


def bench_fpga(cfg: BenchConfig) -> dict:
    """One ``pnn build`` per board, called as the library function (``hw.build.build_board``) in
    this process; a board that fails or a missing tool is recorded, not raised."""
    from .hw.build import ToolMissing, build_board

    res = {}
    for board in ("icebreaker", "ulx3s-85f"):
        _log(cfg, f"fpga: build --board {board}")
        try:
            res[board] = build_board(board, out=Path(cfg.out) / "fpga" / board, timeout=3600)
        except ToolMissing as e:
            res[board] = {"error": str(e)}
        except (RuntimeError, TimeoutError, ValueError) as e:
            res[board] = {"error": " ".join(str(e).split())[:300]}
    return res


# ---- the whole bench -------------------------------------------------------------------------------

def run_bench(cfg: BenchConfig) -> dict:
    import torch

    t_start = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"quick": cfg.quick, "machine": machine_info(), "notes": cfg.notes,
              "data_dir": str(cfg.data_dir) if cfg.data_dir else None}
    report["accuracy"], bundles = bench_accuracy(cfg)
    if cfg.accuracy_only:
        cfg.notes.append("--accuracy-only: the RTL, residual, throughput and FPGA sections not run")
        report["seconds"] = round(time.perf_counter() - t_start, 1)
        report["torch_threads"] = torch.get_num_threads()
        return report

    # residual network: trained here (or reused), exported, through the RTL at k = 1, 4, 8
    from .model.data import load_dataset
    from .model.evaluate import evaluate
    rds = "mnist" if cfg.data_dir is not None else "digits"
    ds = load_dataset(rds, cfg.data_dir if rds == "mnist" else None)
    _log(cfg, f"residual: resnet8 on {rds}")
    sz = cfg.sizes(rds)
    fixed, net, info = _train_or_reuse(cfg, rds, "k8", ds, arch="resnet8")
    rb = _bundle(net, fixed, ds, rds, sz["test"])
    ev = evaluate(net, rb)
    sims = [s for s in cfg.simulators if _have_sim(s)]
    rsim = "verilator" if "verilator" in sims else (sims[0] if sims else None)
    residual = {"arch": "resnet8", "dataset": rds, **info, "test_images": ev["n_test"],
                "retrained": {k: v for k, v in ev["accuracy"].items() if k != "float"},
                "fixed": ev["accuracy_no_bn_retrain"], "agreement": ev["agreement"],
                "layers": len(rb.layers), "adds": sum(l.kind == "add" for l in rb.layers)}
    if rsim:
        rimg = 2
        rr = _rtl_run(cfg, rb, f"{rds}-resnet8", rsim, rimg, (1, 4, 8), layer_counters=False,
                      stall=0.1)
        residual["rtl"] = {"simulator": rsim, "images": rimg, "bits": [1, 4, 8],
                           "mismatches": rr["mismatches"], "compared_values": rr["compared_values"],
                           "first_mismatch": rr["first_mismatch"], "failed_tests": rr["failed_tests"],
                           "correct": {k: v["correct"] for k, v in rr["per_k"].items()},
                           "sim_seconds": rr["sim_seconds"]}
    report["residual"] = residual

    # scalability + utilization from per-layer counters (MNIST net trained at 8, else digits);
    # simulation throughput: the same workload (1 image, every k) per simulator
    report["scalability"], report["utilization"], report["sim_cycles_per_s"] = {}, {}, {}
    report["rtl_runs"] = {}
    if sims:
        sname = "mnist-k8" if "mnist-k8" in bundles else "digits-k8"
        sb = bundles[sname]
        ks = range(1, sb.nbits + 1)
        rep = _rtl_run(cfg, sb, sname, rsim, 1, ks)
        report["scalability"], report["utilization"] = _scalability(rep, sb, sb.nbits)
        report["scalability"]["tile_positions"] = "auto"
        report["rtl_runs"][f"{sname}@{rsim}"] = _brief(rep)
        # the same with the driver's default tiling (one activation tile per bank-full)
        drep = _rtl_run(cfg, sb, sname, rsim, 1, (1, sb.nbits), tile=None, tag="-default-tiles")
        dsc, _ = _scalability(drep, sb, sb.nbits)
        report["scalability"]["default_tiling"] = {k: {"measured": v["measured"],
                                                       "deviation": v["deviation"]}
                                                   for k, v in dsc["per_k"].items()}
        for sim in sims:
            if sim == rsim:
                trep = rep
            else:
                trep = _rtl_run(cfg, sb, sname, sim, 1, ks)
                report["rtl_runs"][f"{sname}@{sim}"] = _brief(trep)
            cycles = trep["sim_time_ns"] / 10          # 10 ns clock in the bench
            report["sim_cycles_per_s"][sim] = cycles / trep["sim_seconds"]
        report["sim_workload"] = f"{sname}, 1 image, k = 1..{sb.nbits}, per-layer counters"
    else:
        cfg.notes.append("no simulator found: RTL sections skipped")
    report["golden_images_per_s"] = {k: v["images_per_s"]
                                     for k, v in bench_golden_speed(bundles).items()}
    report["fpga"] = bench_fpga(cfg) if cfg.fpga else {"note": "not run (use --fpga)"}
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    report["torch_threads"] = torch.get_num_threads()
    return report


def _brief(rep: dict) -> dict:
    return {k: rep.get(k) for k in ("simulator", "images", "bits", "mismatches", "compared_values",
                                    "first_mismatch", "sim_seconds", "build_seconds",
                                    "sim_time_ns", "failed_tests")}


def _have_sim(name: str) -> bool:
    from .sim.runner import find_simulator
    try:
        find_simulator(name)
        return True
    except (FileNotFoundError, ValueError):
        return False


# ---- reports ---------------------------------------------------------------------------------------

def _plots(report: dict, out: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    files = []
    acc = report.get("accuracy", {})
    if acc:
        fig, axes = plt.subplots(1, len(acc), figsize=(5 * len(acc), 3.6), squeeze=False)
        for ax, (ds, modes) in zip(axes[0], acc.items()):
            for mode, r in modes.items():
                ks = sorted(r["retrained"], key=int)
                ax.plot([int(k) for k in ks], [100 * r["retrained"][k] for k in ks], "o-",
                        label=f"{mode}, BN retrained")
                ax.plot([int(k) for k in ks], [100 * r["fixed"][k] for k in ks], "x--",
                        label=f"{mode}, fixed BN")
            ax.set_title(ds)
            ax.set_xlabel("k (weight planes)")
            ax.set_ylabel("test accuracy (%)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "accuracy_vs_k.png", dpi=110)
        plt.close(fig)
        files.append("accuracy_vs_k.png")
    sc = report.get("scalability", {})
    if sc.get("per_k"):
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        ks = sorted(sc["per_k"], key=int)
        ax.plot([int(k) for k in ks], [sc["per_k"][k]["ideal"] for k in ks], "k-", lw=2,
                label="ideal k/N")
        ax.plot([int(k) for k in ks], [sc["per_k"][k]["measured"] for k in ks], "o-",
                label="network (total cycles)")
        for lname, per in sc["layers"].items():
            ax.plot([int(k) for k in ks], [per[k]["measured"] for k in ks], ".--", alpha=0.7,
                    label=lname)
        ax.set_xlabel("k")
        ax.set_ylabel("cycles(k) / cycles(N)")
        ax.set_title(f"RTL cycles vs k ({sc['bundle']})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "cycles_vs_k.png", dpi=110)
        plt.close(fig)
        files.append("cycles_vs_k.png")
    ut = report.get("utilization", {})
    if ut.get("layers"):
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        names = list(ut["layers"])
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], [100 * ut["layers"][n]["lane_utilization"] for n in names],
               0.4, label="useful lane-ops / (R*C*busy)")
        ax.bar([x + 0.2 for x in xs],
               [100 * ut["layers"][n]["lane_utilization_total"] for n in names], 0.4,
               label="useful lane-ops / (R*C*total)")
        ax.set_xticks(list(xs), names)
        ax.set_ylabel("%")
        ax.set_ylim(0, 105)
        ax.set_title(f"array utilization per layer (R={ut['engine']['rows']}, "
                     f"C={ut['engine']['cols']})")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "utilization.png", dpi=110)
        plt.close(fig)
        files.append("utilization.png")
    return files


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def report_markdown(report: dict, plot_dir: str | None = None) -> str:
    """The report as markdown (plots referenced relative to ``plot_dir``)."""
    L = []
    m = report["machine"]
    L.append(f"Machine: {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, torch {m['torch']}, "
             f"{m['date']}. Bench wall time: {report['seconds']:.0f} s"
             f"{' (--quick)' if report['quick'] else ''}.")
    for n in report.get("notes", []):
        L.append(f"\nNote: {n}.")
    pre = f"{plot_dir.rstrip('/')}/" if plot_dir else ""
    L.append("\n## Accuracy vs k (integer golden model on the exported bundle)\n")
    for ds, modes in report["accuracy"].items():
        for mode, r in modes.items():
            what = "trained with --any-k" if mode == "anyk" else "trained at k=8"
            secs = "" if r.get("train_seconds") is None else f", training {r['train_seconds']:.0f} s"
            seeds = r.get("seeds", [])
            many = (f" Seeds {', '.join(str(v) for v in seeds)}: mean, standard deviation and "
                    f"min-max over the seeds." if len(seeds) > 1 else "")
            L.append(f"**{ds}, {what}** — {r['epochs']} epoch(s) on {r['train_images']} training "
                     f"images, {r['test_images']} test images; source: {r['source']}{secs}; "
                     f"float (unquantized) {_pct(r['float'])}%.{many}\n")
            ks = sorted(r["retrained"], key=int)
            L.append("| k | " + " | ".join(ks) + " |")
            L.append("|---|" + "---|" * len(ks))
            if many:
                sp = r["spread"]
                for table, label in (("retrained", "BN retrained"), ("fixed", "fixed BN")):
                    L.append(f"| {label}, mean (%) | "
                             + " | ".join(_pct(r[table][k]) for k in ks) + " |")
                    L.append(f"| {label}, std (points) | "
                             + " | ".join(_pct(sp[table][k]["std"]) for k in ks) + " |")
                    L.append(f"| {label}, min-max (%) | " + " | ".join(
                        f"{_pct(sp[table][k]['min'])}-{_pct(sp[table][k]['max'])}" for k in ks)
                        + " |")
                L.append("| torch = golden, lowest (%) | "
                         + " | ".join(_pct(sp["agreement"][k]["min"]) for k in ks) + " |\n")
                continue
            L.append("| BN retrained (%) | " + " | ".join(_pct(r["retrained"][k]) for k in ks) + " |")
            L.append("| fixed BN (%) | " + " | ".join(_pct(r["fixed"][k]) for k in ks) + " |")
            L.append("| torch = golden (%) | " + " | ".join(_pct(r["agreement"][k]) for k in ks)
                     + " |\n")
    if report["accuracy"]:
        L.append(f"![accuracy vs k]({pre}accuracy_vs_k.png)\n")
    r = report.get("residual")
    if r:
        L.append("## Residual network (ResNet-8, ReLU-before-add units)\n")
        L.append(f"{r['arch']} on {r['dataset']}: {r['layers']} bundle layers, {r['adds']} adds; "
                 f"{r['epochs']} epoch(s) on {r['train_images']} images; golden accuracy on "
                 f"{r['test_images']} test images, BN retrained: k=1 {_pct(r['retrained']['1'])}%, "
                 f"k=4 {_pct(r['retrained']['4'])}%, k=8 {_pct(r['retrained']['8'])}% "
                 f"(fixed BN k=1 {_pct(r['fixed']['1'])}%).")
        if "rtl" in r:
            t = r["rtl"]
            L.append(f"RTL ({t['simulator']}, random back-pressure 10%): {t['images']} images at "
                     f"k = 1, 4, 8: **{t['mismatches']} mismatches** in {t['compared_values']} "
                     f"compared values (every output of every layer); failed tests: "
                     f"{t['failed_tests'] or 'none'}.\n")
    sc = report.get("scalability")
    if sc and sc.get("per_k"):
        L.append(f"## Scalability (RTL cycle counters, {sc['bundle']} net trained at 8, "
                 f"{sc['images']} image(s), R={sc['engine']['rows']} C={sc['engine']['cols']})\n")
        L.append("Counters read around every compute layer; `total` counts every engine cycle from "
                 "the layer's first command to its counter read (weight, table and activation "
                 "loads, pipeline fill and drain included); `busy` counts array cycles. The driver "
                 "runs with `tile_positions=\"auto\"` (about 8 activation tiles per layer, so that "
                 "the ping-pong banks hide all loads but the first tile's); the row below the "
                 "deviation shows the driver's default tiling (one tile per bank-full).\n")
        ks = sorted(sc["per_k"], key=int)
        L.append("| | " + " | ".join(f"k={k}" for k in ks) + " |")
        L.append("|---|" + "---|" * len(ks))
        L.append("| ideal k/8 | " + " | ".join(f"{sc['per_k'][k]['ideal']:.4f}" for k in ks) + " |")
        L.append("| network, total cycles | " + " | ".join(
            f"{sc['per_k'][k]['measured']:.4f}" for k in ks) + " |")
        L.append("| deviation from k/8 | " + " | ".join(
            f"{100 * sc['per_k'][k]['deviation']:+.2f}%" for k in ks) + " |")
        if sc.get("default_tiling"):
            L.append("| network, driver's default tiling | " + " | ".join(
                f"{sc['default_tiling'][k]['measured']:.4f}" if k in sc["default_tiling"] else "-"
                for k in ks) + " |")
        L.append("| network, busy cycles | " + " | ".join(
            f"{sc['per_k'][k]['measured_busy']:.4f}" for k in ks) + " |")
        for lname, per in sc["layers"].items():
            L.append(f"| {lname}, total cycles | " + " | ".join(
                f"{per[k]['measured']:.4f}" for k in ks) + " |")
        L.append(f"\nTotal cycles at k=8: {sc['per_k'][ks[-1]]['cycles']}, of which busy "
                 f"{sc['per_k'][ks[-1]]['busy']} (= ideal {sc['per_k'][ks[-1]]['ideal_cycles']}).\n")
        L.append(f"![cycles vs k]({pre}cycles_vs_k.png)\n")
    ut = report.get("utilization")
    if ut and ut.get("layers"):
        L.append(f"## Array utilization per layer (k={ut['k']})\n")
        L.append("| layer | C_in | I | O | busy / ideal | lane-ops / (R*C*busy) | "
                 "lane-ops / (R*C*total) |")
        L.append("|---|---|---|---|---|---|---|")
        for n, u in ut["layers"].items():
            L.append(f"| {n} ({u['kind']}) | {u['in_channels']} | {u['I']} | {u['O']} | "
                     f"{u['busy_over_ideal']:.4f} | {_pct(u['lane_utilization'])}% | "
                     f"{_pct(u['lane_utilization_total'])}% |")
        L.append(f"\n![utilization]({pre}utilization.png)\n")
    if "sim_cycles_per_s" not in report:          # --accuracy-only
        return "\n".join(L) + "\n"
    L.append("## Simulation throughput\n")
    for sim, v in report.get("sim_cycles_per_s", {}).items():
        L.append(f"- {sim}: {v:,.0f} simulated cycles / s ({report.get('sim_workload', '')}; "
                 f"cocotb drives every stream beat from Python and the wall time includes the "
                 f"golden comparison, so small layers (many beats per cycle of work) run slower)")
    for ds, v in report.get("golden_images_per_s", {}).items():
        L.append(f"- golden model ({ds}, k=8, torch int64): {v:,.1f} images / s")
    f = report.get("fpga", {})
    L.append("\n## FPGA\n")
    L.append("```\n" + json.dumps(f, indent=1)[:4000] + "\n```")
    return "\n".join(L) + "\n"


def write_report(report: dict, out) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=1) + "\n")
    plots = _plots(report, out)
    (out / "report.md").write_text("# pnn bench report\n\n" + report_markdown(report) )
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
