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


# ---- resident mode: graph inputs and the ADD unit on chip ---------------------------------------

def _resident_cfg(rows=2, cols=4, nbits=2, **kw):
    from progressivenn.hw.resident import ResidentConfig
    base = dict(rows=rows, cols=cols, nbits=nbits, abits=8, wdepth=1024, ppdepth=128,
                fmdepth=512, taps=min(cols, 9), tapdepth=256, adds=True)
    base.update(kw)
    return ResidentConfig(**base)


def _resident_every_k(b, cfg, ks=None):
    """The residual bundle ``b`` in the resident engine (Amaranth) at every k: every layer read
    back and compared with golden (the adds and the projection branch included), busy counters
    against the cycle model."""
    from test_resident import check_all, fused
    from progressivenn.sim import resident as rs
    prog = rs.compile_program(b, cfg)
    adds = [pl for pl in prog.layers if pl.kind == "add"]
    assert len(adds) == sum(layer.kind == "add" for layer in b.layers) > 0
    ks = ks or list(range(1, b.nbits + 1))
    res = rs.run_amaranth(prog, b.test_x, ks)
    check_all(b, prog, res, ks, fused=fused(prog))
    for per_k in res:
        got = rs.layer_outputs(b, prog, per_k[0])
        assert all(got[pl.index] is not None for pl in adds)       # the adds were compared
    return prog, res


def test_resident_residual_net_every_k():
    """Issue #11: a residual net (identity and projection shortcuts, a branch reading an add)
    runs on chip: 3 channels on C=4 lanes (a word's lanes past the channel count stay 0),
    C/R = 2 groups per word; every layer at every k equals golden."""
    b, _ = tiny_bundle(n=1, nbits=2, widths=(2, 3), shape=(1, 6, 6))
    prog, res = _resident_every_k(b, _resident_cfg())
    conv6 = next(pl for pl in prog.layers if pl.name == "conv6")
    add1 = next(pl for pl in prog.layers if pl.name == "add1")
    assert b.layers[conv6.index].input == add1.index            # the branch reads add1's region
    assert conv6.desc["win0"] == add1.out_base
    assert [pl.busy(1) for pl in prog.layers if pl.kind == "add"] == [36 * 2, 9 * 2]


@pytest.mark.slow
@pytest.mark.parametrize("rows,cols,nbits", [(4, 4, 3), (2, 8, 3), (8, 16, 8)],
                         ids=["C/R=1", "C/R=4", "default-R8-C16-N8"])
def test_resident_residual_net_configs(rows, cols, nbits):
    """The ADD unit at C/R = 1 (two taps, one group), 4 (four taps per word) and the default
    array (R=8, C=16, N=8, tap banks) at every k."""
    b, _ = tiny_bundle(n=1, nbits=nbits)
    cfg = _resident_cfg(rows, cols, nbits) if rows != 8 else _resident_cfg(
        rows, cols, nbits, wdepth=4096, ppdepth=256, fmdepth=2048, tapdepth=1024)
    _resident_every_k(b, cfg)


def test_resident_graph_compile():
    """Compile-time graph handling: the ADD descriptor (operand b at ``rowstride``, gated taps
    past it), a later reader of the image turns the tap banks off, a pool is not fused into a
    convolution something else reads, and what the engine cannot run is refused in one line."""
    import dataclasses
    from progressivenn.sim import resident as rs
    b, _ = tiny_bundle(n=1, nbits=2, widths=(2, 3), shape=(1, 6, 6))
    cfg = _resident_cfg(cols=4, taps=4)
    prog = rs.compile_program(b, cfg)
    by_name = {pl.name: pl for pl in prog.layers}
    add2 = by_name["add2"]
    a, bb = (prog.layers[[pl.index for pl in prog.layers].index(j)] for j in b.layers[
        add2.index].inputs)
    d = add2.desc
    assert d["win0"] == a.out_base and (a.out_base + d["rowstride"]) % 512 == bb.out_base
    assert (d["add"], d["add_ma"], d["add_mb"], d["add_s"]) == (
        1, *b.layers[add2.index].add_m, b.layers[add2.index].add_s)
    assert d["kh"] == 2 and d["in_h"] == d["out_h"] + 1 and d["ngroups"] == 1
    assert all(pl.desc["add"] == 0 for pl in prog.layers if pl.kind != "add")
    # a later layer reads the image: no tap banks, the image keeps its feature-map region
    cfg9 = _resident_cfg(cols=16, rows=2, taps=9)
    assert rs.compile_program(b, cfg9).taps
    b2 = dataclasses.replace(b, layers=list(b.layers))
    b2.layers[6] = dataclasses.replace(b.layers[6], input=-1, in_shape=(1, 6, 6),
                                       codes=b.layers[6].codes[:, :1])
    prog2 = rs.compile_program(b2, cfg9)
    assert not prog2.taps and prog2.layers[6].desc["win0"] == 0
    # the stem conv read by its pool and by a branch: not fused
    from test_resident import chain_bundle
    c = chain_bundle(0, [("conv", 3, (3, 3), (1, 1), (1, 1)), ("pool", (2, 2), (2, 2)),
                         ("conv", 3, (1, 1), (1, 1), (0, 0)), ("flatten",), ("linear", 2)],
                     input_shape=(2, 4, 4), nbits=2)
    assert [pl.name for pl in rs.compile_program(c, cfg).layers][0] == "conv0+pool1"
    c.layers[2] = dataclasses.replace(c.layers[2], input=0, in_shape=(3, 4, 4),
                                      out_shape=(3, 4, 4))
    c.layers[3] = dataclasses.replace(c.layers[3], in_shape=(3, 4, 4), out_shape=(48,))
    c.layers[4] = dataclasses.replace(c.layers[4], in_shape=(48,),
                                      codes=np.zeros((2, 48), dtype=np.int64))
    assert [pl.name for pl in rs.compile_program(c, cfg).layers][:2] == ["conv0", "pool1"]
    with pytest.raises(rs.ResidentFitError, match=r"^resident: layers\[3\] \(add1\): a residual "
                       r"add needs the engine's ADD unit \(ResidentConfig\(adds=True\)\)$"):
        rs.compile_program(b, dataclasses.replace(cfg, adds=False))
    with pytest.raises(rs.ResidentFitError, match=r"reads the image: not with a double"):
        rs.compile_program(b2, dataclasses.replace(cfg9, double_buffer=True))


