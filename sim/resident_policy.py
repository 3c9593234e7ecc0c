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
           "run_clips_amaranth", "run_clips_cocotb", "compare_frames", "continuation_config",
           "path_busy", "continuation_busy", "ERRORS"]

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
                       seed: int = 0, p_idle: float = 0.0, p_stall: float = 0.0,
                       impl=None) -> list:
    """Simulate the policy engine (Amaranth): load the network and the policy's gates once, then
    for every clip ``[T, C, H, W]`` and frame write the image and send RUN_POLICY (reset on the
    first frame of a clip). Returns ``[[PolicyResult per frame] per clip]``. ``raw_requests``:
    request field dicts sent instead of the policy's (one per frame, first clip). ``impl``: the
    wrapped engine's netlist options (``ResidentImpl``, e.g. a board's ``resident_impl``)."""
    from amaranth.sim import Simulator

    from ..hw.resident.policy import PolicyEngine

    eng = PolicyEngine(prog.cfg) if impl is None else PolicyEngine(prog.cfg, impl=impl)
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


def continuation_config(prog, accdepth: int = 256):
    """``(config, note)``: ``prog``'s configuration with a continuation memory of ``accdepth``
    words when its first convolution's accumulators fit them (note ``None``), else unchanged
    (escalations recompute the first layer) with a one-line note saying why."""
    from dataclasses import replace

    from .resident import continuation_words

    need = continuation_words(prog)
    if accdepth <= 0 or prog.cfg.double_buffer:
        why = "accdepth 0" if accdepth <= 0 else "double-buffered input"
        return prog.cfg, f"no continuation memory ({why}): escalations recompute the first layer"
    if need > accdepth:
        return prog.cfg, (f"resident: continuation memory needs {need:,} words, {accdepth:,} "
                          f"available: escalations recompute the first layer")
    return replace(prog.cfg, accdepth=accdepth), None


def path_busy(prog, path, continued: bool) -> list:
    """Busy cycles per program layer of a frame that visited ``path`` (k increasing). With
    ``continued`` (docs/dynamic.md's cost model; the chip with ``cfg.accdepth``) the first
    convolution costs ``busy(k_m)`` (continued from its saved accumulators), every other layer
    ``sum_i busy(k_i)`` (recomputed at each visited k; a pool layer once per visit); without,
    every layer is recomputed."""
    first = next(i for i, pl in enumerate(prog.layers) if not pl.planes_fixed)
    return [pl.busy(path[-1]) if continued and i == first else sum(pl.busy(k) for k in path)
            for i, pl in enumerate(prog.layers)]


#: top of the policy engine's generated Verilog and the ports its cocotb bench uses
POLICY_TOP = "pnn_policy"
POLICY_PORTS = ("clk", "rst", "cmd__valid", "cmd__ready", "cmd__payload", "res__valid",
                "res__ready", "res__payload")


def _stream(prog, clips, policy) -> tuple[list, int]:
    """Every command beat of a policy run (network, gates, per frame image + RUN_POLICY) and the
    number of requests."""
    cmds = prog.load_beats() + gate_beats(prog, policy)
    n = 0
    for clip in clips:
        for t, img in enumerate(clip):
            cmds += image_beats(prog, img) + [request_beat(prog, policy, t == 0)]
            n += 1
    return cmds, n


def _split_answers(prog, beats: list) -> list:
    """Result beats -> one ``PolicyResult`` per request (a refusal is one SUMMARY beat)."""
    out, i = [], 0
    while i < len(beats):
        n = 1 if _summary_err(prog, beats[i]) != PolicyErr.OK else answer_beats(prog)
        out.append(decode_policy(prog, beats[i:i + n]))
        i += n
    return out


