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

__all__ = ["CONFIG", "MODEL", "RETRAINED", "DEFAULT_EPOCHS", "check_run", "read_config",
           "write_json", "build_from_config", "load_trained", "load_retrained", "dataset_for"]

CONFIG = "config.json"
MODEL = "model.pt"
RETRAINED = "bn_retrained.pt"
DEFAULT_EPOCHS = {"digits": 30, "mnist": 2, "cifar10": 10, "cifar100": 10}


def check_run(run) -> Path:
    p = Path(run)
    if not p.is_dir():
        raise FileNotFoundError(f"{run}: no such run folder (create one with `pnn train --out {run}`)")
    if not (p / CONFIG).is_file() or not (p / MODEL).is_file():
        raise FileNotFoundError(f"{run}: not a run folder (no {CONFIG}/{MODEL}; run `pnn train` first)")
    return p


def read_config(run) -> dict:
    return json.loads((check_run(run) / CONFIG).read_text())


def write_json(path: Path, obj) -> None:
    Path(path).write_text(json.dumps(obj, indent=1) + "\n")


def build_from_config(cfg: dict) -> QNet:
    return build_net(cfg["arch"], nbits=cfg["nbits"], abits=cfg["abits"],
                     input_scale=cfg["input_scale"], input_shape=cfg.get("input_shape"),
                     num_classes=cfg.get("num_classes"))


def _load(run: Path, fname: str, cfg: dict) -> QNet:
    net = build_from_config(cfg)
    state = torch.load(run / fname, map_location="cpu", weights_only=True)
    net.load_state_dict(state)
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
