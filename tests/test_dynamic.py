"""Dynamic bit-precision: clips, policies, exact cost accounting, progressive continuation.

Continuation on the engine is checked against the golden model with the Python reading of the
engine spec (fast) and, marked ``slow``, with the Amaranth simulation and cocotb on the Verilog.
"""

import json
import shutil

import numpy as np
import pytest

from bundles import random_bundle
from progressivenn.cli import main as pnn_main
from progressivenn.hw.isa import EngineConfig
from progressivenn.model import dynamic as dyn
from progressivenn.model.bundle import save_bundle
from progressivenn.model.clips import ClipError, ClipParams, Clips, load_sequence, make_clips
from progressivenn.sim.compare import compare_outputs, golden_outputs
from progressivenn.sim.engine_model import ModelTransport
from progressivenn.sim.progressive import (ProgressiveFrame, cost_model, first_layer_continues,
                                           run_clip)
from progressivenn.sim.transport import drive

CFG = EngineConfig(rows=2, cols=4, abits=8, nbits=4, max_reduction=64, wdepth=256, adepth=256,
                   ppdepth=32, accdepth=128)


# ---- clips ---------------------------------------------------------------------------------------

def _stills(n=6, shape=(1, 8, 8), seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, *shape)).astype(np.uint8), np.arange(n) % 3


def test_clips_are_deterministic_integer_codes():
    x, y = _stills()
    a = make_clips(x, y, n_clips=4, n_frames=7, seed=5)
    b = make_clips(x, y, n_clips=4, n_frames=7, seed=5)
    c = make_clips(x, y, n_clips=4, n_frames=7, seed=6)
    assert a.frames.shape == (4, 7, 1, 8, 8) and a.frames.dtype == np.uint8
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.frames, c.frames)
    assert a.frames.min() >= 0 and a.frames.max() <= 255
    assert np.array_equal(a.labels, np.repeat(y[a.sources][:, None], 7, axis=1))
    assert a.meta["synthetic"] is True and "synthetic" in a.meta["note"]
    # neighbouring frames resemble each other more than frames of different clips
    d = lambda u, v: np.abs(u.astype(int) - v.astype(int)).mean()  # noqa: E731
    near = np.mean([d(a.frames[i, t], a.frames[i, t + 1]) for i in range(4) for t in range(6)])
    far = np.mean([d(a.frames[0, t], a.frames[1, t]) for t in range(7)]
                  + [d(a.frames[2, t], a.frames[3, t]) for t in range(7)])
    assert a.sources[0] != a.sources[1] or a.sources[2] != a.sources[3]
    assert near < far


def test_clips_respect_abits_sources_and_occlusion():
    x, y = _stills()
    x6 = (x >> 2).astype(np.uint8)           # 6-bit codes
    a = make_clips(x6, y, n_clips=3, n_frames=40, seed=1, abits=6, sources=[2, 4],
                   params=ClipParams(occlusion_rate=0.5))
    assert a.frames.max() <= 63
    assert set(a.sources.tolist()) <= {2, 4}
    assert a.occluded.any()
    # no motion, no noise, no occlusion: every frame is its still image
    still = make_clips(x, y, n_clips=2, n_frames=3, seed=0,
                       params=ClipParams(shift=0, rotate=0, scale=0, brightness=0, noise=0,
                                         occlusion_rate=0))
    for c in range(2):
        assert all(np.array_equal(f, x[still.sources[c]]) for f in still.frames[c])


@pytest.mark.parametrize("bad,match", [
    (dict(images=np.zeros((2, 1, 4, 4))), "integer activation codes"),
    (dict(images=np.full((2, 1, 4, 4), 300, np.int64)), "outside"),
    (dict(images=np.zeros((2, 4, 4), np.uint8)), r"\[n, C, H, W\]"),
    (dict(labels=np.zeros(3, np.int64)), "labels"),
    (dict(n_clips=0), "n_clips"),
    (dict(sources=[7]), "sources"),
    (dict(params=ClipParams(damping=1.5)), "damping"),
    (dict(params=ClipParams(noise=-1)), "noise"),
])
def test_clips_refuse_bad_inputs(bad, match):
    kw = dict(images=np.zeros((2, 1, 4, 4), np.uint8), labels=np.zeros(2, np.int64))
    kw.update(bad)
    with pytest.raises(ClipError, match=match):
        make_clips(kw.pop("images"), kw.pop("labels"), **kw)


