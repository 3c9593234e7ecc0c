"""Dynamic precision decided on chip (``hw/resident/policy.py``): the golden policy objects and the
RTL (Amaranth simulation) take the same decision on every frame; refused requests are answered
with an error code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from progressivenn.hw.resident.policy import PolicyEngine, PolicyErr, PolicyId
from progressivenn.model import dynamic as dyn
from progressivenn.model.clips import Clips, make_clips
from progressivenn.sim import resident as rs
from progressivenn.sim import resident_policy as rp

from test_resident import chain_bundle, small_cfg

torch.set_num_threads(1)

# a one-channel 2x2 conv through the tap banks, a fused pool, a linear: 40 busy cycles per plane
TINY = [("conv", 4, (2, 2), (1, 1), (0, 0)), ("pool", (2, 2), (2, 2)), ("flatten",),
        ("linear", 4)]


def tiny(seed=3, images=6):
    b = chain_bundle(seed, TINY, input_shape=(1, 5, 5), nbits=3, images=images)
    b.test_y[:] = np.arange(images) % 4
    return b, rs.compile_program(b, small_cfg(3))


def quantile_gates(table: dyn.LogitTable, name: str, threshold: int, qs=(60, 30, 80), **opts):
    """``name`` at ``threshold`` with gates at the ``qs`` percentiles of each k's margins (ACCEPT,
    AGREE, DOWN), so that frames accept, escalate, agree and move their start level in a mix."""
    nbits = table.nbits
    proto = dyn.make_policy(name, nbits, dyn.GateTable({k: {0: 0} for k in range(1, nbits + 1)}),
                            0, **opts)
    proto.threshold = threshold
    targets = [threshold] + ([proto.t_agree, proto.t_down] if name == "hybrid" else [])
    gates = {k: {t: int(np.percentile(table.margin[k - 1].reshape(-1), q))
                 for t, q in zip(targets, qs)} for k in range(1, nbits + 1)}
    return dyn.make_policy(name, nbits, dyn.GateTable(gates), threshold, **opts)


def sequence(b, order, clips=1):
    """Clips made of the bundle's test images in ``order`` (the prediction changes with them)."""
    n = len(order)
    return Clips(frames=np.stack([b.test_x[order]] * clips), labels=np.stack(
        [b.test_y[order]] * clips), occluded=np.zeros((clips, n), bool),
        sources=np.full(clips, -1))


def check(res, table, policy, prog):
    rep = rp.compare_frames(res, table, policy, prog)
    assert rep["decisions_differ"] == 0, rep["first_difference"]
    assert rep["logit_mismatches"] == 0 and rep["busy_mismatches"] == 0, rep["first_difference"]
    return rep


def test_hybrid_on_chip_takes_the_golden_decisions():
    b, prog = tiny(seed=1)
    clips = sequence(b, [0, 0, 1, 1, 1, 2, 3, 3], clips=2)
    table = dyn.golden_logits(b, clips)
    pol = quantile_gates(table, "hybrid", 900, levels=(1, 2, 3), start_levels=(1, 2))
    res = rp.run_clips_amaranth(prog, clips.frames, pol, seed=1, p_idle=0.1, p_stall=0.2)
    check(res, table, pol, prog)
    # the gates make a mix: escalations, the carried start level moving up and down
    starts = [r.path[0] for r in res[0]]
    assert any(len(r.path) > 1 for r in res[0]) and any(len(r.path) == 1 for r in res[0])
    assert any(b_ > a for a, b_ in zip(starts, starts[1:]))
    assert any(b_ < a for a, b_ in zip(starts, starts[1:]))
    for r in res[0]:
        assert r.cycles > sum(r.busy) and r.k == r.path[-1]


def test_policy_engine_with_the_ulx3s_netlist_options():
    """``pnn build --policy`` wraps the engine built with the board's ``resident_impl`` (the
    ULX3S: write registers per memory, undefined collisions): the same golden decisions, logits
    and busy cycles under idle cycles and back-pressure."""
    from progressivenn.hw.boards import ULX3S_RESIDENT_IMPL

    b, prog = tiny(seed=1)
    clips = sequence(b, [0, 1, 1, 2, 3, 3], clips=1)
    table = dyn.golden_logits(b, clips)
    pol = quantile_gates(table, "hybrid", 900, levels=(1, 2, 3), start_levels=(1, 2))
    res = rp.run_clips_amaranth(prog, clips.frames, pol, seed=2, p_idle=0.2, p_stall=0.2,
                                impl=ULX3S_RESIDENT_IMPL)
    check(res, table, pol, prog)
    assert any(len(r.path) > 1 for r in res[0])            # an escalation among them
    m = PolicyEngine(prog.cfg, impl=ULX3S_RESIDENT_IMPL).elaborate(None)
    assert m.submodules.engine.impl == ULX3S_RESIDENT_IMPL  # the options reach the engine


