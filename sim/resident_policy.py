"""Host side of the on-chip precision policy (``hw/resident/policy.py``): pack gate tables and
policy requests, decode the answers, simulate clips (Amaranth), compare with the golden policy.

The golden policy objects of ``model/dynamic.py`` say what to load: :func:`policy_fields` maps a
``FixedPolicy`` / ``EscalatePolicy`` / ``HybridPolicy`` to the request fields and the target of
each gate slot; ``TemporalPolicy`` runs on the host only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..hw.resident.layout import Op, ResKind, cmd_layout, res_layout
from ..hw.resident.policy import (PolicyId, PolicyErr, GateSlot, policy_req_layout,
                                  policy_summary_layout, gate_width)
from ..model import dynamic as dyn
from .resident import decode_run, image_beats, _field_bits

__all__ = ["policy_fields", "gate_beats", "request_beat", "PolicyResult", "decode_policy",
           "run_clips_amaranth", "compare_frames", "path_busy", "continuation_busy", "ERRORS"]

#: one line per refusal code of the chip
ERRORS = {
    PolicyErr.UNKNOWN_POLICY: "unknown policy id",
    PolicyErr.GATE_MISSING: "a gate the policy needs is not loaded (WRITE_GATE)",
    PolicyErr.BAD_REQUEST: "bad request (k out of range or empty levels)",
    PolicyErr.NO_PROGRAM: "no network program loaded",
}


def _mask(levels) -> int:
    return sum(1 << (int(v) - 1) for v in levels)


def policy_fields(policy: dyn.Policy) -> tuple[dict, dict]:
    """``(request fields, {GateSlot: target})`` of a golden policy object."""
    if isinstance(policy, dyn.FixedPolicy):
        return {"policy": PolicyId.FIXED, "k": policy.k, "levels": 0, "start": 0}, {}
    if isinstance(policy, dyn.EscalatePolicy):
        return ({"policy": PolicyId.ESCALATE, "k": 0, "levels": _mask(policy.levels), "start": 0},
                {GateSlot.ACCEPT: policy.threshold})
    if isinstance(policy, dyn.HybridPolicy):
        return ({"policy": PolicyId.HYBRID, "k": 0, "levels": _mask(policy.levels),
                 "start": _mask(policy.start_levels)},
                {GateSlot.ACCEPT: policy.threshold, GateSlot.AGREE: policy.t_agree,
                 GateSlot.DOWN: policy.t_down})
    raise ValueError(f"policy {policy.name!r} runs on the host only; on chip: fixed<k>, "
                     f"escalate, hybrid")


def gate_beats(prog, policy: dyn.Policy) -> list:
    """WRITE_GATE beats loading every gate ``policy`` compares against, at every k."""
    cfg = prog.cfg
    _, slots = policy_fields(policy)
    cl = cmd_layout(cfg)
    gw = gate_width(cfg)
    out = []
    for slot, target in slots.items():
        for k in range(1, cfg.nbits + 1):
            g = int(policy.gates.gate(k, target))
            if not 0 <= g < (1 << gw):
                raise ValueError(f"gate({k}, {target}) = {g} does not fit {gw} bits")
            out.append(cl.const({"op": Op.WRITE_GATE, "addr": slot.value * cfg.nbits + k - 1,
                                 "data": g}).as_bits())
    return out


def request_beat(prog, policy: dyn.Policy | dict, reset: bool) -> int:
    """The RUN_POLICY beat for one frame (``reset``: first frame of a clip). ``policy`` may be the
    raw request fields (tests send malformed requests that way)."""
    fields = dict(policy) if isinstance(policy, dict) else policy_fields(policy)[0]
    fields["reset"] = int(bool(reset))
    lay = policy_req_layout(prog.cfg)
    pid = fields.pop("policy")
    raw = lay.const({**fields, "policy": PolicyId.FIXED}).as_bits()
    raw |= int(pid.value if isinstance(pid, PolicyId) else pid) << lay["policy"].offset
    return cmd_layout(prog.cfg).const({"op": Op.RUN_POLICY, "addr": 0, "data": raw}).as_bits()


@dataclass
class PolicyResult:
    err: PolicyErr
    cls: int = -1
    k: int = 0
    cycles: int = 0
    path: tuple = ()            # every k run, increasing
    logits: list = field(default_factory=list)
    busy: list = field(default_factory=list)   # per program layer, summed over the path


def decode_policy(prog, beats: list) -> PolicyResult:
    """Decode the answer to a RUN_POLICY: a refusal is one SUMMARY beat with ``err`` set."""
    rl, sl = res_layout(prog.cfg), policy_summary_layout(prog.cfg)
    if not beats or rl.from_bits(beats[0]).kind != ResKind.SUMMARY:
        raise ValueError("the first answer beat of a RUN_POLICY must be a SUMMARY")
    s = sl.from_bits(_field_bits(rl, beats[0], "data") & ((1 << sl.size) - 1))
    err = _summary_err(prog, beats[0])
    if err != PolicyErr.OK:
        return PolicyResult(err)
    r = decode_run(prog, beats)
    path = tuple(k for k in range(1, prog.cfg.nbits + 1) if int(s.visited) >> (k - 1) & 1)
    return PolicyResult(err, r.cls, r.k, r.cycles, path, r.logits, r.busy)


def _summary_err(prog, beat: int) -> PolicyErr:
    rl, sl = res_layout(prog.cfg), policy_summary_layout(prog.cfg)
    return PolicyErr(_field_bits(sl, _field_bits(rl, beat, "data"), "err"))


def answer_beats(prog) -> int:
    """Beats of an accepted RUN_POLICY's answer (the first says whether more follow)."""
    return 1 + prog.layers[-1].desc["ngroups"] + len(prog.layers)


