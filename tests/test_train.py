"""Tiny end-to-end: pnn train -> retrain-bn -> eval -> export -> load -> golden, and CLI errors."""

import json

import numpy as np
import pytest
import torch

from progressivenn.cli import main
from progressivenn.model import golden
from progressivenn.model.bundle import load_bundle
from progressivenn.model.bn_retrain import reestimate_bn
from progressivenn.model.data import load_dataset
from progressivenn.model.nets import build_net
from progressivenn.model.runs import load_retrained, load_trained


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("run") / "r"
    assert main(["train", "--epochs", "1", "--limit", "300", "--quiet", "--threads", "1",
                 "--out", str(run)]) == 0
    assert main(["retrain-bn", str(run), "--quiet", "--max-samples", "300"]) == 0
    return run


def test_end_to_end(run_dir, tmp_path, capsys):
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--json", "--test-images", "100"]) == 0
    res = json.loads(capsys.readouterr().out)
    keys = [str(k) for k in range(1, 9)]
    assert set(keys + ["float"]) <= set(res["accuracy"])
    for name in ("accuracy_no_bn_retrain", "agreement"):
        assert set(keys) <= set(res[name])
    assert res["n_test"] == 100
    assert all(0.0 <= v <= 1.0 for v in res["accuracy"].values())
    assert res["accuracy"]["8"] > 0.3            # 1 epoch on 300 images still learns something
    assert min(res["agreement"].values()) >= 0.9
    assert (run_dir / "eval.json").is_file()
    assert main(["eval", str(run_dir), "--test-images", "50"]) == 0
    table = capsys.readouterr().out
    assert "no BN retrain" in table and "agreement" in table

    out = tmp_path / "bundle"
    assert main(["export", str(run_dir), "--out", str(out)]) == 0
    b = load_bundle(out)
    assert b.dataset == "digits" and b.test_x.shape == (360, 1, 8, 8)
    assert [l.kind for l in b.layers] == ["conv", "maxpool", "conv", "maxpool", "flatten", "linear"]
    assert [l.codes.shape for l in b.compute_layers()] == [(16, 9), (32, 144), (10, 128)]
    r = golden.run_network(b, b.test_x[:100], 8)
    assert float((r.pred.numpy() == b.test_y[:100]).mean()) == pytest.approx(res["accuracy"]["8"])


def test_retrain_bn_changes_only_bn_statistics(run_dir):
    trained, retrained = load_trained(run_dir), load_retrained(run_dir)
    for blk_t, blk_r in zip(trained.compute_blocks(), retrained.compute_blocks()):
        assert torch.equal(blk_t.op.weight, blk_r.op.weight)
    bt, br = trained.bn_modules()[0], retrained.bn_modules()[0]
    assert not torch.equal(bt.tables[0].running_mean, br.tables[0].running_mean)


def test_reestimate_bn_is_exact_mean():
    ds = load_dataset("digits")
    net = build_net("digits", input_scale=ds.input_scale)
    x = ds.train_x[:200]
    reestimate_bn(net, x, 8, batch_size=200)
    blk = net.compute_blocks()[0]
    with torch.no_grad():
        pre = blk.op(torch.from_numpy(x.astype(np.int64)).float() * net.input_scale)
    assert torch.allclose(blk.bn.tables[7].running_mean, pre.mean((0, 2, 3)), atol=1e-5)


def test_any_k_trains_every_table(tmp_path):
    run = tmp_path / "anyk"
    assert main(["train", "--any-k", "--epochs", "1", "--limit", "640", "--quiet",
                 "--out", str(run)]) == 0
    net = load_trained(run)
    bn = net.bn_modules()[0]
    changed = [not torch.equal(t.running_var, torch.ones_like(t.running_var)) for t in bn.tables]
    assert sum(changed) >= 6                      # 10 steps of k = 8, 1 and one of 2..7
    assert json.loads((run / "config.json").read_text())["any_k"] is True


