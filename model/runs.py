"""A RUN folder: what ``pnn train`` / ``retrain-bn`` / ``eval`` / ``export`` share.

Files: ``config.json`` (dataset, data dir, N, A, mode, seed, epochs), ``model.pt`` (the trained
checkpoint; its BN table N is the "fixed" table), ``bn_retrained.pt`` (the network after per-k BN
retraining), ``train.json``, ``retrain_bn.json``, ``eval.json`` (reports).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .data import Dataset, load_dataset
from .nets import QNet, build_net
# the epoch defaults live in model/train.py (one place for `pnn train` and api.train)
from .train import DEFAULT_EPOCHS, DEFAULT_EPOCHS_ANY_K, default_epochs  # noqa: F401

__all__ = ["CONFIG", "MODEL", "RETRAINED", "DEFAULT_EPOCHS", "default_epochs", "check_run",
           "read_config", "write_json", "build_from_config", "load_trained", "load_retrained",
           "dataset_for"]

CONFIG = "config.json"
MODEL = "model.pt"
RETRAINED = "bn_retrained.pt"


def check_run(run) -> Path:
    p = Path(run)
    if not p.is_dir():
        raise FileNotFoundError(f"{run}: no such run folder (create one with `pnn train --out {run}`)")
    if not (p / CONFIG).is_file() or not (p / MODEL).is_file():
        raise FileNotFoundError(f"{run}: not a run folder (no {CONFIG}/{MODEL}; run `pnn train` first)")
    return p


def read_config(run) -> dict:
    path = check_run(run) / CONFIG
    try:
        cfg = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: damaged run configuration, not JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: damaged run configuration, not a JSON object")
    return cfg


def write_json(path: Path, obj) -> None:
    Path(path).write_text(json.dumps(obj, indent=1) + "\n")


def build_from_config(cfg: dict) -> QNet:
    return build_net(cfg["arch"], nbits=cfg["nbits"], abits=cfg["abits"],
                     input_scale=cfg["input_scale"], input_shape=cfg.get("input_shape"),
                     num_classes=cfg.get("num_classes"))


def _load(run: Path, fname: str, cfg: dict) -> QNet:
    """The network of ``cfg`` with the checkpoint ``run/fname``; a truncated, damaged or
    mismatched checkpoint is a ValueError naming the file."""
    try:
        net = build_from_config(cfg)
    except (KeyError, TypeError) as e:
        raise ValueError(f"{run / CONFIG}: damaged run configuration ({type(e).__name__}: {e})") \
            from None
    path = run / fname
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # zip, pickle, EOF, torch's RuntimeError or OSError on a torn archive
        if isinstance(e, OSError) and e.filename is not None:
            raise                        # the file system refused (permission, missing, ...)
        msg = " ".join(str(e).split())[:200]
        raise ValueError(f"{path}: truncated or damaged checkpoint ({type(e).__name__}: {msg});"
                         f" re-create it with `pnn {'train' if fname == MODEL else 'retrain-bn'}`")\
            from None
    try:
        own = net.state_dict()
        if isinstance(state, dict) and any(key not in state for key in own) \
                and all(".affine." in key for key in own if key not in state):
            # a checkpoint from before the per-k affine tables: those stay the identity
            state = {**{key: v for key, v in own.items() if key not in state}, **state}
        net.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        msg = " ".join(str(e).split())[:200]
        raise ValueError(f"{path}: checkpoint does not match {run / CONFIG} ({msg})") from None
    net.eval()
    return net


def load_trained(run) -> QNet:
    run = check_run(run)
    return _load(run, MODEL, read_config(run))


def load_retrained(run) -> QNet:
    run = check_run(run)
    if not (run / RETRAINED).is_file():
        raise FileNotFoundError(f"{run}: no {RETRAINED}; run `pnn retrain-bn {run}` first")
    return _load(run, RETRAINED, read_config(run))


def dataset_for(cfg: dict) -> Dataset:
    return load_dataset(cfg["dataset"], cfg.get("data_dir"), abits=cfg["abits"])