def test_load_sequence_layouts(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(5, 1, 6, 6)).astype(np.uint8)
    labels = np.array([0, 0, 1, 1, 2])
    kw = dict(input_shape=(1, 6, 6), abits=8, num_classes=3)
    np.savez(tmp_path / "seq.npz", frames=frames, labels=labels)
    np.savez(tmp_path / "seq_hw.npz", frames=frames[:, 0], labels=labels)   # [T, H, W]
    for name in ("seq.npz", "seq_hw.npz"):
        s = load_sequence(tmp_path / name, **kw)
        assert s.frames.shape == (1, 5, 1, 6, 6) and np.array_equal(s.frames[0], frames)
        assert np.array_equal(s.labels[0], labels) and s.meta["synthetic"] is False
    d = tmp_path / "npy"
    d.mkdir()
    for t in range(5):
        np.save(d / f"frame{t * 5}.npy", frames[t])   # natural order: frame5 after frame0
    (d / "labels.txt").write_text("\n".join(map(str, labels)))
    s = load_sequence(d, **kw)
    assert np.array_equal(s.frames[0], frames) and np.array_equal(s.labels[0], labels)
    d2 = tmp_path / "npz"
    d2.mkdir()
    for t in range(5):
        np.savez(d2 / f"f{t:03d}.npz", frame=frames[t, 0], label=labels[t])
    s = load_sequence(d2, **kw)
    assert np.array_equal(s.frames[0], frames) and np.array_equal(s.labels[0], labels)


def test_load_sequence_refuses_bad_files(tmp_path):
    kw = dict(input_shape=(1, 6, 6), abits=8, num_classes=3)
    ok = np.zeros((4, 1, 6, 6), np.uint8)

    def npz(name, **arrays):
        np.savez(tmp_path / name, **arrays)
        return tmp_path / name

    cases = [
        (npz("shape.npz", frames=np.zeros((4, 1, 5, 6), np.uint8), labels=np.zeros(4, int)),
         "frames shape"),
        (npz("range.npz", frames=ok.astype(np.int64) + 300, labels=np.zeros(4, int)), "outside"),
        (npz("float.npz", frames=ok.astype(float), labels=np.zeros(4, int)), "integer"),
        (npz("nolab.npz", frames=ok), "missing array 'labels'"),
        (npz("count.npz", frames=ok, labels=np.zeros(3, int)), "3 labels for 4 frames"),
        (npz("class.npz", frames=ok, labels=np.array([0, 1, 2, 3])), "label 3 outside"),
        (tmp_path / "none.npz", "no such file"),
    ]
    (tmp_path / "x.txt").write_text("hi")
    cases.append((tmp_path / "x.txt", "must be an .npz"))
    empty = tmp_path / "empty"
    empty.mkdir()
    cases.append((empty, "no .npy or .npz"))
    nolabels = tmp_path / "nolabels"
    nolabels.mkdir()
    np.save(nolabels / "a.npy", ok[0])
    cases.append((nolabels, "no labels"))
    for path, match in cases:
        with pytest.raises(ClipError, match=match):
            load_sequence(path, **kw)


# ---- cost and policies ---------------------------------------------------------------------------

def test_cost_model_counts_recomputation_honestly():
    cm = dyn.CostModel(cycles=(128, 576, 16), passes=(128, 64, 2), continuation=True)
    assert cm.plane_cycles == 720
    for k in range(1, 9):
        assert cm.frame_cycles((k,)) == 720 * k
    # 1 -> 2: first layer 2 planes (continued), later layers 1 + 2 planes (recomputed)
    assert cm.layer_planes((1, 2)) == [2, 3, 3]
    assert cm.frame_cycles((1, 2)) == 128 * 2 + (576 + 16) * 3
    assert cm.frame_passes((1, 2, 4)) == 128 * 4 + (64 + 2) * 7
    no = dyn.CostModel(cycles=(128, 576, 16), passes=(128, 64, 2), continuation=False)
    assert no.frame_cycles((1, 2)) == 720 * 3
    with pytest.raises(ValueError, match="increasing"):
        cm.frame_cycles((2, 2))
    with pytest.raises(ValueError):
        dyn.CostModel(cycles=(0,), passes=(1,))


