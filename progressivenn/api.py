"""The Python API: ``import progressivenn as pnn`` (``docs/api.md``; every example there is run by
``tests/test_api.py``).

The whole flow in a few calls::

    run = pnn.train("digits", epochs=3)            # or pnn.train(pnn.from_sequential(seq, ...), ...)
    run.retrain_bn()
    print(run.evaluate()["accuracy"])              # golden accuracy per k, fractions
    bundle = run.export("out/bundle")
    pnn.predict(bundle, bundle.test_x[:5], k=2)    # class indices from the integer golden model
    pnn.generate_verilog("out/rtl", rows=4, cols=8)
    pnn.simulate(bundle, images=2, bits=[1, 8])    # the dict of `pnn sim --json`

The same as a FINN-style step list (:mod:`progressivenn.flow`), resumable from any step::

    cfg = pnn.FlowConfig("out/flow", dataset="digits", engine={"rows": 4, "cols": 8})
    pnn.run_flow(cfg, stop="export")               # train -> retrain_bn -> eval -> export
    pnn.run_flow(cfg, start="verilog")             # verilog -> sim -> report, later

The CLI commands ``train``, ``retrain-bn``, ``eval`` and ``export`` call the same functions on RUN
folders (``Run.load`` / ``Run.save``). Heavy packages (torch, amaranth, cocotb) are imported inside
the functions.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

from .flow import STEPS, FlowConfig, run_flow

__all__ = ["Run", "train", "load_run", "from_sequential", "load_bundle", "save_bundle", "predict",
           "evaluate_bundle", "generate_verilog", "engine_config", "simulate",
           "STEPS", "FlowConfig", "run_flow"]


class Run:
    """A trained BWB network with its data set: the object behind a RUN folder.

    ``net``: the network (per-k BN tables once :meth:`retrain_bn` ran); ``fixed``: a frozen copy of
    the trained network, whose BN table N is the "fixed" set of the bundle; ``dataset``: a
    :class:`progressivenn.model.data.Dataset`; ``config``: what ``config.json`` holds;
    ``logs``: ``{"train": ..., "retrain_bn": ..., "eval": ...}``; ``path``: the run folder or None.
    """

    def __init__(self, net, dataset, *, config: dict | None = None, fixed=None,
                 retrained: bool = False, logs: dict | None = None, path=None):
        self.net = net
        self.fixed = fixed if fixed is not None else copy.deepcopy(net).eval()
        self.dataset = dataset
        self.config = dict(config or {})
        self.retrained = retrained
        self.logs = dict(logs or {})
        self.path = Path(path) if path is not None else None

    def __repr__(self):
        where = f" at {self.path}" if self.path else ""
        return (f"<Run {self.config.get('arch', 'custom')} on {self.dataset.name}, "
                f"N={self.net.nbits} A={self.net.abits}, "
                f"{'BN retrained' if self.retrained else 'not BN-retrained'}{where}>")

    # ---- the steps ------------------------------------------------------------------------------

    def retrain_bn(self, *, progress: bool = False, **options) -> "Run":
        """Retrain one table of per-k parameters per k (weights frozen; ``pnn retrain-bn``);
        ``options`` go to ``progressivenn.model.bn_retrain.retrain_bn`` (``max_samples``, ...).
        Returns self."""
        from .model.bn_retrain import retrain_bn

        options.setdefault("seed", self.config.get("seed", 0))
        self.logs["retrain_bn"] = retrain_bn(self.net, self.dataset, progress=progress, **options)
        self.retrained = True
        return self

    def bundle(self, *, mbits: int = 18, test_images: int | None = None):
        """Fold into an in-memory :class:`~progressivenn.model.bundle.Bundle` (integer tables for
        every k) carrying the first ``test_images`` test images (default: all for digits, else
        1000)."""
        from .model.evaluate import default_limit
        from .model.fold import fold_network

        self._need_retrained("bundle")
        ds = self.dataset
        limit = default_limit(ds.name) if test_images is None else test_images
        if limit is not None and limit < 1:
            raise ValueError(f"test_images must be >= 1, not {limit}")
        tx, ty = ds.test_x[:limit], ds.test_y[:limit]
        meta = {"run": str(self.path) if self.path else None, "config": self.config,
                "test_images": "all test images" if limit is None or limit >= len(ds.test_x)
                else f"the first {len(tx)} test images"}
        return fold_network(self.net, fixed_net=self.fixed, mbits=mbits, test_x=tx, test_y=ty,
                            dataset=ds.name, meta=meta)

    def evaluate(self, *, test_images: int | None = None, method: str = "direct",
                 mbits: int = 18) -> dict:
        """Accuracy per k on the bundle's test images (the dict of ``pnn eval --json``): float,
        integer golden with and without BN retraining, fake-quant torch, their agreement."""
        from .model.evaluate import evaluate

        t0 = time.time()
        bundle = self.bundle(mbits=mbits, test_images=test_images)
        res = evaluate(self.net, bundle, method=method)
        res["seconds"] = time.time() - t0
        self.logs["eval"] = res
        return res

    def export(self, path, *, mbits: int = 18, test_images: int | None = None,
               force: bool = True, command: str = "progressivenn.api export"):
        """Write the bundle folder (``docs/bundle.md``); returns the loaded-back Bundle.

        As ``pnn export``: written into a temporary sibling and renamed into place when complete
        (:mod:`progressivenn.outdir`); a folder of other files is refused, an existing bundle is
        replaced unless ``force=False``; ``command`` is recorded in its ``.pnn-output.json``."""
        from .model.bundle import load_bundle, save_bundle
        from .outdir import check_target, output_dir

        check_target(path, "bundle", force=force)
        bundle = self.bundle(mbits=mbits, test_images=test_images)
        with output_dir(path, "bundle", force=force, command=command) as tmp:
            save_bundle(bundle, tmp)
        return load_bundle(path)

    # ---- RUN folders ----------------------------------------------------------------------------

    def save(self, path=None) -> Path:
        """Write the RUN folder (``config.json``, ``model.pt``, ``bn_retrained.pt`` once retrained,
        the logs) that ``pnn eval/export RUN`` read. Only for the built-in networks (``arch``)."""
        import torch

        from .model.runs import CONFIG, MODEL, RETRAINED, write_json

        if "arch" not in self.config:
            raise ValueError("only runs of the built-in networks can be saved as a RUN folder; "
                             "export a custom network with run.export(path)")
        out = Path(path) if path is not None else self.path
        if out is None:
            raise ValueError("save() needs a path (this run has none yet)")
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(f"{out} exists and is not a folder")
        out.mkdir(parents=True, exist_ok=True)
        torch.save(self.fixed.state_dict(), out / MODEL)
        if self.retrained:
            torch.save(self.net.state_dict(), out / RETRAINED)
        write_json(out / CONFIG, self.config)
        for name, log in self.logs.items():
            write_json(out / f"{name}.json", log)
        self.path = out
        return out

    @classmethod
    def load(cls, path) -> "Run":
        """A RUN folder written by ``pnn train`` (and ``pnn retrain-bn``) or :meth:`save`."""
        import json

        from .model.runs import (RETRAINED, check_run, dataset_for, load_retrained, load_trained,
                                 read_config)

        run_dir = check_run(path)
        cfg = read_config(run_dir)
        fixed = load_trained(run_dir)
        retrained = (run_dir / RETRAINED).is_file()
        net = load_retrained(run_dir) if retrained else copy.deepcopy(fixed)
        logs = {}
        for name in ("train", "retrain_bn", "eval"):
            f = run_dir / f"{name}.json"
            if f.is_file():
                try:
                    logs[name] = json.loads(f.read_text())
                except ValueError:
                    pass
        return cls(net, dataset_for(cfg), config=cfg, fixed=fixed, retrained=retrained,
                   logs=logs, path=run_dir)

    def _need_retrained(self, what: str) -> None:
        if not self.retrained:
            raise ValueError(f"{what} needs the per-k BN tables: call run.retrain_bn() first"
                             + (f" (or `pnn retrain-bn {self.path}`)" if self.path else ""))


def load_run(path) -> Run:
    """:meth:`Run.load`."""
    return Run.load(path)


def from_sequential(model, input_shape, *, nbits: int = 8, abits: int = 8,
                    input_scale: float = 1 / 255, num_classes: int | None = None):
    """A plain ``nn.Sequential`` (Conv2d, BatchNorm, ReLU, MaxPool2d, Flatten, Linear) as a BWB
    network (``progressivenn.model.nets.from_sequential`` states the rules)."""
    from .model.nets import from_sequential as convert

    return convert(model, input_shape=tuple(input_shape), nbits=nbits, abits=abits,
                   input_scale=input_scale, num_classes=num_classes)


def _dataset(dataset, data_dir, abits):
    from .model.data import Dataset, load_dataset

    if isinstance(dataset, Dataset):
        if dataset.abits != abits:
            raise ValueError(f"the dataset has A={dataset.abits} bit codes, the network A={abits}")
        return dataset
    return load_dataset(dataset, data_dir, abits=abits)


def train(dataset="digits", net=None, *, arch: str | None = None, epochs: int | None = None,
          any_k: bool = False, nbits: int = 8, abits: int = 8, data_dir=None, seed: int = 0,
          batch_size: int = 64, lr: float = 3e-3, limit: int | None = None,
          progress: bool = False, device: str = "cpu", out=None, **kwargs) -> Run:
    """Quantization-aware training; returns a :class:`Run` (saved to ``out`` when given).

    ``dataset``: a name (``digits`` bundled; ``mnist``, ``cifar10``, ``cifar100`` read from
    ``data_dir``) or a :class:`~progressivenn.model.data.Dataset`. ``net``: a network from
    :func:`from_sequential` (its ``nbits``/``abits`` win), or None for the dataset's reference net
    (``arch``: resnet8/20/18). Further keywords go to ``progressivenn.model.train.train``.
    """
    import torch

    from .model.nets import ARCHS, NETS, build_net
    from .model.train import default_epochs, train as train_net

    if net is not None:
        nbits, abits = net.nbits, net.abits
    ds = _dataset(dataset, data_dir, abits)
    if epochs is None:
        epochs = default_epochs(ds.name, any_k)
    torch.manual_seed(seed)                       # the initial weights too
    config = {"dataset": ds.name, "data_dir": str(Path(data_dir).resolve()) if data_dir else None,
              "nbits": nbits, "abits": abits, "input_scale": ds.input_scale,
              "input_shape": list(ds.input_shape), "num_classes": ds.num_classes,
              "any_k": any_k, "epochs": epochs, "seed": seed, "limit": limit}
    if net is None:
        arch = arch or (ds.name if ds.name in NETS else "resnet18")
        if arch not in ARCHS:
            raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
        net = build_net(arch, nbits=nbits, abits=abits, input_scale=ds.input_scale,
                        input_shape=ds.input_shape, num_classes=ds.num_classes)
        config["arch"] = arch
    elif tuple(net.input_shape) != tuple(ds.input_shape):
        raise ValueError(f"the network takes {tuple(net.input_shape)} inputs, the dataset has "
                         f"{tuple(ds.input_shape)}")
    log = train_net(net, ds, epochs=epochs, any_k=any_k, seed=seed, batch_size=batch_size, lr=lr,
                    limit=limit, progress=progress, device=device, **kwargs)
    run = Run(net, ds, config=config, logs={"train": log})
    if out is not None:
        run.save(out)
    return run


def load_bundle(path):
    """Read a bundle folder (``docs/bundle.md``), validated."""
    from .model.bundle import load_bundle as load

    return load(path)


def save_bundle(bundle, path) -> Path:
    """Write a bundle folder; returns its path."""
    from .model.bundle import save_bundle as save

    return save(bundle, path)


def predict(bundle, images, k: int, *, tables: str = "retrained", logits: bool = False):
    """Classes (numpy int64 ``[n]``) of ``images`` (activation codes ``[n, C, H, W]`` or one
    ``[C, H, W]``) by the integer golden model at ``k`` planes; with ``logits``, also the integer
    logits ``[n, classes]``. A bundle path is loaded first."""
    import numpy as np

    from .model.golden import run_network

    if isinstance(bundle, (str, Path)):
        bundle = load_bundle(bundle)
    x = np.asarray(images)
    if x.ndim == len(bundle.input_shape):
        x = x[None]
    res = run_network(bundle, x, k, tables, "direct")
    pred = res.pred.numpy()
    return (pred, res.logits.numpy()) if logits else pred


def evaluate_bundle(bundle, *, images=None, labels=None, bits=None, tables: str = "retrained"
                    ) -> dict:
    """Golden accuracy per k (fractions) of a bundle on its own test images or on ``images`` /
    ``labels``; the dict of ``pnn eval BUNDLE --json``."""
    import numpy as np

    if isinstance(bundle, (str, Path)):
        bundle = load_bundle(bundle)
    x = bundle.test_x if images is None else np.asarray(images)
    y = bundle.test_y if labels is None else np.asarray(labels)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images but {len(y)} labels")
    if len(x) == 0:
        raise ValueError("no images to evaluate")
    ks = list(range(1, bundle.nbits + 1)) if bits is None else list(bits)
    t0 = time.time()
    acc = {str(k): float((predict(bundle, x, k, tables=tables) == y).mean()) for k in ks}
    return {"dataset": bundle.dataset, "n_test": int(len(x)), "nbits": bundle.nbits,
            "abits": bundle.abits, "tables": tables, "accuracy": acc,
            "seconds": round(time.time() - t0, 3)}


def engine_config(bundle=None, **params):
    """An :class:`~progressivenn.hw.isa.EngineConfig` from keyword parameters (``rows``, ``cols``,
    ``max_reduction``, ``pp_lanes``, ...); with ``bundle``, A/N/M and the accumulator are sized for
    it (its largest reduction unless ``max_reduction`` is given)."""
    from .hw.isa import EngineConfig

    if bundle is not None:
        params.setdefault("abits", bundle.abits)
        params.setdefault("nbits", bundle.nbits)
        params.setdefault("mbits", bundle.mbits)
        params.setdefault("max_reduction",
                          max(layer.reduction for layer in bundle.compute_layers()))
    return EngineConfig(**params)


def generate_verilog(out, *, name: str | None = None, axis: bool = False, config=None,
                     **params) -> Path:
    """``pnn verilog``: the engine (``config``, or an EngineConfig of ``params``) as Verilog in
    ``out`` with its collateral (``docs/integration.md``); returns the Verilog to instantiate."""
    from .hw.generate import generate_verilog as generate

    cfg = config if config is not None else engine_config(**params)
    return generate(cfg, out, name=name, axis=axis)


def simulate(bundle, *, simulator: str = "icarus", images: int = 20, bits=None,
             tables: str = "retrained", stall: float = 0.1, seed: int = 0, waves: bool = False,
             build_dir="build/sim", config=None, progress=None, mode: str = "streamed",
             **params) -> dict:
    """``pnn sim``: the cocotb regression of the generated Verilog on ``bundle`` (a folder; an
    in-memory Bundle is saved under ``build_dir`` first) against the golden model; returns the dict
    of ``pnn sim --json`` (with the paths of ``results.xml``, ``sim.log`` and, with ``waves``, the
    waveform file: FST from Icarus, VCD from Verilator). ``bits``: ``"1-8"``, ``"1,2,4"`` or a
    list (default 1..N); the engine: ``config`` or EngineConfig ``params`` (``rows``, ``cols``,
    ...), sized for the bundle. ``progress``: a ``Progress`` bar stepped per image x k.
    ``mode``: ``"streamed"`` (default), ``"resident"`` (the whole network on chip, an R x C array
    of ``rows``/``cols``, default 8 x 16: ``docs/resident.md``; the dict of ``pnn sim --mode
    resident --json``, the same file keys and ``waves``; Icarus writes ``pnn_resident_bench.fst``)
    or ``"auto"`` (resident when the bundle fits and no streamed-only parameter is given)."""
    from .sim.driver import check_fits
    from .sim.runner import run_regression
    from .simulation import check_sim_args, parse_bits, resident_program, summarize

    if not isinstance(bundle, (str, Path)):
        path = Path(build_dir) / "bundles" / f"{bundle.dataset}-{id(bundle):x}"
        save_bundle(bundle, path)
        bundle = path
    b = load_bundle(bundle)
    if bits is None:
        bits = f"1-{b.nbits}"
    ks = parse_bits(bits, b.nbits) if isinstance(bits, str) else sorted({int(k) for k in bits})
    check_sim_args(b, ks, images, stall)
    if mode != "streamed":
        from .sim.resident_runner import run_resident_cocotb, summarize_resident

        only = (["config"] if config is not None else []) + sorted(set(params) - {"rows", "cols"})
        fitted = resident_program(b, mode=mode, rows=params.get("rows", 8),
                                  cols=params.get("cols", 16), tables=tables, streamed_only=only)
        if fitted is not None:
            rep = run_resident_cocotb(bundle, fitted[0], simulator=simulator, images=images,
                                      bits=ks, tables=tables, stall=stall, seed=seed,
                                      build_root=build_dir, progress=progress, waves=bool(waves))
            return summarize_resident(rep, fitted[1])
    cfg = config if config is not None else engine_config(b, **params)
    check_fits(b, cfg)                    # before any Verilog is generated or built
    report = run_regression(bundle, cfg, simulator=simulator, images=images, bits=ks,
                            tables=tables, stall=stall, seed=seed, build_root=build_dir,
                            waves=bool(waves), progress=progress)
    return summarize(report)