def test_escalate_and_fixed_on_chip():
    b, prog = tiny(seed=4)
    clips = make_clips(b.test_x, b.test_y, n_clips=1, n_frames=3, seed=2)
    table = dyn.golden_logits(b, clips)
    pol = quantile_gates(table, "escalate", 950, levels=(1, 3))
    check(rp.run_clips_amaranth(prog, clips.frames, pol), table, pol, prog)
    fixed = dyn.make_policy("fixed2", 3, pol.gates)
    res = rp.run_clips_amaranth(prog, clips.frames[:, :1], fixed)
    one = dyn.LogitTable(table.logits[:, :, :1], table.labels[:, :1])
    check(res, one, fixed, prog)
    assert res[0][0].busy == rs.expected_busy(prog, 2)


def test_refused_requests_are_answered_cleanly():
    b, prog = tiny()
    frames = np.repeat(b.test_x[None, :1], 4, axis=1)       # 1 clip x 4 frames
    gt = dyn.GateTable({k: {0: 0, 950: 10} for k in range(1, 4)})
    hyb = dyn.make_policy("hybrid", 3, gt, 950, agree=1000, hysteresis=1000)
    reqs = [{"policy": 5, "k": 0, "levels": 1, "start": 1},                  # unknown policy
            {"policy": PolicyId.FIXED, "k": 0, "levels": 0, "start": 0},   # k out of range
            rp.policy_fields(hyb)[0],                                        # gates not loaded
            {"policy": PolicyId.FIXED, "k": 3, "levels": 0, "start": 0}]   # fine afterwards
    res = rp.run_clips_amaranth(prog, frames, hyb, raw_requests=reqs, load_gates=False)[0]
    assert [r.err for r in res] == [PolicyErr.UNKNOWN_POLICY, PolicyErr.BAD_REQUEST,
                                    PolicyErr.GATE_MISSING, PolicyErr.OK]
    assert res[3].k == 3 and res[3].path == (3,) and res[3].busy == rs.expected_busy(prog, 3)
    with pytest.raises(ValueError, match="runs on the host only"):
        rp.policy_fields(dyn.make_policy("temporal", 3, gt, 950))
    with pytest.raises(ValueError, match="RUN_POLICY|SUMMARY|needs"):
        PolicyEngine(small_cfg(3, rows=1, cols=2, obits=9, acc_width=16, taps=0))


@pytest.mark.slow
@pytest.mark.parametrize("name,threshold,opts", [
    ("hybrid", 900, dict(levels=(1, 2, 3), start_levels=(1, 2))),
    ("escalate", 950, dict(levels=(1, 2, 3)))])
def test_ten_clips_of_thirty_frames_decide_as_golden(name, threshold, opts):
    """The issue's figure on a tiny bundle: 10 clips x 30 frames, decisions_differ == 0."""
    b, prog = tiny(seed=1, images=12)
    clips = make_clips(b.test_x, b.test_y, n_clips=10, n_frames=30, seed=3)
    table = dyn.golden_logits(b, clips)
    pol = quantile_gates(table, name, threshold, **opts)
    res = rp.run_clips_amaranth(prog, clips.frames, pol, seed=2, p_idle=0.05, p_stall=0.05)
    rep = check(res, table, pol, prog)
    assert rep["frames"] == 300 and rep["escalations"] > 10
    assert len({r.path for clip in res for r in clip}) >= 3


# ---- continuation: the first convolution continued from its saved accumulators ----------------

# three input channels (no tap banks): the first layer has 4 chunks per plane and 2 output groups
# of R=2, so a continued plane skips weight words (wskip) and loads every other group's word
WIDE = [("conv", 4, (2, 2), (1, 1), (0, 0)), ("flatten",), ("linear", 4)]


def wide(seed=5, images=6, accdepth=32):
    b = chain_bundle(seed, WIDE, input_shape=(3, 3, 3), nbits=3, images=images)
    b.test_y[:] = np.arange(images) % 4
    return b, rs.compile_program(b, small_cfg(3, taps=0, accdepth=accdepth))