def run_clips_amaranth(prog, clips, policy, *, raw_requests=None, load_gates: bool = True,
                       seed: int = 0, p_idle: float = 0.0, p_stall: float = 0.0) -> list:
    """Simulate the policy engine (Amaranth): load the network and the policy's gates once, then
    for every clip ``[T, C, H, W]`` and frame write the image and send RUN_POLICY (reset on the
    first frame of a clip). Returns ``[[PolicyResult per frame] per clip]``. ``raw_requests``:
    request field dicts sent instead of the policy's (one per frame, first clip)."""
    from amaranth.sim import Simulator

    from ..hw.resident.policy import PolicyEngine

    eng = PolicyEngine(prog.cfg)
    rng = random.Random(seed)
    load = prog.load_beats() + (gate_beats(prog, policy) if load_gates else [])
    results = []

    async def put(ctx, word):
        while p_idle and rng.random() < p_idle:
            await ctx.tick()
        ctx.set(eng.cmd.valid, 1)
        ctx.set(eng.cmd.payload.as_value(), word)
        await ctx.tick().until(eng.cmd.ready)
        ctx.set(eng.cmd.valid, 0)

    async def get(ctx):
        while p_stall and rng.random() < p_stall:
            ctx.set(eng.res.ready, 0)
            await ctx.tick()
        ctx.set(eng.res.ready, 1)
        payload, = await ctx.tick().sample(eng.res.payload.as_value()).until(eng.res.valid)
        ctx.set(eng.res.ready, 0)
        return int(payload)

    async def bench(ctx):
        for word in load:
            await put(ctx, word)
        for ci, clip in enumerate(clips):
            per = []
            for t, img in enumerate(clip):
                for word in image_beats(prog, img):
                    await put(ctx, word)
                req = (raw_requests[t] if raw_requests is not None and ci == 0 else policy)
                await put(ctx, request_beat(prog, req, t == 0))
                beats = [await get(ctx)]
                if _summary_err(prog, beats[0]) == PolicyErr.OK:
                    for _ in range(answer_beats(prog) - 1):
                        beats.append(await get(ctx))
                per.append(decode_policy(prog, beats))
            results.append(per)

    sim = Simulator(eng)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


