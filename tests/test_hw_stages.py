"""Each stage of the engine on its own in the Amaranth simulator (docs/architecture.md): command
front-end, data loader, exec stage, result stage, counters; and the engine's latency as the sum
of theirs."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from progressivenn.hw import isa
from progressivenn.hw.counters import Counters
from progressivenn.hw.engine import Engine
from progressivenn.hw.exec_stage import ExecStage
from progressivenn.hw.frontend import CommandFrontEnd
from progressivenn.hw.isa import EngineConfig, Kind, Op
from progressivenn.hw.loader import DataLoader
from progressivenn.hw.result_stage import ResultStage
from progressivenn.model import contract

from hwutil import stream_get, stream_put

CFG = EngineConfig(rows=2, cols=3, abits=4, nbits=3, max_reduction=64, mbits=10, bbits=20,
                   obits=24, wdepth=64, adepth=16, ppdepth=16, accdepth=8)


def _run(dut, *benches, processes=()):
    """Simulate ``dut``: every testbench but the last runs in the background."""
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for p in processes:
        sim.add_process(p)
    for tb in benches[:-1]:
        sim.add_testbench(tb, background=True)
    sim.add_testbench(benches[-1])
    sim.run()


def test_frontend_holds_one_command_and_takes_the_next_when_done():
    fe = CommandFrontEnd()
    words = [isa.cmd_load_w(5, 7), isa.cmd_run(bank=1, relu=True, k_start=0, k_end=2, wplanes=3,
                                               ngroups=4, nchunks=5, npos=6), isa.cmd_nop()]
    seen = []

    async def put(ctx):
        for w in words:
            await stream_put(ctx, fe.cmd, w)

    async def exe(ctx):
        for n in range(len(words)):
            await ctx.tick().until(fe.pending)
            await ctx.tick().repeat(2)          # a command may wait: the next one waits in
            more = n < len(words) - 1           # the skid register, the one after stays out
            assert ctx.get(fe.pending) and ctx.get(fe.queued) == more
            assert ctx.get(fe.cmd.ready) == (not more)
            seen.append(ctx.get(fe.cur.as_value()))
            ctx.set(fe.done, 1)
            await ctx.tick()
            ctx.set(fe.done, 0)

    _run(fe, put, exe)
    assert seen == words
    assert isa.Command.from_bits(seen[1]).p.run.npos == 6
    assert fe.latency == 1


def _one_register_front_end(avail, waits, cycles):
    """Cycle each command enters ``cur`` in a front-end of one register (``ready = ~pending |
    done``): command i is offered from cycle ``avail[i]`` (and after i-1 was taken) and completes
    ``waits[i]`` cycles after it entered ``cur``."""
    starts, i, pending, cur, age = [], 0, False, None, 0
    for t in range(cycles):
        done = pending and age >= waits[cur]
        if i < len(avail) and t >= avail[i] and (not pending or done):
            starts.append(t + 1)
            pending, cur, age, i = True, i, 0, i + 1
        elif done:
            pending = False
        else:
            age += 1
    return starts


@pytest.mark.parametrize("seed", range(4))
def test_frontend_skid_keeps_the_one_register_timing_and_a_registered_ready(seed):
    """The skid register changes when the source sees ``ready``, never when a command enters
    ``cur``; ``cmd.ready`` does not follow ``done`` within a cycle."""
    rng = random.Random(seed)
    n, cycles = 40, 400
    avail = sorted(rng.randrange(150) for _ in range(n))
    waits = [rng.choice([0, 0, 0, 1, 2, 5]) for _ in range(n)]
    expect = _one_register_front_end(avail, waits, cycles)
    fe = CommandFrontEnd()
    starts = []

    async def bench(ctx):
        i, age, prev = 0, 0, None
        for t in range(cycles):
            offer = i < n and t >= avail[i]
            ctx.set(fe.cmd.valid, offer)
            ctx.set(fe.cmd.payload, i + 1 if offer else 0)
            pending, cur = ctx.get(fe.pending), ctx.get(fe.cur.as_value())
            if pending and cur != prev:
                starts.append(t)
                prev, age = cur, 0
            ready = ctx.get(fe.cmd.ready)
            ctx.set(fe.done, pending and age >= waits[cur - 1])
            assert ctx.get(fe.cmd.ready) == ready           # registered: done does not reach it
            if not pending:
                prev = None
            await ctx.tick()
            if offer and ready:
                i += 1
            age += 1
        assert i == n

    _run(fe, bench)
    assert starts == expect


def test_loader_writes_count_beats_into_the_target_port():
    ports = {Op.LOAD_W: (6, 8), Op.LOAD_A: (5, 12), Op.LOAD_PP: (4, 20)}
    ld = DataLoader(24, ports)
    beats = [random.Random(3).getrandbits(24) for _ in range(5)]
    writes = []

    async def feed(ctx):
        ctx.set(ld.start, 1)
        ctx.set(ld.target, Op.LOAD_A)
        ctx.set(ld.addr, 9)
        ctx.set(ld.count, len(beats))
        await ctx.tick()
        ctx.set(ld.start, 0)
        for b in beats:
            await stream_put(ctx, ld.data, b)

    async def watch(ctx):
        for _ in range(30):
            await ctx.delay(1e-9)     # after the testbenches set their inputs
            a_en, w_en, pp_en = ctx.get(ld.a.en), ctx.get(ld.w.en), ctx.get(ld.pp.en)
            assert not (w_en or pp_en)
            if a_en:
                writes.append((ctx.get(ld.a.addr), ctx.get(ld.a.data)))
            await ctx.tick()
        assert not ctx.get(ld.active)

    _run(ld, feed, watch)
    assert writes == [(9 + i, b & 0xFFF) for i, b in enumerate(beats)]


def _exec_run(cfg, u, x, k, *, relu=True):
    """One RUN (k planes, one group, one position) through the exec stage; returns the emitted
    accumulators, the cycle of the first chunk on ``o`` counted from ``start``, and the table
    entries requested."""
    ex = ExecStage(cfg)
    R, C, N = cfg.rows, cfg.cols, cfg.nbits
    nchunks = -(-len(x) // C)
    wl = isa.weight_layout(cfg)
    planes = np.zeros((k, nchunks, R, C), np.int64)
    full = np.zeros((R, nchunks * C), np.int64)
    full[:, :u.shape[1]] = u
    for p in range(k):
        planes[p] = ((full >> (N - 1 - p)) & 1).reshape(R, nchunks, C).transpose(1, 0, 2)
    wwords = isa.pack_array_words(wl, planes.reshape(-1, R, C))
    xs = np.zeros(nchunks * C, np.int64)
    xs[:len(x)] = x
    awords = isa.pack_array_words(isa.act_layout(cfg), xs.reshape(nchunks, C))
    out = {"acc": [], "first": None, "pp": []}

    async def tb(ctx):
        for port, words in ((ex.w_wr, wwords), (ex.a_wr, awords)):
            for a, w in enumerate(words):
                ctx.set(port.addr, a)
                ctx.set(port.data, w)
                ctx.set(port.en, 1)
                await ctx.tick()
            ctx.set(port.en, 0)
        ctx.set(ex.run, {"relu": int(relu), "k_start": 0, "k_end": k, "wplanes": k, "ngroups": 1,
                         "nchunks": nchunks, "npos": 1, "every_plane": 1, "save": 0})
        ctx.set(ex.start, 1)
        await ctx.tick()
        ctx.set(ex.start, 0)
        for cycle in range(1, 100):
            if ctx.get(ex.pp_req.valid):
                out["pp"].append(ctx.get(ex.pp_req.payload))
            if ctx.get(ex.o.valid):
                out["first"] = cycle if out["first"] is None else out["first"]
                o = ctx.get(ex.o.payload)
                if o.meta.emit:
                    accs = [isa.to_signed(o.acc >> (r * cfg.acc_width), cfg.acc_width)
                            for r in range(R)]
                    out["acc"].append((o.meta.k, accs))
            await ctx.tick()
        assert ctx.get(ex.status.idle)

    _run(ex, tb)
    return ex, out


@pytest.mark.parametrize("k", [1, 3])
def test_exec_stage_accumulates_plane_by_plane(k):
    cfg = CFG
    rng = np.random.default_rng(k)
    u = rng.integers(0, 1 << cfg.nbits, size=(cfg.rows, 7))
    x = rng.integers(0, 1 << cfg.abits, size=7)
    ex, out = _exec_run(cfg, u, x, k)
    # every plane emits (every_plane): acc_j = sum_i q_j[r, i] * x[i] for j = 1..k
    want = [(j, [int(np.sum((2 * (u[r] >> (cfg.nbits - j)) - ((1 << j) - 1)) * x))
                 for r in range(cfg.rows)]) for j in range(1, k + 1)]
    assert out["acc"] == want
    assert out["first"] == 1 + ex.latency      # first chunk issued the cycle after start
    assert out["pp"] == [(j - 1) for j in range(1, k + 1)]       # entry (k-1)*ngroups + g


def _result_run(cfg, accs, relu, shift, ms, bs, k=2, stall=0.0):
    """Accumulator vectors through the result stage with table entry 0; returns the decoded beats
    and the cycle of the first beat counted from the first chunk on ``i``."""
    rs = ResultStage(cfg, issue_latency=4)
    table = isa.pack_pp_words(cfg, shift, ms, bs)
    got = {"beats": [], "first": None}
    cycle = [0]

    async def count(ctx):
        async for _ in ctx.tick():
            cycle[0] += 1

    async def feed(ctx):
        for a, w in enumerate(table):
            ctx.set(rs.pp_wr.addr, a)
            ctx.set(rs.pp_wr.data, w)
            ctx.set(rs.pp_wr.en, 1)
            await ctx.tick()
        ctx.set(rs.pp_wr.en, 0)
        for acc in accs:
            await ctx.tick().until(~rs.hold)
            ctx.set(rs.issue, 1)                 # the credit of this chunk (its issue cycle)
            ctx.set(rs.pp_req.valid, 1)          # 2 cycles ahead of the chunk
            ctx.set(rs.pp_req.payload, 0)
            await ctx.tick()
            ctx.set(rs.issue, 0)
            ctx.set(rs.pp_req.valid, 0)
            await ctx.tick()
            ctx.set(rs.i.valid, 1)
            ctx.set(rs.i.payload, {"acc": sum(isa.to_unsigned(v, cfg.acc_width)
                                              << (r * cfg.acc_width) for r, v in enumerate(acc)),
                                   "meta": {"emit": 1, "relu": int(relu), "k": k}})
            if got["first"] is None:
                got["first"] = -cycle[0]
            await ctx.tick()
            ctx.set(rs.i.valid, 0)

    async def take(ctx):
        rng = random.Random(5)
        for _ in accs:
            word = await stream_get(ctx, rs.res, rng=rng, p_idle=stall)
            if len(got["beats"]) == 0 and got["first"] is not None and got["first"] < 0:
                got["first"] += cycle[0] - 1
            got["beats"].append(isa.decode_result(cfg, word))

    _run(rs, feed, take, processes=[count])
    return rs, got


@pytest.mark.parametrize("lanes", [None, 1])
@pytest.mark.parametrize("relu", [True, False])
def test_result_stage_post_processes_each_result(lanes, relu):
    cfg = EngineConfig(**{**CFG.__dict__, "pp_lanes": lanes})
    rng = np.random.default_rng(7)
    shift, ms, bs = 5, [37, -21], [300, -4000]
    bound = (1 << (cfg.acc_width - 2))
    accs = [list(rng.integers(-bound, bound, size=cfg.rows)) for _ in range(4)]
    rs, got = _result_run(cfg, accs, relu, shift, ms, bs)
    want = []
    for acc in accs:
        ys = [(int(a) * m + b + contract.round_half(shift)) >> shift for a, m, b in zip(acc, ms, bs)]
        if relu:
            ys = [min(max(y, 0), (1 << cfg.abits) - 1) for y in ys]
        else:
            ys = [min(max(y, -(1 << (cfg.obits - 1))), (1 << (cfg.obits - 1)) - 1) for y in ys]
        want.append(isa.ResultBeat(Kind.RESULT, 2, tuple(ys)))
    assert got["beats"] == want
    assert got["first"] == rs.latency


def test_result_stage_credits_hold_back_pressure():
    """With the consumer mostly not ready, the stage holds issue instead of dropping results."""
    cfg = CFG
    accs = [[i, -i] for i in range(40)]       # about 3 FIFOs' worth (depth 14 here)
    _, got = _result_run(cfg, accs, False, 0, [1, 1], [0, 0], stall=0.7)
    assert [b.values for b in got["beats"]] == [tuple(a) for a in accs]


def test_counters_count_clear_and_read():
    cfg = CFG
    cnt = Counters(cfg)
    got = []

    async def tb(ctx):
        ctx.set(cnt.events, {"total": 1, "busy": 1})
        await ctx.tick().repeat(5)
        ctx.set(cnt.events, {"total": 1, "stall": 1, "data_beats": 1})
        await ctx.tick().repeat(3)
        ctx.set(cnt.events, {"total": 1})
        ctx.set(cnt.req, 1)
        ctx.set(cnt.idle, 1)
        for _ in range(6):
            got.append(isa.decode_result(cfg, await stream_get(ctx, cnt.beats)))
        # ``done`` (a register) the cycle after the last beat's transfer, and only then
        assert ctx.get(cnt.reading) == 0 and ctx.get(cnt.done) == 1
        ctx.set(cnt.req, 0)
        ctx.set(cnt.clear, 1)
        await ctx.tick()
        ctx.set(cnt.clear, 0)
        ctx.set(cnt.events, {})
        await ctx.tick()
        assert ctx.get(cnt.reading) == 0

    _run(cnt, tb)
    assert [b.kind for b in got] == [Kind.COUNTER] * 6
    assert [b.tag for b in got] == list(range(6))
    values = {isa.Counter.NAMES[b.tag]: b.values[0] for b in got}
    assert values["busy"] == 5 and values["stall"] == 3 and values["data_beats"] == 3
    assert values["plane_passes"] == 0 and values["result_beats"] == 0
    assert values["total"] >= 8


@pytest.mark.parametrize("lanes", [None, 2, 1])
def test_engine_latency_is_the_sum_of_its_stages(lanes):
    cfg = EngineConfig(rows=4, cols=4, max_reduction=64, pp_lanes=lanes)
    stages = CommandFrontEnd.LATENCY + ExecStage.LATENCY + ResultStage.latency_of(cfg)
    assert Engine(cfg).latency == stages == 15 + cfg.pp_slices - 1


def test_docs_engine_layout_tables_match_the_code():
    from pathlib import Path
    text = (Path(__file__).parent.parent / "docs" / "engine.md").read_text()
    begin, end = "<!-- layouts:begin -->\n", "\n<!-- layouts:end -->"
    doc = text[text.index(begin) + len(begin):text.index(end)]
    assert doc == isa.markdown_tables(EngineConfig()).rstrip("\n"), \
        "docs/engine.md is stale: python -m progressivenn.hw.isa prints the tables"


def test_layouts_round_trip_and_agree_with_the_field_table():
    cfg = EngineConfig(rows=3, cols=5, abits=6, obits=20, max_reduction=64, pp_lanes=1,
                       ppdepth=12)
    word = isa.cmd_run(bank=1, relu=True, k_start=2, k_end=5, wplanes=6, ngroups=7, nchunks=9,
                       npos=11, save=True)
    view = isa.Command.from_bits(word)
    assert (view.op, view.bank, view.p.run.k_end, view.p.run.npos) == (Op.RUN, 1, 5, 11)
    assert isa.decode_cmd(word)["nchunks"] == 9 == (word >> isa.FIELDS["nchunks"][0]) & 1023
    vals = (-(1 << 19), 5, (1 << 19) - 1)
    assert isa.decode_result(cfg, isa.encode_result(cfg, 4, vals)).values == vals
    assert isa.unpack_pp_word(cfg, isa.pack_pp_word(cfg, 7, [-3], [9])) == (7, [-3], [9])
    # the numpy packers and the scalar ones agree, bit positions taken from the layouts
    xs = np.arange(5) * 11 % 64
    assert isa.pack_array_words(isa.act_layout(cfg), xs[None])[0] == isa.pack_act_word(cfg, xs)
    assert isa.array_offsets(isa.weight_layout(cfg))[2, 4] == 2 * 5 + 4
    with pytest.raises(ValueError, match="does not fit"):
        isa.encode_result(cfg, 1, [1 << 19, 0, 0])


def test_narrow_counters_saturate_and_the_driver_refuses_the_reading():
    """counter_bits < 64: a counter stops at 2^bits - 1 (no wrap-around); the host refuses it."""
    from dataclasses import replace
    from progressivenn.sim.driver import read_counters

    cfg = replace(CFG, counter_bits=16)
    cnt = Counters(cfg)
    got = []

    async def tb(ctx):
        ctx.set(cnt.events, {"total": 1, "busy": 1})
        await ctx.tick().repeat((1 << 16) + 5)          # 5 events past the top
        ctx.set(cnt.events, {"busy": 1})
        ctx.set(cnt.req, 1)
        ctx.set(cnt.idle, 1)
        for _ in range(6):
            got.append(await stream_get(ctx, cnt.beats))

    _run(cnt, tb)
    values = {isa.Counter.NAMES[b.tag]: b.values[0] for b in (isa.decode_result(cfg, w) for w in got)}
    assert values["busy"] == values["total"] == (1 << 16) - 1
    with pytest.raises(RuntimeError, match="counter (total|busy) saturated"):
        read_counters(cfg, got, "test")
    with pytest.raises(ValueError, match="counter_bits"):
        replace(CFG, counter_bits=8)


def test_pack_value_builds_a_whole_layout_word():
    from amaranth.hdl import Const, Module, Signal
    from amaranth.lib import data
    layout = data.StructLayout({"a": 3, "b": 5, "c": 2})
    a = Signal(3)
    word = Signal(layout.size)
    m = Module()
    m.d.comb += word.eq(isa.pack_value(layout, a=a, c=2))
    assert len(isa.pack_value(layout, a=a)) == layout.size

    async def tb(ctx):
        ctx.set(a, 5)
        assert ctx.get(word) == layout.const({"a": 5, "b": 0, "c": 2}).as_value().value
    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()
    with pytest.raises(ValueError, match="no field 'd'"):
        isa.pack_value(layout, d=1)
    with pytest.raises(ValueError, match="4-bit value for the 3-bit 'a'"):
        isa.pack_value(layout, a=Const(9, 4))