def _table(margins_by_k, preds_by_k, labels):
    """A LogitTable whose frame (c, t) at k has the given prediction and margin (3 classes)."""
    m = np.asarray(margins_by_k)
    p = np.asarray(preds_by_k)
    n, c, t = m.shape
    lg = np.zeros((n, c, t, 3), np.int64)
    for idx in np.ndindex(n, c, t):
        lg[idx][p[idx]] = 100 + m[idx]
        lg[idx][(p[idx] + 1) % 3] = 100
    return dyn.LogitTable(lg, np.asarray(labels))


def test_confidence_is_integer_margin():
    assert dyn.confidence([3, 9, 4]) == (1, 5)
    assert dyn.confidence([7, 7, 1]) == (0, 0)       # tie: lowest index, margin 0
    tab = _table([[[5, 0]]], [[[2, 1]]], [[2, 1]])
    assert tab.pred.tolist() == [[[2, 1]]] and tab.margin.tolist() == [[[5, 0]]]


def test_calibration_gates():
    # k=1: margins 1..6, right only for margins >= 4 -> target 1000 needs margin 4
    m = np.array([[1, 2, 3, 4, 5, 6]])
    ok = np.array([[0, 1, 0, 1, 1, 1]], bool)
    cal = dyn.Calibration(m, ok)
    assert cal.gate(1, 1000) == 4
    assert cal.gate(1, 750) == 2          # {2..6}: 4/5 = 800 >= 750, and every band above passes
    assert cal.gate(1, 0) == 0
    g = cal.export([750, 1000])
    assert dyn.GateTable.from_json(json.loads(json.dumps(g.to_json()))).gate(1, 1000) == 4
    with pytest.raises(KeyError, match="no gate"):
        g.gate(1, 900)


def test_policies_walk_and_cost_exactly():
    # 2 clips x 3 frames, N=4; gate(k, 900) = 10 at every k
    gates = dyn.GateTable({k: {900: 10, 0: 0, 950: 20, 700: 5, 1000: 30} for k in range(1, 5)})
    margins = np.zeros((4, 2, 3), int)
    margins[0] = [[12, 3, 3], [25, 0, 0]]      # k=1
    margins[1] = [[12, 8, 11], [25, 9, 6]]     # k=2
    margins[2] = [[12, 12, 11], [25, 9, 6]]    # k=3
    margins[3] = [[40, 40, 40], [40, 40, 40]]  # k=4
    preds = np.zeros((4, 2, 3), int)
    labels = np.zeros((2, 3), int)
    tab = _table(margins, preds, labels)
    cost = dyn.CostModel(cycles=(10, 100), passes=(5, 1), continuation=True)
    esc = dyn.EscalatePolicy(4, gates, 900, levels=(1, 2, 4))
    paths, _ = dyn.run_policy(esc, tab)
    assert paths == [(1,), (1, 2, 4), (1, 2), (1,), (1, 2, 4), (1, 2, 4)]
    r = dyn.evaluate(esc, tab, cost)
    exp = sum(cost.frame_cycles(p) for p in paths)
    assert r["avg_cycles"] == exp / 6 and r["avg_planes"] == exp / (6 * 110)
    assert r["escalations"] == 7 and r["accuracy"] == 1.0
    tmp = dyn.TemporalPolicy(4, gates, 900, k_init=2, hysteresis=2000)   # down needs t=950
    paths, _ = dyn.run_policy(tmp, tab)
    # clip 0: k=2 m=12 (ok, < 20) stay; k=2 m=8 up; k=3 m=11 stay
    # clip 1: k=2 m=25 down; k=1 m=0 up; k=2 m=6 up
    assert paths == [(2,), (2,), (3,), (2,), (1,), (2,)]
    hyb = dyn.HybridPolicy(4, gates, 900, levels=(1, 2, 3, 4), agree=3000, hysteresis=2000)
    paths, _ = dyn.run_policy(hyb, tab)   # t_agree = 700 (gate 5), t_down = 950 (gate 20)
    # clip 0: k=1 m=12 ok (not > 20: start stays 1); k=1 m=3 agree but < 5 -> 2 (m=8 agrees, >=5)
    # -> escalated, next start 2; k=2 m=11 ok
    # clip 1: k=1 m=25 ok and >= 20 (start stays at the lowest); k=1 m=0 -> 2: m=9 agree ok ->
    # next start 2; k=2 m=6 agree ok
    assert paths == [(1,), (1, 2), (2,), (1,), (1, 2), (2,)]
    assert hyb.targets() == {900, 700, 950}