def continued_first(res, prog):
    """Every frame's first-layer busy is that of its final k alone (the continuation model)."""
    for r in (r for clip in res for r in clip):
        assert r.busy[0] == prog.layers[0].busy(r.k), (r.path, r.busy)
        assert r.busy[1:] == [sum(pl.busy(k) for k in r.path) for pl in prog.layers[1:]]


def continued_hybrid():
    """The tiny net on an engine with a continuation memory, 2 clips over 4 test images and a
    hybrid policy whose frames take the paths (1, 2, 3), (2, 3), (2,) and (1,)."""
    b, prog1 = tiny(seed=1)
    prog = rs.compile_program(b, small_cfg(3, accdepth=rs.continuation_words(prog1)))
    clips = sequence(b, [0, 0, 1, 1, 1, 2, 3, 3], clips=2)
    table = dyn.golden_logits(b, clips)
    pol = quantile_gates(table, "hybrid", 900, qs=(85, 50, 95), levels=(1, 2, 3),
                         start_levels=(1, 2))
    return prog, clips, table, pol


def test_escalation_continues_the_first_layer_on_chip(monkeypatch):
    prog, clips, table, pol = continued_hybrid()
    res = rp.run_clips_amaranth(prog, clips.frames, pol, seed=1, p_idle=0.1, p_stall=0.2)
    rep = check(res, table, pol, prog)
    assert rep["continued"] and {(1, 2, 3), (2, 3), (2,), (1,)} <= {r.path for c in res for r in c}
    assert rep["avg_busy"] == rep["avg_busy_continuation"] < rep["avg_busy_recompute"]
    continued_first(res, prog)
    # the mutation: the wrapper never asks to continue (layer 0 recomputed): same decisions and
    # logits, and the busy comparison must catch it
    monkeypatch.setattr(PolicyEngine, "CONTINUE", False)
    res = rp.run_clips_amaranth(prog, clips.frames[:1], pol, seed=1)      # the first clip
    rep = rp.compare_frames(res, table.subset(1, 8), pol, prog)
    assert rep["decisions_differ"] == 0 and rep["logit_mismatches"] == 0
    assert rep["busy_mismatches"] == sum(len(r.path) > 1 for c in res for r in c) > 0


def test_continuation_skips_weights_of_a_wide_first_layer():
    b, prog = wide()
    assert prog.layers[0].desc["nchunks"] == 4 and prog.layers[0].desc["ngroups"] == 2
    clips = make_clips(b.test_x, b.test_y, n_clips=1, n_frames=6, seed=2)
    table = dyn.golden_logits(b, clips)
    for levels in ((1, 3), (1, 2, 3)):
        pol = quantile_gates(table, "escalate", 950, qs=(70,), levels=levels)
        res = rp.run_clips_amaranth(prog, clips.frames, pol, seed=3, p_idle=0.1, p_stall=0.1)
        rep = check(res, table, pol, prog)
        assert rep["escalations"] > 0
        continued_first(res, prog)


def test_continuation_memory_must_hold_the_first_layer():
    b, prog = tiny(seed=1)
    need = rs.continuation_words(prog)
    with pytest.raises(rs.ResidentFitError,
                       match=f"^resident: continuation memory needs {need} words, "
                             f"{need - 1} available$"):
        rs.compile_program(b, small_cfg(3, accdepth=need - 1))
    with pytest.raises(ValueError, match="accdepth .* double_buffer"):
        small_cfg(3, accdepth=64, double_buffer=True)


@pytest.mark.slow
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_policy_engine_verilog_under_cocotb(sim, tmp_path):
    """The policy engine's generated Verilog (with continuation) replays the same stream: every
    frame's decision, logits and per-layer busy equal golden + the continuation model."""
    from bundles import have_simulator

    if not have_simulator(sim):
        pytest.skip(f"{sim} is not installed")
    prog, clips, table, pol = continued_hybrid()
    res, info = rp.run_clips_cocotb(prog, clips.frames, pol, simulator=sim,
                                    build_root=tmp_path, seed=1, p_idle=0.1, p_stall=0.2)
    rep = check(res, table, pol, prog)
    assert rep["frames"] == 16 and rep["escalations"] >= 10 and info["sim_cycles"] > 0
    assert rep["avg_busy"] == rep["avg_busy_continuation"]
    continued_first(res, prog)
