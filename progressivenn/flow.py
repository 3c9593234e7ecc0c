"""A FINN-style build flow: one :class:`FlowConfig` and named steps, each a function of it, that
write into one flow folder and can be run, stopped and resumed (``docs/api.md``).

======================  ==========================================  ===========================
step                    reads                                       writes (in ``cfg.out``)
======================  ==========================================  ===========================
``train``               the data set                                ``run/`` (a RUN folder)
``retrain_bn``          ``run/``                                    ``run/bn_retrained.pt``
``export``              ``run/``                                    ``bundle/``
``verilog``             ``bundle/`` (sizes the engine)              ``rtl/``
``sim``                 ``bundle/``                                 ``sim.json``, ``sim_build/``
``report``              ``run/`` and ``sim.json`` when there        ``report/`` (md, json, png)
======================  ==========================================  ===========================

:func:`run_flow` runs ``STEPS[start:stop]`` in order and records each step's seconds, finish time
and summary in ``flow.json``; a later call resumes from any step, since every step reads only what
the earlier ones left in the folder (a missing input is one line naming the step to run first).
Each step is an ordinary function (``step_train(cfg)`` ...), so a user's own flow can call them,
leave some out or add its own. The steps call the Python API (:mod:`progressivenn.api`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["STEPS", "FlowConfig", "FlowError", "run_flow", "step_train", "step_retrain_bn",
           "step_export", "step_verilog", "step_sim", "step_report"]

STEPS = ("train", "retrain_bn", "export", "verilog", "sim", "report")
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
    simulator: str = "icarus"
    sim_images: int = 2
    bits: list | None = None              # simulated k (None: 1..N)
    progress: bool = False

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


def _engine(cfg: FlowConfig, bundle):
    from .api import engine_config
    return engine_config(bundle, **cfg.engine)


def step_train(cfg: FlowConfig) -> dict:
    """Quantization-aware training (``pnn train``) -> ``run/``."""
    import shutil

    from .api import train
    shutil.rmtree(cfg.path("run"), ignore_errors=True)     # no stale checkpoints or logs
    run = train(cfg.dataset, arch=cfg.arch, epochs=cfg.epochs, any_k=cfg.any_k,
                data_dir=cfg.data_dir, seed=cfg.seed, limit=cfg.limit, progress=cfg.progress)
    run.save(cfg.path("run"))
    return {"epochs": run.config["epochs"], "arch": run.config.get("arch")}


def step_retrain_bn(cfg: FlowConfig) -> dict:
    """Per-k BN tables (``pnn retrain-bn``) -> ``run/bn_retrained.pt``."""
    run = _run(cfg, "retrain_bn")
    run.retrain_bn(progress=cfg.progress, **cfg.retrain_bn).save()
    return {"retrained": True}


def step_export(cfg: FlowConfig) -> dict:
    """Fold into the integer bundle (``pnn export``) -> ``bundle/``."""
    run = _run(cfg, "export")
    if not run.retrained:
        raise FlowError(f"flow step export: {cfg.path('run')} is not BN-retrained; run step "
                        f"'retrain_bn' first")
    b = run.export(cfg.path("bundle"), mbits=cfg.mbits, test_images=cfg.test_images)
    return {"layers": len(b.layers), "test_images": int(len(b.test_x))}


def step_verilog(cfg: FlowConfig) -> dict:
    """The engine sized for the bundle (``pnn verilog``) -> ``rtl/``."""
    from .api import generate_verilog
    ecfg = _engine(cfg, _bundle(cfg, "verilog"))
    v = generate_verilog(cfg.path("rtl"), config=ecfg)
    return {"verilog": v.name, "rows": ecfg.rows, "cols": ecfg.cols}


def step_sim(cfg: FlowConfig) -> dict:
    """cocotb regression of the RTL against the golden model (``pnn sim``) -> ``sim.json``."""
    from .api import simulate
    b = _bundle(cfg, "sim")
    res = simulate(cfg.path("bundle"), simulator=cfg.simulator, images=cfg.sim_images,
                   bits=cfg.bits, seed=cfg.seed, build_dir=str(cfg.path("sim_build")),
                   config=_engine(cfg, b))
    cfg.path("sim.json").write_text(json.dumps(res, indent=1) + "\n")
    return {"mismatches": res["mismatches"], "compared_values": res["compared_values"]}


def step_report(cfg: FlowConfig) -> dict:
    """Accuracy per k (and the RTL's, after ``sim``) as markdown, JSON and plots -> ``report/``."""
    from .report import write_report
    ev = _run(cfg, "report").evaluate(mbits=cfg.mbits, test_images=cfg.test_images)
    sim_json = cfg.path("sim.json")
    sim = json.loads(sim_json.read_text()) if sim_json.is_file() else None
    done = {k: v for k, v in _read_flow(cfg).get("steps", {}).items() if k in STEPS[:-1]}
    done = dict(sorted(done.items(), key=lambda kv: STEPS.index(kv[0])))
    extra = {"flow steps done": ", ".join(done) or "none",
             "seconds": {k: v["seconds"] for k, v in done.items()}}
    md = write_report(cfg.path("report"), ev, sim, extra, title="progressivenn flow report")
    return {"markdown": str(md), "accuracy_k1": ev["accuracy"]["1"]}


FUNCTIONS = {"train": step_train, "retrain_bn": step_retrain_bn, "export": step_export,
             "verilog": step_verilog, "sim": step_sim, "report": step_report}


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
             steps=None) -> dict:
    """Run the steps ``start`` .. ``stop`` (inclusive; default all of :data:`STEPS`), or the
    named ``steps``, in order; returns ``flow.json``'s contents (config and, per step run so far,
    ``seconds``, ``finished`` and its summary). Stops at the first failing step (the steps before
    it stay recorded, so a later call can resume there)."""
    names = list(steps) if steps is not None else \
        list(STEPS[_index(start, 0):_index(stop, len(STEPS) - 1) + 1])
    for n in names:
        _index(n, 0)
    if not names:
        raise FlowError(f"no flow steps between {start!r} and {stop!r}")
    out = Path(cfg.out)
    _check_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    flow = _read_flow(cfg)
    flow["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    flow.setdefault("steps", {})
    _write_flow(cfg, flow)                       # marks the folder as a flow from the start
    for name in names:
        t0 = time.perf_counter()
        summary = FUNCTIONS[name](cfg)
        flow["steps"].pop(name, None)            # keep the order of the latest runs
        flow["steps"][name] = {"seconds": round(time.perf_counter() - t0, 2),
                               "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               **summary}
        _write_flow(cfg, flow)
    return flow


def _write_flow(cfg: FlowConfig, flow: dict) -> None:
    tmp = cfg.path(FLOW_JSON + ".tmp")
    tmp.write_text(json.dumps(flow, indent=1) + "\n")
    tmp.replace(cfg.path(FLOW_JSON))