def test_resnet8_mnist_does_not_fit_the_default_weight_memory():
    """ResNet-8 on the MNIST shape in the default resident configuration (with the ADD unit):
    feature maps and program fit; the weights and the tables do not (the fit check says by how
    much); with 8,192 weight words and 512 table entries it fits."""
    from progressivenn.hw.resident import ResidentConfig
    from progressivenn.sim import resident as rs
    net = build_net("resnet8", input_scale=1 / 255, input_shape=(1, 28, 28), num_classes=10)
    x = np.zeros((1, 1, 28, 28), dtype=np.uint8)
    b = fold_network(net.eval(), test_x=x, test_y=np.zeros(1, dtype=np.int64), dataset="mnist")
    with pytest.raises(rs.ResidentFitError,
                       match=r"^resident: weight memory needs 5,040 words, 4,096 available$"):
        rs.compile_program(b, ResidentConfig(adds=True))
    with pytest.raises(rs.ResidentFitError,
                       match=r"^resident: post-processing memory needs 352 words, 256 available$"):
        rs.compile_program(b, ResidentConfig(adds=True, wdepth=8192))
    prog = rs.compile_program(b, ResidentConfig(adds=True, wdepth=8192, ppdepth=512))
    assert prog.usage["feature-map memory"] == (1448, 2048)
    assert prog.usage["program memory"] == (14, 16)
    assert [pl.name for pl in prog.layers if pl.kind == "add"] == ["add1", "add2", "add3"]


@pytest.mark.slow
@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_resident_residual_net_verilog(tmp_path, sim):
    """The generated Verilog of an engine with the ADD unit (cocotb): the residual net at every
    k with random idle cycles and back-pressure (0.3), every layer read back and compared with
    golden, busy counters equal to the model; a reset in the middle of an image."""
    from progressivenn.sim.resident_runner import resident_config, run_resident_cocotb
    if not have_simulator(sim):
        pytest.skip(f"{sim} is not installed (make setup)")
    b, _ = tiny_bundle(n=2, nbits=3, widths=(2, 3), shape=(1, 6, 6))
    save_bundle(b, tmp_path / "bundle")
    cfg = _resident_cfg(rows=2, cols=4, nbits=3)
    assert resident_config(rows=2, cols=4, bundle=b).adds
    rep = run_resident_cocotb(tmp_path / "bundle", cfg, simulator=sim, bits=[1, 2, 3], images=2,
                              stall=0.3, build_root=tmp_path / "builds")
    assert rep["failed_tests"] == [], rep["sim_log"]
    assert rep["mismatches"] == 0, rep["first_mismatch"]
    per_image = sum(int(np.prod(layer.out_shape)) for layer in b.layers)
    for k in ("1", "2", "3"):
        assert rep["per_k"][k]["compared"] == 2 * per_image
        assert "busy_model_differs" not in rep["per_k"][k]


@pytest.mark.slow
def test_resnet8_mnist_shape_verilator(tmp_path):
    """ResNet-8 on the MNIST shape (random weights, BN and clips) with the weight and table
    memories it needs (8,192 words, 512 entries; the default 4,096 / 256 do not hold it), the
    generated Verilog on Verilator at k = 1 and 8: every layer read back, 0 mismatches."""
    from progressivenn.hw.resident import ResidentConfig
    from progressivenn.sim.resident_runner import run_resident_cocotb
    if not have_simulator("verilator"):
        pytest.skip("verilator is not installed (make setup)")
    b, _ = tiny_bundle(n=1, widths=(16, 32, 64), blocks=(1, 1, 1), shape=(1, 28, 28))
    assert sum(layer.kind == "add" for layer in b.layers) == 3
    save_bundle(b, tmp_path / "bundle")
    cfg = ResidentConfig(adds=True, wdepth=8192, ppdepth=512)
    rep = run_resident_cocotb(tmp_path / "bundle", cfg, simulator="verilator", bits=[1, 8],
                              images=1, stall=0.0, reset_test=False,
                              build_root=tmp_path / "builds")
    assert rep["failed_tests"] == [], rep["sim_log"]
    assert rep["mismatches"] == 0, rep["first_mismatch"]
    per_image = sum(int(np.prod(layer.out_shape)) for layer in b.layers
                    if layer.kind != "conv" or layer.name != "conv1")   # conv1: pool fused
    for k in ("1", "8"):
        assert rep["per_k"][k]["compared"] == per_image
        assert "busy_model_differs" not in rep["per_k"][k]