def test_policies_refuse_bad_settings():
    gates = dyn.GateTable({k: {0: 0} for k in range(1, 5)})
    with pytest.raises(ValueError, match="threshold"):
        dyn.EscalatePolicy(4, gates, 1001)
    with pytest.raises(ValueError, match="threshold"):
        dyn.EscalatePolicy(4, gates, 0.5)
    with pytest.raises(ValueError, match="levels"):
        dyn.EscalatePolicy(4, gates, 0, levels=(2, 1))
    with pytest.raises(ValueError, match="levels"):
        dyn.HybridPolicy(4, gates, 0, levels=(1, 5))
    with pytest.raises(ValueError, match="gates for N=4"):
        dyn.EscalatePolicy(8, gates, 0)
    with pytest.raises(ValueError, match="unknown policy"):
        dyn.make_policy("oracle", 4, gates, 0)
    with pytest.raises(ValueError, match="k_min"):
        dyn.TemporalPolicy(4, gates, 0, k_min=3, k_init=2)
    with pytest.raises(TypeError, match="integers"):
        dyn.LogitTable(np.zeros((1, 1, 1, 3)), np.zeros((1, 1), int))


def test_fixed_curve_and_interpolation():
    fixed = {"1": 0.5, "2": 0.8, "3": 0.9}
    assert dyn.interp_fixed(fixed, 2.0) == 0.8
    assert abs(dyn.interp_fixed(fixed, 2.5) - 0.85) < 1e-12
    assert dyn.interp_fixed(fixed, 7) == 0.9
    assert np.isnan(dyn.interp_fixed(fixed, 0.5))


# ---- progressive continuation on the engine ------------------------------------------------------

def _check_frame(bundle, cfg, transport, img, path):
    frame = ProgressiveFrame(bundle, cfg, bundle.test_x[img])
    cost = cost_model(bundle, cfg)
    for i, k in enumerate(path):
        res = transport.run(frame.run(k))
        gold = golden_outputs(bundle, bundle.test_x[img:img + 1], k)
        cmp = compare_outputs(bundle, res.outputs, [g[0] for g in gold], k=k, image=img)
        assert cmp.mismatches == 0, cmp.first
        assert res.continued == (i > 0 and frame.continues)
        assert res.path == tuple(path[:i + 1])
        assert res.ideal_cycles == cost.frame_cycles(path[:i + 1])
    return frame


@pytest.mark.parametrize("rows,cols", [(2, 4), (3, 5), (8, 16)])
def test_continuation_equals_fresh_run_model(rows, cols):
    b = random_bundle(seed=rows + cols, nbits=4)
    cfg = EngineConfig(rows=rows, cols=cols, abits=8, nbits=4, max_reduction=64, wdepth=256,
                       adepth=256, ppdepth=32, accdepth=128)
    t = ModelTransport(cfg)
    for path in [(1, 2, 3, 4), (2, 4), (1, 3), (3,)]:
        frame = _check_frame(b, cfg, t, 1, path)
        assert frame.continues and frame.reason is None


def test_continuation_falls_back_to_recompute_when_first_layer_does_not_fit():
    b = random_bundle(seed=1, nbits=4)
    cfg = EngineConfig(rows=2, cols=4, abits=8, nbits=4, max_reduction=64, accdepth=16)
    reason = first_layer_continues(b, cfg, __import__("progressivenn.sim.driver",
                                                      fromlist=["x"]).check_fits(b, cfg))
    assert reason and "accdepth=16" in reason and "recomputed" in reason
    assert cost_model(b, cfg).continuation is False
    frame = _check_frame(b, cfg, ModelTransport(cfg), 0, (1, 3, 4))
    assert not frame.continues


def test_continuation_uses_saved_accumulators():
    """The continued RUN starts at k_start (the engine adds planes to what it saved): if the
    saved accumulators were lost, the result would be wrong."""
    b = random_bundle(seed=2, nbits=4)
    t = ModelTransport(CFG)
    frame = ProgressiveFrame(b, CFG, b.test_x[0])
    t.run(frame.run(2))
    for acc in t.model.accmem:         # wipe what the engine saved
        acc[:] = [0] * len(acc)
    res = t.run(frame.run(3))
    gold = golden_outputs(b, b.test_x[:1], 3)
    assert compare_outputs(b, res.outputs, [g[0] for g in gold], k=3, image=0).mismatches > 0


