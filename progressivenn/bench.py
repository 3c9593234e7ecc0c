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

:func:`run_bench` runs them as the named step list :data:`STEPS` (``accuracy``, ``residual``,
``rtl``, ``golden_speed``, ``fpga``; seconds per step in the report's ``step_seconds``) and
returns the report (JSON-able); :mod:`progressivenn.bench_report`'s
:func:`write_report` writes ``bench.json``, ``report.md`` and the plots
(:func:`progressivenn.report.plot_bench`), and :func:`write_results_md` ``docs/results.md``.
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

# the reports live in bench_report (kept importable from here)
from .bench_report import report_markdown, summary_lines, write_report, write_results_md

__all__ = ["BenchConfig", "STEPS", "run_bench", "write_report", "write_results_md", "machine_info",
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
    progress: bool = True                 # log lines on stderr
    bar: bool = False                     # a progress bar on stderr when it is a terminal
    notes: list = field(default_factory=list)
    #: the running bar (:class:`progressivenn.progress.Progress`), set by :func:`run_bench`
    progress_bar: object = field(default=None, repr=False, compare=False)

    # training / evaluation sizes: (quick, full)
    def sizes(self, dataset: str) -> dict:
        if dataset == "digits":
            return {"epochs": 12 if self.quick else 30, "limit": None, "bn_samples": None,
                    "test": None}
        return {"epochs": 1 if self.quick else 3, "limit": 6000 if self.quick else None,
                "bn_samples": 2000 if self.quick else 10000, "test": 500 if self.quick else 1000}


def _log(cfg: BenchConfig, msg: str) -> None:
    if not cfg.progress:
        return
    line = f"[bench {time.strftime('%H:%M:%S')}] {msg}"
    if cfg.progress_bar is not None:
        cfg.progress_bar.log(line)
    else:
        print(line, file=sys.stderr, flush=True)


def _step(cfg: BenchConfig, what: str, msg: str | None = None) -> None:
    """The next step of the bench's plan (:func:`planned_steps`) starts: the bar moves."""
    if cfg.progress_bar is not None:
        cfg.progress_bar.step(what)
    _log(cfg, msg or what)


def _datasets(cfg: BenchConfig) -> list[str]:
    return ["digits"] + (["mnist"] if cfg.data_dir is not None else [])


def _seeds_of(cfg: BenchConfig, dataset: str) -> list:
    return list(cfg.seeds if dataset == "digits" else cfg.mnist_seeds) or [cfg.seed]


def planned_steps(cfg: BenchConfig, sims: list | None = None) -> int:
    """How many steps (trainings, simulator runs, FPGA builds) :func:`run_bench` takes."""
    n = sum(2 * len(_seeds_of(cfg, d)) for d in _datasets(cfg))     # k8 and anyk per seed
    if cfg.accuracy_only:
        return n
    sims = [s for s in cfg.simulators if _have_sim(s)] if sims is None else sims
    n += 1                                          # the residual net
    if sims:                                        # its RTL run; scalability, default tiling,
        n += 1 + 2 + len(sims) - 1                  # and the other simulators' throughput
    return n + (2 if cfg.fpga else 0)


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
    from .model.train import default_epochs, train

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
    if dataset == "digits" and not cfg.quick:     # the training defaults of pnn train / api.train
        epochs = default_epochs(dataset, any_k=(mode == "anyk"))
    else:
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

    datasets = _datasets(cfg)
    if cfg.data_dir is None:
        cfg.notes.append("MNIST skipped: no --data-dir and no ../shared/data/mnist")
    out, bundles = {}, {}
    for dataset in datasets:
        ds = load_dataset(dataset, cfg.data_dir if dataset != "digits" else None)
        out[dataset] = {}
        seeds = _seeds_of(cfg, dataset)
        for mode in ("k8", "anyk"):
            runs = {}
            for seed in seeds:
                _step(cfg, f"accuracy: {dataset} {mode} seed {seed}",
                      f"accuracy: {dataset} {mode} seed {seed}: training / BN retraining")
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
    _step(cfg, f"rtl: {name}{tag} on {simulator}",
          f"rtl: {name} on {simulator}, {images} image(s), k={list(bits)}")
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
        _step(cfg, f"fpga: build --board {board}")
        try:
            res[board] = build_board(board, out=Path(cfg.out) / "fpga" / board, timeout=3600)
        except ToolMissing as e:
            res[board] = {"error": str(e)}
        except (RuntimeError, TimeoutError, ValueError) as e:
            res[board] = {"error": " ".join(str(e).split())[:300]}
    return res


# ---- the whole bench -------------------------------------------------------------------------------

def _main_sim(sims: list) -> str:
    """The simulator of the residual and scalability runs: Verilator when there."""
    return "verilator" if "verilator" in sims else sims[0]


def bench_residual(cfg: BenchConfig, sims: list) -> dict:
    """ResNet-8 trained here (or reused), exported, and through the RTL at k = 1, 4, 8 on
    :func:`_main_sim`."""
    from .model.data import load_dataset
    from .model.evaluate import evaluate
    rds = "mnist" if cfg.data_dir is not None else "digits"
    ds = load_dataset(rds, cfg.data_dir if rds == "mnist" else None)
    _step(cfg, f"residual: resnet8 on {rds}")
    sz = cfg.sizes(rds)
    fixed, net, info = _train_or_reuse(cfg, rds, "k8", ds, arch="resnet8")
    rb = _bundle(net, fixed, ds, rds, sz["test"])
    ev = evaluate(net, rb)
    residual = {"arch": "resnet8", "dataset": rds, **info, "test_images": ev["n_test"],
                "retrained": {k: v for k, v in ev["accuracy"].items() if k != "float"},
                "fixed": ev["accuracy_no_bn_retrain"], "agreement": ev["agreement"],
                "layers": len(rb.layers), "adds": sum(l.kind == "add" for l in rb.layers)}
    if sims:
        rsim, rimg = _main_sim(sims), 2
        rr = _rtl_run(cfg, rb, f"{rds}-resnet8", rsim, rimg, (1, 4, 8), layer_counters=False,
                      stall=0.1)
        residual["rtl"] = {"simulator": rsim, "images": rimg, "bits": [1, 4, 8],
                           "mismatches": rr["mismatches"], "compared_values": rr["compared_values"],
                           "first_mismatch": rr["first_mismatch"], "failed_tests": rr["failed_tests"],
                           "correct": {k: v["correct"] for k, v in rr["per_k"].items()},
                           "sim_seconds": rr["sim_seconds"]}
    return residual


def bench_rtl(cfg: BenchConfig, bundles: dict, sims: list) -> dict:
    """Scalability and utilization from per-layer counters (the MNIST net trained at 8, else
    digits) on :func:`_main_sim`, once with the driver's default tiling, and simulation throughput: the
    same workload (1 image, every k) per simulator. Returns the report's keys."""
    rep = {"scalability": {}, "utilization": {}, "sim_cycles_per_s": {}, "rtl_runs": {}}
    if not sims:
        return rep
    rsim = _main_sim(sims)
    sname = "mnist-k8" if "mnist-k8" in bundles else "digits-k8"
    sb = bundles[sname]
    ks = range(1, sb.nbits + 1)
    run = _rtl_run(cfg, sb, sname, rsim, 1, ks)
    rep["scalability"], rep["utilization"] = _scalability(run, sb, sb.nbits)
    rep["scalability"]["tile_positions"] = "auto"
    rep["rtl_runs"][f"{sname}@{rsim}"] = _brief(run)
    drun = _rtl_run(cfg, sb, sname, rsim, 1, (1, sb.nbits), tile=None, tag="-default-tiles")
    dsc, _ = _scalability(drun, sb, sb.nbits)
    rep["scalability"]["default_tiling"] = {k: {"measured": v["measured"],
                                                "deviation": v["deviation"]}
                                            for k, v in dsc["per_k"].items()}
    for sim in sims:
        if sim == rsim:
            trun = run
        else:
            trun = _rtl_run(cfg, sb, sname, sim, 1, ks)
            rep["rtl_runs"][f"{sname}@{sim}"] = _brief(trun)
        cycles = trun["sim_time_ns"] / 10          # 10 ns clock in the bench
        rep["sim_cycles_per_s"][sim] = cycles / trun["sim_seconds"]
    rep["sim_workload"] = f"{sname}, 1 image, k = 1..{sb.nbits}, per-layer counters"
    return rep


def _step_accuracy(cfg: BenchConfig, report: dict, state: dict) -> None:
    report["accuracy"], state["bundles"] = bench_accuracy(cfg)


def _step_residual(cfg: BenchConfig, report: dict, state: dict) -> None:
    state["sims"] = [s for s in cfg.simulators if _have_sim(s)]
    report["residual"] = bench_residual(cfg, state["sims"])


def _step_rtl(cfg: BenchConfig, report: dict, state: dict) -> None:
    report.update(bench_rtl(cfg, state["bundles"], state["sims"]))
    if not state["sims"]:
        cfg.notes.append("no simulator found: RTL sections skipped")


def _step_golden_speed(cfg: BenchConfig, report: dict, state: dict) -> None:
    report["golden_images_per_s"] = {k: v["images_per_s"]
                                     for k, v in bench_golden_speed(state["bundles"]).items()}


def _step_fpga(cfg: BenchConfig, report: dict, state: dict) -> None:
    report["fpga"] = bench_fpga(cfg) if cfg.fpga else {"note": "not run (use --fpga)"}


#: the bench as a named step list, run in order by :func:`run_bench`; each step adds its sections
#: to the report (``state`` carries the bundles and simulators between steps) and its seconds go
#: into the report's ``step_seconds``
STEPS = (("accuracy", _step_accuracy), ("residual", _step_residual), ("rtl", _step_rtl),
         ("golden_speed", _step_golden_speed), ("fpga", _step_fpga))


def _sections(cfg: BenchConfig, report: dict) -> None:
    """Run :data:`STEPS` into ``report`` (only ``accuracy`` with ``cfg.accuracy_only``)."""
    state: dict = {}
    report["step_seconds"] = seconds = {}
    for name, step in STEPS:
        t0 = time.perf_counter()
        step(cfg, report, state)
        seconds[name] = round(time.perf_counter() - t0, 1)
        if cfg.accuracy_only:
            cfg.notes.append("--accuracy-only: the RTL, residual, throughput and FPGA sections"
                             " not run")
            return


def run_bench(cfg: BenchConfig) -> dict:
    """The whole bench (module docstring) into ``cfg.out``; returns the report (JSON-able).
    With ``cfg.bar``, a progress bar over :func:`planned_steps` on a terminal's stderr."""
    import torch

    from .progress import Progress

    t_start = time.perf_counter()
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    report = {"quick": cfg.quick, "machine": machine_info(), "notes": cfg.notes,
              "data_dir": str(cfg.data_dir) if cfg.data_dir else None}
    with Progress(planned_steps(cfg), "bench", enabled=cfg.bar) as bar:
        cfg.progress_bar = bar
        try:
            _sections(cfg, report)
        finally:
            cfg.progress_bar = None
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
