"""Residual networks end to end: torch (fake-quant) -> bundle (`input`, `add`) -> golden -> driver -> RTL.

Also the paper-scale path: ResNet-18 on a CIFAR-format folder written here (CIFAR-10 and CIFAR-100).
"""

import json
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bundles import have_simulator
from progressivenn.hw.isa import EngineConfig
from progressivenn.model import golden
from progressivenn.model.bundle import BundleError, load_bundle, save_bundle, validate_bundle
from progressivenn.model.bwb import planes
from progressivenn.model.fold import fold_network
from progressivenn.model.nets import AddBlock, ComputeBlock, build_net, resnet
from progressivenn.sim.compare import compare_outputs, golden_outputs
from progressivenn.sim.driver import infer
from progressivenn.sim.engine_model import ModelTransport

BUILD = Path(__file__).resolve().parent.parent / "build" / "test-sim"


def tiny_resnet(seed=0, nbits=8, abits=8, widths=(4, 6), blocks=(1, 1), shape=(1, 8, 8)):
    """A tiny residual net (identity and projection shortcuts) with random BN tables and clips, so
    that the two operands of every add have different scales."""
    torch.manual_seed(seed)
    net = resnet(widths, blocks, input_shape=shape, num_classes=5, nbits=nbits, abits=abits,
                 input_scale=1 / 255)
    g = torch.Generator().manual_seed(seed)
    for bn in net.bn_modules():
        for t in bn.tables:
            c = t.num_features
            t.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
            t.running_var.copy_(torch.rand(c, generator=g) + 0.05)
            t.weight.data.copy_(torch.randn(c, generator=g).abs() + 0.3)
            t.bias.data.copy_(torch.randn(c, generator=g) * 0.3 + 0.3)
    for st in net.stages:
        act = getattr(st, "act", None)
        if act is not None:
            act.clip.data.fill_(float(torch.rand(1, generator=g)) * 3 + 1.0)
    return net.eval()


def tiny_bundle(seed=0, n=16, **kw):
    net = tiny_resnet(seed, **kw)
    shape = net.input_shape
    x = np.random.default_rng(seed + 1).integers(0, 1 << net.abits, (n, *shape)).astype(np.uint8)
    return fold_network(net, test_x=x, test_y=np.arange(n) % 5, dataset="tiny-res"), net


def test_resnet_structure_has_identity_and_projection_shortcuts():
    b, net = tiny_bundle()
    kinds = [layer.kind for layer in b.layers]
    assert kinds.count("add") == 2
    adds = [layer for layer in b.layers if layer.kind == "add"]
    # the first add reads the stem directly (identity), the second a 1x1 projection conv
    assert b.layers[adds[0].inputs[1]].kind == "conv" and b.layers[adds[0].inputs[1]].kernel == (3, 3)
    proj = b.layers[adds[1].inputs[1]]
    assert proj.kernel == (1, 1) and proj.input is not None
    # the two operands have different scales: M differ
    assert any(a.add_m[0] != a.add_m[1] for a in adds)
    assert isinstance(net.stages[3], AddBlock) and isinstance(net.stages[0], ComputeBlock)
    for name in ("resnet8", "resnet20"):
        n = build_net(name, input_scale=1 / 255, input_shape=(1, 28, 28), num_classes=10)
        assert sum(isinstance(s, AddBlock) for s in n.stages) == (3 if name == "resnet8" else 9)