def test_progressive_refuses_bad_requests():
    b = random_bundle(seed=0, nbits=4)
    frame = ProgressiveFrame(b, CFG, b.test_x[0])
    model = ModelTransport(CFG).model
    drive(frame.run(2), lambda ex: model.execute(ex.cmds, ex.data))
    with pytest.raises(ValueError, match="more planes only"):
        next(frame.run(2))
    with pytest.raises(ValueError, match="k must be"):
        next(frame.run(5))
    with pytest.raises(ValueError, match="image shape"):
        ProgressiveFrame(b, CFG, b.test_x[0][:, :3])
    with pytest.raises(ValueError, match="integer activation codes"):
        ProgressiveFrame(b, CFG, b.test_x[0].astype(float))


def _clip_table(b, frames, labels):
    clips = Clips(frames=frames[None], labels=labels[None], occluded=np.zeros((1, len(frames)),
                  bool), sources=np.array([-1]))
    return dyn.golden_logits(b, clips)


def test_policy_on_engine_model_matches_golden_policy():
    b = random_bundle(seed=4, nbits=4, images=6)
    x = make_clips(b.test_x, b.test_y, n_clips=1, n_frames=6, seed=0)
    tab = _clip_table(b, x.frames[0], x.labels[0])
    cal = dyn.Calibration.from_table(tab)
    cost = cost_model(b, CFG)
    for name, t in [("escalate", 900), ("hybrid", 950), ("temporal", 800)]:
        pol = dyn.make_policy(name, 4, cal, t)
        paths, preds = dyn.run_policy(pol, tab)
        res = ModelTransport(CFG).run(run_clip(b, CFG, x.frames[0], pol))
        assert [r.path for r in res] == paths
        assert [r.pred for r in res] == preds
        assert [r.ideal_cycles for r in res] == [cost.frame_cycles(p) for p in paths]
        for t, (r, p) in enumerate(zip(res, paths)):
            assert r.logits.tolist() == tab.logits[p[-1] - 1, 0, t].tolist()


# ---- the command ---------------------------------------------------------------------------------

def test_pnn_dynamic_json(tmp_path, capsys):
    b = random_bundle(seed=5, nbits=4, images=8)
    save_bundle(b, tmp_path / "b")
    rc = pnn_main(["dynamic", str(tmp_path / "b"), "--clips", "3", "--frames", "4",
                   "--thresholds", "0,800,1000", "--json", "--rows", "2", "--cols", "4",
                   "--plot", str(tmp_path / "p.png")])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["fixed"]) == {"1", "2", "3", "4"}
    assert len(out["policies"]) == 9
    for p in out["policies"]:
        assert {"name", "threshold", "avg_planes", "accuracy", "avg_cycles"} <= set(p)
        assert p["avg_planes"] >= 1
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert out["clips"]["synthetic"] is True


