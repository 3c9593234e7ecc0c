"""A FINN-style build flow: one :class:`FlowConfig` and named steps, each a function of it, that
write into one flow folder and can be run, stopped and resumed (``docs/api.md``).

======================  ==========================================  ===========================
step                    reads                                       writes (in ``cfg.out``)
======================  ==========================================  ===========================
``train``               the data set                                ``run/`` (a RUN folder)
``retrain_bn``          ``run/``                                    ``run/bn_retrained.pt``
``eval``                ``run/``                                    ``run/eval.json``
``export``              ``run/``                                    ``bundle/``
``verilog``             ``bundle/`` (sizes the engine)              ``rtl/``
``sim``                 ``bundle/``, ``rtl/`` (resident mode)       ``sim.json``, ``sim_build/``
``report``              ``run/eval.json``, ``sim.json`` if there    ``report/`` (md, json, png)
======================  ==========================================  ===========================

``cfg.mode`` picks the engine: ``"streamed"`` (the host feeds every layer, ``docs/engine.md``) or
``"resident"`` (the whole network on chip, ``docs/resident.md``; the fit is checked before its
Verilog is generated). A step that changes an input removes what was made from the old one
(``retrain_bn`` the stale ``eval.json``, ``verilog`` the stale ``sim.json``).

:func:`run_flow` runs ``STEPS[start:stop]`` in order and records each step's seconds, finish time
and summary in ``flow.json``; a later call resumes from any step, since every step reads only what
the earlier ones left in the folder (a missing input is one line naming the step to run first).
Each step is an ordinary function (``step_train(cfg)`` ...), so a user's own flow can call them,
leave some out or add its own. The steps call the Python API (:mod:`progressivenn.api`).
``pnn demo`` is this step list on the bundled digits (resident mode, its own report title).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["STEPS", "MODES", "FlowConfig", "FlowError", "run_flow", "step_train",
           "step_retrain_bn", "step_eval", "step_export", "step_verilog", "step_sim",
           "step_report"]

STEPS = ("train", "retrain_bn", "eval", "export", "verilog", "sim", "report")
MODES = ("streamed", "resident")
FLOW_JSON = "flow.json"


class FlowError(ValueError):
    """A step that cannot run (its input missing, an unknown step); the message names it."""


@dataclass
class FlowConfig:
    """Everything the steps need. ``out``: the flow folder; ``engine``: EngineConfig parameters
    (``rows``, ``cols``, ...; A/N/M and the reduction come from the bundle)."""
    out: Path
    dataset: str = "digits"
    data_dir: str | None = None
    arch: str | None = None               # None: the data set's reference network
    epochs: int | None = None             # None: model.train.default_epochs
    any_k: bool = False
    limit: int | None = None              # training images (None: all)
    seed: int = 0
    retrain_bn: dict = field(default_factory=dict)   # keywords of Run.retrain_bn (max_samples,
                                                     # steps, ...; model.bn_retrain.retrain_bn)
    mbits: int = 18
    test_images: int | None = None        # bundle test images (None: the data set's default)
    engine: dict = field(default_factory=lambda: {"rows": 8, "cols": 16})
    mode: str = "streamed"                # MODES: streamed engine, or resident (rows/cols only)
    simulator: str = "icarus"
    sim_images: int = 2
    bits: list | None = None              # simulated k (None: 1..N)
    progress: bool = False                # training lines and the sim progress bar on stderr
    title: str = "progressivenn flow report"

    def path(self, name: str) -> Path:
        return Path(self.out) / name


def _need(cfg: FlowConfig, name: str, step: str, producer: str) -> Path:
    p = cfg.path(name)
    if not p.exists():
        raise FlowError(f"flow step {step}: {p} missing; run step {producer!r} first")
    return p


def _run(cfg: FlowConfig, step: str):
    from .api import load_run
    return load_run(_need(cfg, "run", step, "train"))


def _bundle(cfg: FlowConfig, step: str):
    from .api import load_bundle
    return load_bundle(_need(cfg, "bundle", step, "export"))


def _check_mode(cfg: FlowConfig) -> None:
    if cfg.mode not in MODES:
        raise FlowError(f"flow mode {cfg.mode!r}: choose one of {', '.join(MODES)}")


def _engine(cfg: FlowConfig, bundle):
    """The engine configuration for ``bundle``: an EngineConfig (streamed) or a ResidentConfig."""
    _check_mode(cfg)
    if cfg.mode == "resident":
        from .sim.resident_runner import resident_config
        extra = sorted(set(cfg.engine) - {"rows", "cols"})
        if extra:
            raise FlowError(f"flow mode resident takes engine rows and cols only, not "
                            f"{', '.join(extra)}")
        return resident_config(rows=cfg.engine.get("rows", 8), cols=cfg.engine.get("cols", 16),
                               bundle=bundle)
    from .api import engine_config
    return engine_config(bundle, **cfg.engine)


def _program(bundle, ecfg):
    """Resident mode: the bundle compiled for the engine (``ResidentFitError`` names the memory
    that is short)."""
    from .sim import resident as rs
    return rs.compile_program(bundle, ecfg)


def engine_text(ecfg) -> str:
    """One line describing the engine (the reports' ``engine`` entry)."""
    return (f"R={ecfg.rows} rows x C={ecfg.cols} lanes, A={ecfg.abits}, N={ecfg.nbits},"
            f" accumulator {ecfg.acc_width} bits")


def step_train(cfg: FlowConfig) -> dict:
    """Quantization-aware training (``pnn train``) -> ``run/``."""
    import shutil

    from .api import train
    shutil.rmtree(cfg.path("run"), ignore_errors=True)     # no stale checkpoints or logs
    run = train(cfg.dataset, arch=cfg.arch, epochs=cfg.epochs, any_k=cfg.any_k,
                data_dir=cfg.data_dir, seed=cfg.seed, limit=cfg.limit, progress=cfg.progress)
    run.save(cfg.path("run"))
    epochs = run.logs["train"].get("epochs") or [{}]
    return {"epochs": run.config["epochs"], "arch": run.config.get("arch"),
            "loss": epochs[-1].get("loss")}


def step_retrain_bn(cfg: FlowConfig) -> dict:
    """Per-k BN tables (``pnn retrain-bn``) -> ``run/bn_retrained.pt`` (a stale ``eval.json``
    removed)."""
    run = _run(cfg, "retrain_bn")
    run.logs.pop("eval", None)
    cfg.path("run/eval.json").unlink(missing_ok=True)
    run.retrain_bn(progress=cfg.progress, **cfg.retrain_bn).save()
    return {"retrained": True}


def step_eval(cfg: FlowConfig) -> dict:
    """Accuracy per k (``pnn eval``: float, fake-quant torch, integer golden with and without BN
    retraining) -> ``run/eval.json``."""
    run = _run(cfg, "eval")
    if not run.retrained:
        raise FlowError(f"flow step eval: {cfg.path('run')} is not BN-retrained; run step "
                        f"'retrain_bn' first")
    ev = run.evaluate(mbits=cfg.mbits, test_images=cfg.test_images)
    run.save()
    return {"n_test": ev.get("n_test"), "accuracy_k1": ev["accuracy"]["1"],
            f"accuracy_k{run.net.nbits}": ev["accuracy"][str(run.net.nbits)]}


def step_export(cfg: FlowConfig) -> dict:
    """Fold into the integer bundle (``pnn export``) -> ``bundle/``."""
    run = _run(cfg, "export")
    if not run.retrained:
        raise FlowError(f"flow step export: {cfg.path('run')} is not BN-retrained; run step "
                        f"'retrain_bn' first")
    b = run.export(cfg.path("bundle"), mbits=cfg.mbits, test_images=cfg.test_images)
    return {"layers": len(b.layers), "test_images": int(len(b.test_x))}


def step_verilog(cfg: FlowConfig) -> dict:
    """The engine sized for the bundle (``pnn verilog``; resident mode: the resident engine,
    after checking that the network fits) -> ``rtl/`` (a stale ``sim.json`` removed)."""
    b = _bundle(cfg, "verilog")
    ecfg = _engine(cfg, b)
    cfg.path("sim.json").unlink(missing_ok=True)
    if cfg.mode == "resident":
        from .hw.resident.generate import generate_resident_verilog
        layers = len(_program(b, ecfg).layers)
        v = generate_resident_verilog(ecfg, cfg.path("rtl"))
    else:
        from .api import generate_verilog
        layers = None
        v = generate_verilog(cfg.path("rtl"), config=ecfg)
    out = {"verilog": v.name, "mode": cfg.mode, "rows": ecfg.rows, "cols": ecfg.cols,
           "kib": v.stat().st_size // 1024}
    return out if layers is None else dict(out, program_layers=layers)


def _sim_bar(cfg: FlowConfig, ks):
    """The progress bar of ``pnn sim`` (stderr, drawn only on a terminal and with ``progress``)."""
    from .progress import Progress
    from .sim.progress_file import sim_steps
    return Progress(sim_steps(cfg.sim_images, ks), "sim", enabled=cfg.progress)


def step_sim(cfg: FlowConfig) -> dict:
    """cocotb regression of the RTL against the golden model (``pnn sim``) -> ``sim.json``
    (resident mode: image in, class out, every hidden layer read back and compared)."""
    from .simulation import check_sim_args, parse_bits
    b = _bundle(cfg, "sim")
    ks = parse_bits(f"1-{b.nbits}", b.nbits) if cfg.bits is None else \
        sorted({int(k) for k in cfg.bits})
    check_sim_args(b, ks, cfg.sim_images, 0.1)
    ecfg = _engine(cfg, b)
    if cfg.mode == "resident":
        from .sim.resident_runner import run_resident_cocotb, summarize_resident
        prog = _program(b, ecfg)
        v = _need(cfg, "rtl/pnn_resident.v", "sim", "verilog")
        with _sim_bar(cfg, ks) as bar:
            rep = run_resident_cocotb(cfg.path("bundle"), ecfg, simulator=cfg.simulator,
                                      images=cfg.sim_images, bits=ks, seed=cfg.seed,
                                      build_root=cfg.path("sim_build"), generated=v,
                                      progress=bar)
        res = summarize_resident(rep, prog)
    else:
        from .api import simulate
        with _sim_bar(cfg, ks) as bar:
            res = simulate(cfg.path("bundle"), simulator=cfg.simulator, images=cfg.sim_images,
                           bits=ks, seed=cfg.seed, build_dir=str(cfg.path("sim_build")),
                           config=ecfg, progress=bar)
    cfg.path("sim.json").write_text(json.dumps(res, indent=1) + "\n")
    return {"mismatches": res["mismatches"], "compared_values": res["compared_values"],
            "failed_tests": len(res["failed_tests"])}


def step_report(cfg: FlowConfig) -> dict:
    """Accuracy per k (and the RTL's, after ``sim``) as markdown, JSON and plots -> ``report/``."""
    from .report import write_report
    ev_path = _need(cfg, "run/eval.json", "report", "eval")
    try:
        ev = json.loads(ev_path.read_text())
    except ValueError as e:
        raise FlowError(f"flow step report: {ev_path}: not JSON ({e}); run step 'eval' "
                        f"again") from None
    sim_json = cfg.path("sim.json")
    sim = json.loads(sim_json.read_text()) if sim_json.is_file() else None
    done = {k: v for k, v in _read_flow(cfg).get("steps", {}).items() if k in STEPS[:-1]}
    done = dict(sorted(done.items(), key=lambda kv: STEPS.index(kv[0])))
    extra = {}
    if cfg.path("bundle").is_dir():
        extra["engine"] = engine_text(_engine(cfg, _bundle(cfg, "report")))
    extra["flow steps done"] = ", ".join(done) or "none"
    extra["seconds"] = {k: v["seconds"] for k, v in done.items()}
    if sim and sim.get("mode") == "resident":
        extra["mode"] = ("resident: the network loaded once; per image the image codes and RUN(k) "
                         "in, class, logits and counters out; cycles are one image's, compute "
                         "cycles its layers' busy cycles")
        extra["link_bytes_per_image"] = next(iter(sim["link_bytes_per_image"].values()))
        extra["simulated_cycles_per_s"] = {"image in to result out": sim["run_cycles_per_s"],
                                           "per CPU second": sim["run_cycles_per_cpu_s"]}
    md = write_report(cfg.path("report"), ev, sim, extra, title=cfg.title)
    return {"markdown": str(md), "accuracy_k1": ev["accuracy"]["1"]}


FUNCTIONS = {"train": step_train, "retrain_bn": step_retrain_bn, "eval": step_eval,
             "export": step_export, "verilog": step_verilog, "sim": step_sim,
             "report": step_report}


def _read_flow(cfg: FlowConfig) -> dict:
    try:
        data = json.loads(cfg.path(FLOW_JSON).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _index(name, default: int) -> int:
    if name is None:
        return default
    if name not in STEPS:
        raise FlowError(f"unknown flow step {name!r}; the steps are {', '.join(STEPS)}")
    return STEPS.index(name)


def _check_folder(out: Path) -> None:
    from .outdir import OutputError, kind_of
    if out.exists() and (not out.is_dir() or any(out.iterdir())) \
            and not (out / FLOW_JSON).is_file():
        what = kind_of(out)[0] if out.is_dir() else None
        raise OutputError(f"{out}: holds {f'a {what} folder' if what else 'other files'}, not a "
                          f"flow; refusing to write into it (choose an empty or new folder)")


def run_flow(cfg: FlowConfig, *, start: str | None = None, stop: str | None = None,
             steps=None, before=None, after=None) -> dict:
    """Run the steps ``start`` .. ``stop`` (inclusive; default all of :data:`STEPS`), or the
    named ``steps``, in order; returns ``flow.json``'s contents (config and, per step run so far,
    ``seconds``, ``finished`` and its summary). Stops at the first failing step (the steps before
    it stay recorded, so a later call can resume there). ``before(name, i, n)`` and
    ``after(name, record)`` are called around step ``i`` of ``n`` (a command's console lines)."""
    names = list(steps) if steps is not None else \
        list(STEPS[_index(start, 0):_index(stop, len(STEPS) - 1) + 1])
    for n in names:
        _index(n, 0)
    if not names:
        raise FlowError(f"no flow steps between {start!r} and {stop!r}")
    _check_mode(cfg)
    out = Path(cfg.out)
    _check_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    flow = _read_flow(cfg)
    flow["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    flow.setdefault("steps", {})
    _write_flow(cfg, flow)                       # marks the folder as a flow from the start
    for i, name in enumerate(names, 1):
        if before is not None:
            before(name, i, len(names))
        t0 = time.perf_counter()
        summary = FUNCTIONS[name](cfg)
        flow["steps"].pop(name, None)            # keep the order of the latest runs
        flow["steps"][name] = {"seconds": round(time.perf_counter() - t0, 2),
                               "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               **summary}
        _write_flow(cfg, flow)
        if after is not None:
            after(name, flow["steps"][name])
    return flow


def _write_flow(cfg: FlowConfig, flow: dict) -> None:
    tmp = cfg.path(FLOW_JSON + ".tmp")
    tmp.write_text(json.dumps(flow, indent=1) + "\n")
    tmp.replace(cfg.path(FLOW_JSON))