@pytest.mark.parametrize("k", [1, 4, 8])
def test_golden_matches_fake_quant_torch(k):
    """Every stage of the fake-quant torch net, fed the golden model's input codes (times their
    scale), gives the golden output codes within one code (rounding at a boundary), rarely; the
    whole nets agree on the predictions."""
    b, net = tiny_bundle(n=128)
    x = b.test_x
    r = golden.run_network(b, x, k)
    net = net.double()
    scales = {-1: net.input_scale}
    compared = 0
    with torch.no_grad(), planes(net, k):
        for i, (layer, st, src) in enumerate(zip(b.layers, net.stages, net.inputs)):
            def inp(j):
                codes = torch.from_numpy(x.astype(np.int64)) if j == -1 else r.outputs[j]
                return codes.double() * scales[j]
            if isinstance(st, AddBlock):
                t_out = st(inp(src[0]), inp(src[1]))
            else:
                t_out = st(inp(i - 1 if src is None else src))
            act = getattr(st, "act", None)
            if act is None:
                scales[i] = scales[i - 1 if src is None else src]
                continue
            scales[i] = float(act.scale())
            t_codes = torch.floor(t_out / act.scale().double() + 0.5).long()
            diff = (t_codes - r.outputs[i]).abs()
            assert int(diff.max()) <= 1, f"{layer.name}: golden and torch differ by more than 1"
            assert float((diff > 0).double().mean()) < 0.01, layer.name
            compared += 1
        logits = net(torch.from_numpy(x.astype(np.int64)))
    net.float()
    assert compared == sum(1 for layer in b.layers if layer.kind in ("conv", "add"))
    agree = float((r.pred == logits.argmax(1)).double().mean())
    assert agree >= 0.9
    # an add really is the integer rescaled sum of its operands
    for i, layer in enumerate(b.layers):
        if layer.kind == "add":
            a_, b_ = (r.outputs[j] for j in layer.inputs)
            z = a_ * layer.add_m[0] + b_ * layer.add_m[1]
            want = ((z + (1 << (layer.add_s - 1))) >> layer.add_s).clamp(0, 255)
            assert torch.equal(r.outputs[i], want)


def test_planes_and_direct_agree_and_bundle_round_trips(tmp_path):
    b, _ = tiny_bundle()
    save_bundle(b, tmp_path / "b")
    man = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert man["version"] == 1
    adds = [d for d in man["layers"] if d["kind"] == "add"]
    assert adds and all({"inputs", "M", "S", "relu"} <= set(d) for d in adds)
    assert any("input" in d for d in man["layers"])          # the projection branch
    b2 = load_bundle(tmp_path / "b")
    for k in (1, 8):
        p = golden.run_network(b2, b2.test_x, k, method="planes")
        d = golden.run_network(b, b.test_x, k, method="direct")
        assert torch.equal(p.logits, d.logits)


def test_plain_chains_write_no_new_keys(tmp_path):
    """A plain chain's manifest is byte-for-byte a v1 manifest: no `input`, no `add`."""
    from bundles import random_bundle
    save_bundle(random_bundle(), tmp_path / "b")
    man = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert all("input" not in d and "inputs" not in d for d in man["layers"])


def _edit(tmp_path, b, fn):
    save_bundle(b, tmp_path / "b")
    p = tmp_path / "b" / "manifest.json"
    man = json.loads(p.read_text())
    fn(man["layers"])
    p.write_text(json.dumps(man))
    return tmp_path / "b"


def _index_of(layers, kind, nth=0):
    return [i for i, d in enumerate(layers) if d["kind"] == kind][nth]


@pytest.mark.parametrize("edit,field", [
    (lambda L: L[_index_of(L, "add")].update(inputs=[0, 99]), r"layers\[3\]\.inputs\[1\]"),
    (lambda L: L[_index_of(L, "add")].update(inputs=[0]), r"layers\[3\]\.inputs"),
    (lambda L: L[_index_of(L, "add")].update(inputs=[0, "x"]), r"layers\[3\]\.inputs\[1\]"),
    (lambda L: L[_index_of(L, "add")].update(inputs=[-1, 0]), r"layers\[3\]\.inputs\[0\]"),
    (lambda L: L[6].update(input=9), r"layers\[6\]\.input"),
    (lambda L: L[6].update(input=-2), r"layers\[6\]\.input"),
    (lambda L: L[6].update(input=5), r"layers\[6\]\.in_shape"),
    (lambda L: L[1].update(inputs=[0, 0]), r"layers\[1\]\.inputs"),
    (lambda L: L[_index_of(L, "add")].update(M=[1]), r"layers\[3\]\.M"),
    (lambda L: L[_index_of(L, "add")].update(M=[1 << 40, 1]), r"layers\[3\]\.M\[0\]"),
    (lambda L: L[_index_of(L, "add")].update(S=99), r"layers\[3\]\.S"),
    (lambda L: L[_index_of(L, "add")].update(relu=False), r"layers\[3\]\.relu"),
    (lambda L: L[_index_of(L, "add")].pop("S"), r"layers\[3\]\.S"),
])
def test_loader_names_the_bad_field(tmp_path, edit, field):
    b, _ = tiny_bundle()
    assert b.layers[6].input == 3 and b.layers[3].kind == "add"   # the layout the edits assume
    with pytest.raises(BundleError, match=field):
        load_bundle(_edit(tmp_path, b, edit))