def test_pnn_dynamic_on_a_user_sequence(tmp_path, capsys):
    b = random_bundle(seed=5, nbits=4, images=8)
    save_bundle(b, tmp_path / "b")
    sel = [0, 0, 1, 1, 2]
    np.savez(tmp_path / "seq.npz", frames=b.test_x[sel], labels=b.test_y[sel])
    rc = pnn_main(["dynamic", str(tmp_path / "b"), "--sequence", str(tmp_path / "seq.npz"),
                   "--clips", "2", "--frames", "4", "--thresholds", "0,900", "--policy", "hybrid",
                   "--json", "--rows", "2", "--cols", "4"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["clips"]["synthetic"] is False and out["clips"]["n_frames"] == 5
    assert [p["name"] for p in out["policies"]] == ["hybrid", "hybrid"]


def test_pnn_dynamic_bad_arguments(tmp_path, capsys):
    b = random_bundle(seed=5, nbits=4, images=8)
    save_bundle(b, tmp_path / "b")
    for extra, msg in [(["--policy", "oracle"], "unknown policy"),
                       (["--thresholds", "a,b"], "--thresholds"),
                       (["--thresholds", "1200"], "per-mille"),
                       (["--clips", "0"], "--clips"),
                       (["--sequence", str(tmp_path / "nope.npz")], "no such file")]:
        assert pnn_main(["dynamic", str(tmp_path / "b"), *extra]) == 2
        assert msg in capsys.readouterr().err


# ---- RTL ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_continuation_on_amaranth_engine():
    from progressivenn.sim.transport import AmaranthTransport

    b = random_bundle(seed=6, nbits=4, images=2, input_shape=(2, 4, 4))
    cfg = EngineConfig(rows=2, cols=4, abits=8, nbits=4, max_reduction=64, wdepth=128, adepth=96,
                       ppdepth=16, accdepth=48)

    def gen():
        out = []
        frame = ProgressiveFrame(b, cfg, b.test_x[0])
        for k in (1, 3, 4):
            out.append((yield from frame.run(k)))
        return out

    results = AmaranthTransport(cfg, stall=0.2, seed=1).run(gen())
    cost = cost_model(b, cfg)
    assert cost.continuation
    for res in results:
        gold = golden_outputs(b, b.test_x[:1], res.k)
        cmp = compare_outputs(b, res.outputs, [g[0] for g in gold], k=res.k, image=0)
        assert cmp.mismatches == 0, cmp.first
        assert res.counters["busy"] == res.ideal_cycles == cost.frame_cycles(res.path)
    assert [r.continued for r in results] == [False, True, True]


@pytest.mark.slow
def test_pnn_dynamic_rtl_icarus(tmp_path, capsys):
    if not shutil.which("iverilog"):
        pytest.fail("iverilog is not installed (make setup installs it)")
    b = random_bundle(seed=5, nbits=4, images=8)
    save_bundle(b, tmp_path / "b")
    rc = pnn_main(["dynamic", str(tmp_path / "b"), "--clips", "4", "--frames", "4",
                   "--thresholds", "0,900,1000", "--json", "--rows", "2", "--cols", "4",
                   "--rtl", "--rtl-engine", "streamed", "--rtl-clips", "1", "--rtl-frames", "3",
                   "--stall", "0.2", "--build-dir", str(tmp_path / "build")])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0, out.get("rtl")
    assert out["rtl"]["mismatches"] == 0 and not out["rtl"]["failed_tests"]
    assert out["rtl"]["engine"] == "streamed" and out["rtl"]["decisions_differ"] == 0
    for row in out["rtl"]["points"]:
        assert row["accuracy"] == row["golden_accuracy"]
        assert row["avg_cycles"] == row["golden_avg_cycles"]


def _tiny_resident_bundle(path):
    """A bundle small enough for the resident policy engine in a few seconds of simulation."""
    from test_resident import chain_bundle

    b = chain_bundle(1, [("conv", 4, (2, 2), (1, 1), (0, 0)), ("pool", (2, 2), (2, 2)),
                         ("flatten",), ("linear", 4)], input_shape=(1, 5, 5), nbits=3, images=8)
    b.test_y[:] = np.arange(8) % 4
    save_bundle(b, path)


def test_pnn_dynamic_rtl_resident_policy_on_chip(tmp_path, capsys):
    _tiny_resident_bundle(tmp_path / "b")
    args = ["dynamic", str(tmp_path / "b"), "--clips", "3", "--frames", "4", "--thresholds",
            "0,900", "--policy", "hybrid", "--budgets", "2", "--rows", "2", "--cols", "4",
            "--rtl", "--rtl-clips", "1", "--rtl-frames", "2", "--stall", "0.1"]
    assert pnn_main(args + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    r = out["rtl"]
    assert r["engine"] == "resident" and r["simulator"] == "amaranth"
    assert r["decisions_differ"] == 0 and r["mismatches"] == 0
    assert r["continuation"] and r["accdepth"] == 256       # --accdepth's default
    assert [p["label"] for p in r["points"]][-2:] == ["fixed2", "fixed3"]
    for p in r["points"]:
        assert p["frames"] == 2 and p["accuracy"] == p["golden_accuracy"]
        assert p["avg_cycles"] > p["avg_busy"] == p["avg_busy_continuation"]
        assert p["avg_busy"] <= p["avg_busy_recompute"]
    assert r["fixed_cycles"]["2"] < r["fixed_cycles"]["3"]
    # a continuation memory too small for the first layer: recomputed, and said so
    from progressivenn.model.bundle import load_bundle
    from progressivenn.sim.dynamic_rtl import resident_program
    prog, why = resident_program(load_bundle(tmp_path / "b"), 2, 4, "retrained", accdepth=4)
    assert prog.cfg.accdepth == 0 and why == ("resident: continuation memory needs 32 words, "
                                              "4 available: escalations recompute the first layer")
    # a bundle the resident engine cannot hold is refused with the reason (R must divide C)
    assert pnn_main(args + ["--rtl-engine", "resident", "--rows", "3"]) == 2
    assert "--rtl-engine resident: rows 3 must divide cols 4" in capsys.readouterr().err