@pytest.mark.parametrize("argv,msg", [
    (["train", "--dataset", "imagenet", "--out", "X"], "unknown dataset 'imagenet'"),
    (["train", "--dataset", "mnist", "--data-dir", "/nonexistent", "--out", "X"], "no such directory"),
    (["train", "--nbits", "0", "--out", "X"], "--nbits must be an integer in \\[1, 16\\]"),
    (["train", "--epochs", "0", "--out", "X"], "--epochs must be >= 1"),
    (["train", "--label-smoothing", "1", "--out", "X"], "--label-smoothing must be in \\[0, 1\\)"),
    (["retrain-bn", "/nonexistent/run"], "no such run folder"),
    (["eval", "/nonexistent/run"], "no such run folder"),
    (["export", "/nonexistent/run", "--out", "X"], "no such run folder"),
])
def test_cli_errors_are_one_line(argv, msg, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    import re
    assert re.search(msg, err), err


def test_eval_needs_retrain_bn(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", "--epochs", "1", "--limit", "64", "--quiet", "--out", str(run)]) == 0
    assert main(["eval", str(run)]) == 2
    assert "pnn retrain-bn" in capsys.readouterr().err


def test_finetune_trains_only_bn_tables():
    from progressivenn.model.bn_retrain import retrain_bn
    ds = load_dataset("digits")
    ds.train_x, ds.train_y = ds.train_x[:128], ds.train_y[:128]
    net = build_net("digits", nbits=2, input_scale=ds.input_scale)
    w0 = [p.detach().clone() for p in net.parameters()]
    bn = net.bn_modules()[0]
    g0 = [t.weight.detach().clone() for t in bn.tables]
    retrain_bn(net, ds, select=False, steps=20, progress=False)  # every k keeps its tuned table
    assert all(not torch.equal(t.weight, g) for t, g in zip(bn.tables, g0))
    for blk in net.compute_blocks():
        assert blk.op.weight.requires_grad
    changed = {id(p) for p, w in zip(net.parameters(), w0) if not torch.equal(p, w)}
    per_k = {id(p) for b in net.bn_modules() + net.affine_modules() for p in b.parameters()}
    assert changed and changed <= per_k


def test_api_and_cli_share_the_epoch_default(tmp_path, monkeypatch):
    """pnn train and api.train read one default (model.train.default_epochs), per mode."""
    import progressivenn.model.train as T
    from progressivenn import api

    seen = []

    def fake_train(net, ds, *, epochs, **kw):            # records the epochs both callers pass
        seen.append(epochs)
        return {"epochs": [{"epoch": 1, "loss": 0.0, "test_acc_k8": 0.0}], "device": "cpu",
                "amp": False, "seconds": 0.0, "label_smoothing": 0.0}

    monkeypatch.setattr(T, "train", fake_train)
    for any_k in (False, True):
        run = api.train("digits", any_k=any_k)
        assert run.config["epochs"] == seen[-1] == T.default_epochs("digits", any_k)
        out = tmp_path / f"r{int(any_k)}"
        assert main(["train", "--quiet", "--out", str(out)] + (["--any-k"] if any_k else [])) == 0
        assert seen[-1] == T.default_epochs("digits", any_k)
        assert json.loads((out / "config.json").read_text())["epochs"] == seen[-1]
    assert T.default_epochs("digits", True) > T.default_epochs("digits")  # small data: any-k longer
    assert T.default_epochs("own-data", True) == 10                       # a user's Dataset


def test_label_smoothing_default_per_mode():
    """--any-k smooths the labels by default (LABEL_SMOOTHING_ANY_K), k=N training does not."""
    from progressivenn.model.train import LABEL_SMOOTHING_ANY_K, train

    torch.set_num_threads(1)
    ds = load_dataset("digits")
    for any_k, want in ((False, 0.0), (True, LABEL_SMOOTHING_ANY_K), (True, 0.0)):
        torch.manual_seed(0)
        net = build_net("digits", input_scale=ds.input_scale, input_shape=ds.input_shape,
                        num_classes=10)
        log = train(net, ds, epochs=1, any_k=any_k, max_steps=1, progress=False, test_limit=10,
                    **({"label_smoothing": 0.0} if any_k and want == 0.0 else {}))
        assert log["label_smoothing"] == want
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        train(net, ds, epochs=1, label_smoothing=1.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("clip_trained", [True, False])
def test_actquant_backward_is_autograd_of_its_formula(dtype, ties, clip_trained):
    """ActQuant's hand-written backward gives bitwise the gradients autograd gives on the formula
    ``round_half_up(min(relu(x), c) / s) * s`` (ties relu(x) == c included), and the same values."""
    import torch.nn.functional as F

    from progressivenn.model.bwb import ActQuant, round_half_up

    gen = torch.Generator().manual_seed(3)
    act = ActQuant(8).to(dtype)
    with torch.no_grad():
        act.clip.fill_(-2.7)                        # the formula uses |clip|
    act.clip.requires_grad_(clip_trained)
    x0 = torch.randn(8, 4, 9, 9, generator=gen, dtype=dtype) * 3
    if ties:
        x0.view(-1)[::5] = 2.7
    g = torch.randn(x0.shape, generator=gen, dtype=dtype)

    def formula(x):                                 # ActQuant.forward before the fused backward
        c = act.clip.abs().clamp(min=1e-6)
        y = torch.minimum(F.relu(x), c)
        s = c / act.levels
        return round_half_up(y / s) * s

    results = []
    for fn in (act, formula):
        act.clip.grad = None
        x = x0.clone().requires_grad_()
        out = fn(x)
        out.backward(g)
        results.append((out.detach(), x.grad, act.clip.grad))
    (o1, gx1, gc1), (o2, gx2, gc2) = results
    assert torch.equal(o1, o2) and torch.equal(gx1, gx2)
    assert (gc1 is None and gc2 is None) if not clip_trained else torch.equal(gc1, gc2)
    assert gx1.abs().sum() > 0 and (not clip_trained or gc1 != 0)


def test_eval_golden_in_chunks_is_the_golden_at_once(run_dir, monkeypatch):
    """evaluate(): the golden model over chunks of images, and the k=N fixed pass reused where
    the tables are the same, give the predictions of one golden call on every image."""
    from progressivenn import api
    from progressivenn.model import evaluate as ev

    run = api.load_run(run_dir)
    bundle = run.bundle(test_images=90)
    monkeypatch.setattr(ev, "GOLDEN_CHUNK", 7)
    for k in (1, 8):
        for tables in ("retrained", "fixed"):
            whole = golden.run_network(bundle, bundle.test_x, k, tables, "direct").pred.numpy()
            assert np.array_equal(ev._golden_preds(bundle, bundle.test_x, k, tables, "direct"),
                                  whole)
    for k in range(1, bundle.nbits + 1):
        if ev._same_tables(bundle, k):              # then the fixed pass is the retrained one
            assert torch.equal(golden.run_network(bundle, bundle.test_x, k, "fixed").logits,
                               golden.run_network(bundle, bundle.test_x, k, "retrained").logits)
    res = ev.evaluate(run.net, bundle)
    assert res["n_test"] == 90 and min(res["agreement"].values()) >= 0.9