@pytest.mark.parametrize("rows,cols,wdepth,adepth", [(2, 4, 1024, 512), (3, 5, 128, 40)])
def test_driver_on_engine_model_matches_golden(rows, cols, wdepth, adepth):
    b, _ = tiny_bundle()
    cfg = EngineConfig(rows=rows, cols=cols, abits=8, nbits=8, max_reduction=64, wdepth=wdepth,
                       adepth=adepth, ppdepth=64)
    for k in range(1, 9):
        gold = golden_outputs(b, b.test_x[:2], k)
        for n in range(2):
            res = ModelTransport(cfg).run(infer(b, cfg, b.test_x[n], k, layer_counters=n == 1))
            cmp = compare_outputs(b, res.outputs, [g[n] for g in gold], k=k, image=n)
            assert cmp.mismatches == 0, cmp.first
            assert cmp.compared == sum(g[n].size for g in gold)
            if n == 1:
                assert set(res.layer_counters) == {i for i, l in enumerate(b.layers) if l.is_compute}


def test_driver_catches_a_wrong_add():
    """The comparison can fail: a bundle whose add scale differs from golden's is caught."""
    b, _ = tiny_bundle()
    cfg = EngineConfig(rows=2, cols=4, abits=8, nbits=8, max_reduction=64)
    gold = golden_outputs(b, b.test_x[:1], 8)
    i = next(i for i, l in enumerate(b.layers) if l.kind == "add")
    b.layers[i].add_m = (b.layers[i].add_m[0] + 5000, b.layers[i].add_m[1])
    res = ModelTransport(cfg).run(infer(b, cfg, b.test_x[0], 8))
    cmp = compare_outputs(b, res.outputs, [g[0] for g in gold], k=8, image=0)
    assert cmp.mismatches > 0 and cmp.first["layer"] == i


def test_cocotb_residual_network_k_1_4_8(tmp_path):
    """The generated Verilog (Verilator) runs a residual network: zero mismatches at k = 1, 4, 8."""
    from progressivenn.sim.runner import run_regression
    if not have_simulator("verilator"):
        pytest.fail("verilator is not installed (make setup installs it)")
    b, _ = tiny_bundle(n=2, shape=(1, 6, 6))
    save_bundle(b, tmp_path / "bundle")
    cfg = EngineConfig(rows=2, cols=8, abits=8, nbits=8, max_reduction=64, wdepth=128, adepth=64,
                       ppdepth=16, accdepth=32)
    rep = run_regression(tmp_path / "bundle", cfg, simulator="verilator", images=2, bits=[1, 4, 8],
                         stall=0.2, build_root=BUILD, reset_test=False)
    assert rep["failed_tests"] == [], rep
    assert rep["mismatches"] == 0, rep["first_mismatch"]
    per_image = sum(int(np.prod(l.out_shape)) for l in b.layers)
    assert rep["compared_values"] == per_image * 2 * 3
    for k in ("1", "4", "8"):
        assert rep["per_k"][k]["compute_cycles"] == rep["per_k"][k]["ideal_cycles"]


