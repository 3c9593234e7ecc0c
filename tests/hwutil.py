"""Shared helpers of the Amaranth-simulator tests: stream drivers with random idle/back-pressure,
the host-side packing of an engine job (``docs/engine.md`` layouts via ``hw.isa``) and an engine
simulation runner."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from amaranth.sim import Simulator

from progressivenn.hw import isa
from progressivenn.hw.isa import EngineConfig

__all__ = [
    "stream_put", "stream_get", "weight_beats", "act_beats", "pp_beats", "EngineRun",
    "run_engine",
]


async def _idle(ctx, rng, p):
    while rng is not None and p > 0 and rng.random() < p:
        await ctx.tick()


async def stream_put(ctx, st, payload, *, rng=None, p_idle=0.0):
    """Send one beat on stream ``st``; with ``rng``, wait idle cycles first (probability
    ``p_idle`` per cycle). Returns once the beat has transferred."""
    await _idle(ctx, rng, p_idle)
    ctx.set(st.valid, 1)
    ctx.set(st.payload, payload)
    await ctx.tick().until(st.ready)
    ctx.set(st.valid, 0)


async def stream_get(ctx, st, *, rng=None, p_idle=0.0):
    """Receive one beat from stream ``st``; with ``rng``, hold ``ready`` low for random cycles
    first (back-pressure). Returns the payload."""
    await _idle(ctx, rng, p_idle)
    ctx.set(st.ready, 1)
    payload, = await ctx.tick().sample(st.payload).until(st.valid)
    ctx.set(st.ready, 0)
    return payload


# ---- host-side packing ---------------------------------------------------------------------------

def _ceil_div(a, b):
    return -(-a // b)


def weight_beats(cfg: EngineConfig, u, nbits: int, wplanes: int | None = None) -> list[int]:
    """Weight words for codes ``u`` (``[O][I]`` ints) in the layout of ``docs/engine.md``: word
    ``(g*wplanes + p)*nchunks + c`` holds plane ``j = nbits-1-p`` of rows ``g*R..``,
    lanes ``c*C..``.
    Unused rows/lanes are filled with random bits (the engine must ignore them)."""
    wplanes = nbits if wplanes is None else wplanes
    R, C = cfg.rows, cfg.cols
    O, I = len(u), len(u[0])
    ngroups, nchunks = _ceil_div(O, R), _ceil_div(I, C)
    junk = random.Random(1234)
    words = []
    for g in range(ngroups):
        for p in range(wplanes):
            j = nbits - 1 - p
            for c in range(nchunks):
                bits = [[(int(u[g * R + r][c * C + l]) >> j) & 1
                         if g * R + r < O and c * C + l < I else junk.getrandbits(1)
                         for l in range(C)] for r in range(R)]
                words.append(isa.pack_weight_word(cfg, bits))
    return words


def act_beats(cfg: EngineConfig, x) -> list[int]:
    """Activation words for ``x`` (``[npos][I]`` codes): word ``pos*nchunks + c``; lanes past I
    are 0."""
    C = cfg.cols
    I = len(x[0])
    nchunks = _ceil_div(I, C)
    return [isa.pack_act_word(cfg, [int(v) for v in row[c * C:(c + 1) * C]])
            for row in x for c in range(nchunks)]


def pp_beats(cfg: EngineConfig, shift, m, b, nk: int, O: int) -> list[int]:
    """Post-processing words for k = 1..nk: entry ``(k-1)*ngroups + g``; ``shift[k]``,
    ``m[k][o]``, ``b[k][o]`` (index k from 1)."""
    R = cfg.rows
    ngroups = _ceil_div(O, R)
    words = []
    for k in range(1, nk + 1):
        for g in range(ngroups):
            os_ = range(g * R, min((g + 1) * R, O))
            words.extend(isa.pack_pp_words(cfg, shift[k], [m[k][o] for o in os_],
                                          [b[k][o] for o in os_]))
    return words


# ---- simulation runner ---------------------------------------------------------------------------

@dataclass
class EngineRun:
    """What one simulated command sequence produced."""
    beats: list = field(default_factory=list)        # decoded ResultBeat, in order
    beat_cycles: list = field(default_factory=list)  # cycle each beat transferred
    cmd_cycles: list = field(default_factory=list)   # cycle each command transferred
    data_cycles: list = field(default_factory=list)  # cycle each data beat transferred
    busy_low_cycle: int = -1                          # first cycle busy was low after the last beat
    cycles: int = 0


def run_engine(engine, cmds, data, nbeats, *, seed=0, p_cmd=0.0, p_data=0.0, p_res=0.0,
               max_cycles=20000, vcd=None) -> EngineRun:
    """Drive ``cmds`` and ``data`` (lists of ints) into ``engine`` with random idle cycles, collect
    ``nbeats`` result beats with random back-pressure, then wait for ``busy`` to fall."""
    cfg = engine.cfg
    out = EngineRun()
    rng_c, rng_d, rng_r = (random.Random(seed * 3 + i) for i in range(3))
    cycle = [0]

    async def clock_count(ctx):
        async for _ in ctx.tick():
            cycle[0] += 1

    async def cmd_tb(ctx):
        for w in cmds:
            await stream_put(ctx, engine.cmd, w, rng=rng_c, p_idle=p_cmd)
            out.cmd_cycles.append(cycle[0] - 1)

    async def data_tb(ctx):
        for w in data:
            await stream_put(ctx, engine.data, w, rng=rng_d, p_idle=p_data)
            out.data_cycles.append(cycle[0] - 1)

    async def res_tb(ctx):
        while len(out.beats) < nbeats:
            await _idle(ctx, rng_r, p_res)
            ctx.set(engine.res.ready, 1)
            while True:
                _, _, payload, valid = await ctx.tick().sample(engine.res.payload, engine.res.valid)
                if valid:
                    break
                if cycle[0] > max_cycles:
                    raise TimeoutError(f"no result after {max_cycles} cycles; got {len(out.beats)}"
                                       f" of {nbeats} beats")
            ctx.set(engine.res.ready, 0)
            out.beats.append(isa.decode_result(cfg, payload))
            out.beat_cycles.append(cycle[0] - 1)
        while True:
            _, _, busy = await ctx.tick().sample(engine.busy)
            if not busy:
                out.busy_low_cycle = cycle[0] - 1
                break
            if cycle[0] > max_cycles:
                raise TimeoutError(f"busy still high after {max_cycles} cycles")
        # a few more cycles: nothing else may come out
        for _ in range(4):
            _, _, valid = await ctx.tick().sample(engine.res.valid)
            assert not valid, "an unexpected extra result beat"
        out.cycles = cycle[0]

    sim = Simulator(engine)
    sim.add_clock(1e-8)
    sim.add_process(clock_count)
    sim.add_testbench(cmd_tb, background=True)
    sim.add_testbench(data_tb, background=True)
    sim.add_testbench(res_tb)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return out