def build_policy_verilog(cfg, simulator: str, root) -> "Path":
    """Generate and build the Verilog of ``PolicyEngine(cfg)`` (top ``pnn_policy``) once per
    configuration and simulator, under ``root``; a build newer than its sources and made with the
    same arguments is reused. Verilator: only the top's ports are public (the bench drives and
    samples nothing else). Returns the build folder."""
    from amaranth.back import verilog

    from ..hw.resident.policy import PolicyEngine
    from .runner import (PUBLIC_PORTS_ONLY, VERILATOR_ARGS, VERILATOR_MAKE_FLAGS, build_if_stale,
                         find_simulator, public_ports_config, verilator_sources, write_if_changed,
                         _build_dir, _build_lock)

    find_simulator(simulator)
    build_dir = _build_dir(cfg, simulator, root, kind="resident-policy").resolve()
    with _build_lock(build_dir) as lock:
        lock(True)
        (build_dir / "rtl").mkdir(parents=True, exist_ok=True)
        src = write_if_changed(build_dir / "rtl" / f"{POLICY_TOP}.v",
                               verilog.convert(PolicyEngine(cfg), name=POLICY_TOP))
        sources = verilator_sources(simulator, [src])
        args, make = ["-g2005"], []
        if simulator == "verilator":
            sources.insert(0, write_if_changed(build_dir / "rtl" / "ports.vlt",
                                               public_ports_config(POLICY_TOP, POLICY_PORTS)))
            args, make = VERILATOR_ARGS + PUBLIC_PORTS_ONLY, VERILATOR_MAKE_FLAGS
        build_if_stale(simulator, sources, POLICY_TOP, build_dir, args, make)
    return build_dir


def run_clips_cocotb(prog, clips, policy, *, simulator: str = "verilator",
                     build_root="build/sim", seed: int = 0, p_idle: float = 0.0,
                     p_stall: float = 0.0, max_cycles: int = 50_000_000) -> tuple[list, dict]:
    """:func:`run_clips_amaranth` on the generated Verilog of the policy engine under cocotb
    (Verilator or Icarus; ``sim/resident_policy_cocotb.py`` replays the command stream). Returns
    ``(results, info)``: the per-clip ``PolicyResult`` lists and build/sim seconds, cycles."""
    import json
    import time

    from .runner import new_run_dir, run_cocotb, _build_lock

    t0 = time.perf_counter()
    build_dir = build_policy_verilog(prog.cfg, simulator, build_root)
    build_s = time.perf_counter() - t0
    run_dir = new_run_dir(build_root, "resident-policy")
    cmds, n = _stream(prog, clips, policy)
    (run_dir / "commands.json").write_text(json.dumps([hex(w) for w in cmds]))
    rl, sl = res_layout(prog.cfg), policy_summary_layout(prog.cfg)
    out = run_dir / "report.json"
    conf = {"commands": str(run_dir / "commands.json"), "requests": n,
            "answer_beats": answer_beats(prog), "summary_kind": ResKind.SUMMARY.value,
            "kind_shift": rl["kind"].offset, "kind_width": rl["kind"].width,
            "err_shift": rl["data"].offset + sl["err"].offset, "err_width": sl["err"].width,
            "seed": seed, "p_idle": p_idle, "p_stall": p_stall, "max_cycles": max_cycles,
            "out": str(out)}
    (run_dir / "config.json").write_text(json.dumps(conf, indent=1))
    t1 = time.perf_counter()
    mod = "progressivenn.sim.resident_policy_cocotb"
    with _build_lock(build_dir) as lock:
        lock(False)
        rep = run_cocotb(simulator, mod, POLICY_TOP, build_dir, run_dir,
                         {"PNN_POLICY_CONFIG": str(run_dir / "config.json")}, out)
    flat = _split_answers(prog, [int(b, 16) for b in rep["beats"]])
    sizes = [len(c) for c in clips]
    results, i = [], 0
    for m in sizes:
        results.append(flat[i:i + m])
        i += m
    return results, {"simulator": simulator, "build_seconds": round(build_s, 2),
                     "sim_seconds": round(time.perf_counter() - t1, 2),
                     "sim_cycles": rep["cycles"], "run_dir": str(run_dir)}


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