def path_busy(prog, path, continued: bool) -> list:
    """Busy cycles per program layer of a frame that visited ``path`` (k increasing). With
    ``continued`` (docs/dynamic.md's cost model; the chip with ``cfg.accdepth``) the first
    convolution costs ``busy(k_m)`` (continued from its saved accumulators), every other layer
    ``sum_i busy(k_i)`` (recomputed at each visited k; a pool layer once per visit); without,
    every layer is recomputed."""
    first = next(i for i, pl in enumerate(prog.layers) if not pl.planes_fixed)
    return [pl.busy(path[-1]) if continued and i == first else sum(pl.busy(k) for k in path)
            for i, pl in enumerate(prog.layers)]


def continuation_busy(prog, path) -> int:
    """Busy cycles of a frame that visited ``path`` under docs/dynamic.md's cost model (the first
    convolution continued: :func:`path_busy`)."""
    return sum(path_busy(prog, path, True))


def compare_frames(results: list, table: dyn.LogitTable, policy: dyn.Policy, prog) -> dict:
    """On-chip answers vs the golden policy on the golden logits of the same frames.

    ``decisions_differ``: frames whose k path or prediction differ; ``logit_mismatches``: frames
    whose final logits differ; ``busy_mismatches``: frames whose per-layer busy counters differ
    from the cycle model of their golden path (:func:`path_busy`; the first convolution continued
    when the chip has a continuation memory, ``cfg.accdepth``). Cycles: ``avg_cycles`` whole frame
    on chip (first image beat to SUMMARY), ``avg_busy`` its busy cycles (measured),
    ``avg_busy_continuation`` / ``avg_busy_recompute`` what the continuation model / recomputing
    every layer spend on the golden paths."""
    from .resident import expected_busy

    continued = prog.cfg.accdepth > 0

    paths, preds = dyn.run_policy(policy, table)
    flat = [r for clip in results for r in clip]
    if len(flat) != len(paths):
        raise ValueError(f"{len(flat)} on-chip frames, {len(paths)} golden frames")
    ncls = table.logits.shape[-1]
    gold_logits = table.logits.reshape(table.nbits, -1, ncls)
    labels = table.labels.reshape(-1)
    differ, lmis, bmis, first = 0, 0, 0, None
    for i, (r, p, pr) in enumerate(zip(flat, paths, preds)):
        exp_busy = path_busy(prog, p, continued)
        bad = []
        if r.err != PolicyErr.OK or r.path != tuple(p) or r.k != p[-1] or r.cls != pr:
            differ += 1
            bad.append("decision")
        if r.logits != [int(v) for v in gold_logits[p[-1] - 1, i]]:
            lmis += 1
            bad.append("logits")
        if r.busy != exp_busy:
            bmis += 1
            bad.append("busy")
        if bad and first is None:
            first = {"frame": i, "fields": bad, "golden_path": list(p), "chip_path": list(r.path),
                     "golden_pred": pr, "chip_pred": r.cls, "err": r.err.name,
                     "model_busy": exp_busy, "chip_busy": list(r.busy)}
    n = len(flat)
    plane = sum(expected_busy(prog, 1))
    return {"frames": n, "decisions_differ": differ, "logit_mismatches": lmis,
            "busy_mismatches": bmis, "first_difference": first,
            "accuracy": sum(int(r.cls == y) for r, y in zip(flat, labels)) / n,
            "golden_accuracy": sum(int(p == y) for p, y in zip(preds, labels)) / n,
            "avg_cycles": sum(r.cycles for r in flat) / n,
            "avg_busy": sum(sum(r.busy) for r in flat) / n,
            "avg_planes": sum(sum(r.busy) for r in flat) / (n * plane),
            "continued": continued,
            "avg_busy_continuation": sum(continuation_busy(prog, p) for p in paths) / n,
            "avg_busy_recompute": sum(sum(path_busy(prog, p, False)) for p in paths) / n,
            "avg_final_k": sum(r.k for r in flat) / n,
            "escalations": sum(len(r.path) - 1 for r in flat)}
