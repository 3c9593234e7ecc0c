"""BN retraining (per-k tables, weights frozen): it never leaves a k worse than its fixed table."""

import copy

import numpy as np
import pytest
import torch

from progressivenn.model.bn_retrain import holdout_split, retrain_bn
from progressivenn.model.bwb import planes
from progressivenn.model.data import load_dataset
from progressivenn.model.nets import build_net
from progressivenn.model.train import accuracy, train

N = 4


@pytest.fixture(scope="module")
def small():
    """A digits net with N=4 planes trained briefly at k=N, and the digits data (500 images)."""
    torch.set_num_threads(1)
    ds = load_dataset("digits")
    ds.train_x, ds.train_y = ds.train_x[:500], ds.train_y[:500]
    torch.manual_seed(0)
    net = build_net("digits", nbits=N, input_scale=ds.input_scale)
    train(net, ds, epochs=3, progress=False)
    return net, ds


@pytest.mark.parametrize("lr", [1e-2, 50.0])  # 50: a tuning that wrecks the tables it trains
def test_no_k_worse_than_its_fixed_table_on_held_out_images(small, lr):
    net0, ds = small
    net = copy.deepcopy(net0)
    log = retrain_bn(net, ds, steps=40, lr=lr, seed=3, progress=False)
    _, hold = holdout_split(len(ds.train_x), 0.2, 3)
    xh, yh = ds.train_x[hold], ds.train_y[hold]
    assert log["holdout"] == len(hold) == 100
    for k in range(1, N + 1):
        fixed = accuracy(net0, xh, yh, k, table=N)       # the trained k=N table at k planes
        kept = accuracy(net, xh, yh, k)
        entry = log["per_k"][str(k)]
        assert kept >= fixed, (k, entry)
        assert kept == pytest.approx(entry["holdout_accuracy"][entry["kept"]])
        assert entry["holdout_accuracy"]["fixed"] == pytest.approx(fixed)
    if lr > 1:  # the wrecked tuned tables lose to the fixed/re-estimated ones somewhere
        assert any(e["kept"] != "tuned" for e in log["per_k"].values())


def test_tuning_lifts_k1_and_touches_only_per_k_tables(small):
    net0, ds = small
    net = copy.deepcopy(net0)
    retrain_bn(net, ds, steps=60, select=False, seed=1, progress=False)
    for a, b in zip(net0.compute_blocks(), net.compute_blocks()):
        assert torch.equal(a.op.weight, b.op.weight)
        if a.act is not None:
            assert torch.equal(a.act.clip, b.act.clip)
    af0, af = net0.affine_modules()[0], net.affine_modules()[0]   # the logits layer (no BN)
    assert torch.equal(af0.weight, torch.ones_like(af0.weight))   # identity after k=N training
    assert not torch.equal(af.weight[0], af0.weight[0])           # the k=1 output scale trained
    x, y = ds.test_x, ds.test_y
    assert accuracy(net, x, y, 1) > accuracy(net0, x, y, 1, table=N) + 0.05


def test_plain_reestimation_changes_only_statistics(small):
    net0, ds = small
    net = copy.deepcopy(net0)
    log = retrain_bn(net, ds, tune=False, select=False, progress=False)
    assert all(e["kept"] == "reestimated" for e in log["per_k"].values())
    for p0, p in zip(net0.parameters(), net.parameters()):
        assert torch.equal(p0, p)
    bn0, bn = net0.bn_modules()[0], net.bn_modules()[0]
    assert not torch.equal(bn0.tables[0].running_mean, bn.tables[0].running_mean)


def test_retrain_bn_refuses_bad_settings(small):
    net, ds = small
    for kw, msg in (({"distill": 1.5}, "distill"), ({"holdout": 1.0}, "holdout"),
                    ({"steps": -1}, "steps"), ({"temperature": 0}, "temperature")):
        with pytest.raises(ValueError, match=msg):
            retrain_bn(copy.deepcopy(net), ds, progress=False, **kw)


def test_sandwich_any_k_trains_every_table_and_the_affines():
    ds = load_dataset("digits")
    torch.manual_seed(0)
    net = build_net("digits", nbits=N, input_scale=ds.input_scale)
    log = train(net, ds, epochs=1, any_k=True, progress=False, limit=256)
    assert log["schedule"] == "sandwich"
    bn = net.bn_modules()[0]
    assert all(not torch.equal(t.weight, torch.ones_like(t.weight)) for t in bn.tables)
    af = net.affine_modules()[0]
    assert all(not torch.equal(af.weight[k], torch.ones_like(af.weight[k])) for k in range(N))
    with pytest.raises(ValueError, match="schedule"):
        train(net, ds, epochs=1, any_k=True, schedule="random", progress=False, limit=64)