@pytest.mark.slow
def test_cocotb_trained_resnet8_digits(tmp_path):
    """A trained ResNet-8 on digits through the RTL at k = 1, 4, 8 (Verilator, 10 images)."""
    from progressivenn.model.bn_retrain import retrain_bn
    from progressivenn.model.data import load_dataset
    from progressivenn.model.train import train
    from progressivenn.sim.runner import run_regression
    ds = load_dataset("digits")
    torch.manual_seed(0)
    net = build_net("resnet8", input_scale=ds.input_scale, input_shape=ds.input_shape,
                    num_classes=10)
    fixed = build_net("resnet8", input_scale=ds.input_scale, input_shape=ds.input_shape,
                      num_classes=10)
    train(net, ds, epochs=3, progress=False)
    fixed.load_state_dict(net.state_dict())
    retrain_bn(net, ds, progress=False)
    b = fold_network(net, fixed_net=fixed.eval(), test_x=ds.test_x[:10], test_y=ds.test_y[:10],
                     dataset="digits")
    save_bundle(b, tmp_path / "bundle")
    cfg = EngineConfig(abits=8, nbits=8)
    rep = run_regression(tmp_path / "bundle", cfg, simulator="verilator", images=10,
                         bits=[1, 4, 8], build_root=BUILD, reset_test=False)
    assert rep["mismatches"] == 0, rep["first_mismatch"]
    assert rep["per_k"]["8"]["correct"] >= 8


# ---- paper-scale path: ResNet-18 on CIFAR-format folders ---------------------------------------

def write_cifar(folder: Path, kind: str, n_train=8, n_test=4, seed=0):
    """A tiny folder in the standard CIFAR python format (random pixels)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)

    def dump(name, n, key, classes):
        d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             key: [int(v) for v in rng.integers(0, classes, n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(d, f)

    if kind == "cifar100":
        dump("train", n_train, b"fine_labels", 100)
        dump("test", n_test, b"fine_labels", 100)
    else:
        for i in range(1, 6):
            dump(f"data_batch_{i}", n_train, b"labels", 10)
        dump("test_batch", n_test, b"labels", 10)


def test_cifar100_loader(tmp_path):
    from progressivenn.model.data import load_dataset
    write_cifar(tmp_path / "cifar-100-python", "cifar100")
    ds = load_dataset("cifar100", tmp_path)
    assert ds.num_classes == 100 and ds.train_x.shape == (8, 3, 32, 32) and ds.test_x.shape[0] == 4
    assert ds.train_x.dtype == np.uint8 and ds.train_y.max() < 100
    (tmp_path / "cifar-100-python" / "test").unlink()
    with pytest.raises(FileNotFoundError, match="test"):
        load_dataset("cifar100", tmp_path)


@pytest.mark.parametrize("dataset", ["cifar100", "cifar10"])
def test_resnet18_trains_one_step_on_cpu(tmp_path, dataset):
    from progressivenn.cli import main
    write_cifar(tmp_path / "data", dataset, n_train=4, n_test=2)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rc = main(["train", "--arch", "resnet18", "--dataset", dataset, "--data-dir",
               str(tmp_path / "data"), "--epochs", "1", "--limit", "4", "--batch-size", "4",
               "--device", "auto", "--quiet", "--out", str(tmp_path / "run")])
    assert rc == 0
    assert time.perf_counter() - t0 < 60
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["arch"] == "resnet18" and cfg["num_classes"] == (100 if dataset == "cifar100" else 10)
    log = json.loads((tmp_path / "run" / "train.json").read_text())
    assert log["augment"] is True and np.isfinite(log["epochs"][0]["loss"])
    from progressivenn.model.runs import load_trained
    net = load_trained(tmp_path / "run")   # the checkpoint rebuilds from the config
    assert net.num_classes == cfg["num_classes"]


def test_device_selection():
    from progressivenn.model.train import pick_device
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            pick_device("cuda")
    with pytest.raises(ValueError, match="device must be"):
        pick_device("tpu")
