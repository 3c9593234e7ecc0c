"""The whole engine in the Amaranth simulator against the golden model (``docs/engine.md``)."""

from __future__ import annotations

import random

import pytest
import torch

from progressivenn.hw import isa
from progressivenn.hw.isa import EngineConfig
from progressivenn.hw.engine import Engine
from progressivenn.model import golden

from hwutil import weight_beats, act_beats, pp_beats, run_engine


def small_cfg(**kw):
    base = dict(rows=2, cols=3, abits=4, nbits=3, max_reduction=64, mbits=10, bbits=20, obits=24,
                wdepth=128, adepth=32, ppdepth=32, accdepth=16)
    base.update(kw)
    return EngineConfig(**base)


class Layer:
    """One random layer: codes, activations, post-processing tables for every k, and the
    command/data words that load it."""

    def __init__(self, cfg, *, O, I, npos, seed, nbits=None, relu=True, wplanes=None, sbig=False):
        self.cfg = cfg
        self.N = nbits if nbits is not None else cfg.nbits
        self.O, self.I, self.npos, self.relu = O, I, npos, relu
        self.wplanes = self.N if wplanes is None else wplanes
        rng = random.Random(seed)
        self.u = torch.tensor([[rng.randrange(1 << self.N) for _ in range(I)] for _ in range(O)])
        self.x = torch.tensor([[rng.randrange(1 << cfg.abits) for _ in range(I)]
                               for _ in range(npos)])
        # tables that spread y over the interesting range (negative, inside, above 2^A-1)
        mlim, blim = (1 << (cfg.mbits - 1)) - 1, (1 << (cfg.bbits - 1)) - 1
        self.S, self.M, self.B = {}, {}, {}
        for k in range(1, self.N + 1):
            amax = int(golden.acc_planes(self.u, self.x, k, self.N).abs().max()) + 1
            S = rng.randrange(0, 63) if sbig else rng.randrange(0, 13)
            scale = max(1, (1 << (S + cfg.abits)) // amax)
            self.S[k] = S
            self.M[k] = [max(-mlim, min(mlim, rng.choice((-1, 1)) * rng.randint(0, scale)))
                         for _ in range(O)]
            self.B[k] = [max(-blim, min(blim, rng.randint(-(1 << max(0, S + cfg.abits - 2)),
                                                          1 << (S + cfg.abits))))
                         for _ in range(O)]
        self.ngroups = -(-O // cfg.rows)
        self.nchunks = -(-I // cfg.cols)

    def load_cmds(self, *, bank=0, w=True, a=True, pp=True):
        cmds, data = [], []
        if w:
            wb = weight_beats(self.cfg, self.u.tolist(), self.N, self.wplanes)
            cmds.append(isa.cmd_load_w(0, len(wb)))
            data += wb
        if pp:
            pb = pp_beats(self.cfg, self.S, self.M, self.B, self.wplanes, self.O)
            cmds.append(isa.cmd_load_pp(0, len(pb)))
            data += pb
        if a:
            ab = act_beats(self.cfg, self.x.tolist())
            cmds.append(isa.cmd_load_a(bank, 0, len(ab)))
            data += ab
        return cmds, data

    def run_cmd(self, *, k_start=0, k_end, bank=0, every_plane=False, save=False):
        return isa.cmd_run(bank=bank, relu=self.relu, k_start=k_start, k_end=k_end,
                           wplanes=self.wplanes, ngroups=self.ngroups, nchunks=self.nchunks,
                           npos=self.npos, every_plane=every_plane, save=save)

    def y(self, k):
        acc = golden.acc_planes(self.u, self.x, k, self.N)
        y = golden.postprocess(acc, torch.tensor(self.M[k]), torch.tensor(self.B[k]), self.S[k],
                               relu=self.relu, abits=self.cfg.abits)
        lim = 1 << (self.cfg.obits - 1)
        return y.clamp(-lim, lim - 1)            # logits saturate to OW bits (docs/engine.md)

    def expected(self, *, k_start=0, k_end, every_plane=False):
        ks = list(range(k_start + 1, k_end + 1)) if every_plane else [k_end]
        ys = {k: self.y(k) for k in ks}
        return [(pos, g, k, ys[k][pos, g * self.cfg.rows:(g + 1) * self.cfg.rows].tolist())
                for pos in range(self.npos) for g in range(self.ngroups) for k in ks]


    def with_x(self, seed):
        """The same layer (weights, tables) on other activations."""
        other = object.__new__(Layer)
        other.__dict__.update(self.__dict__)
        rng = random.Random(seed)
        other.x = torch.tensor([[rng.randrange(1 << self.cfg.abits) for _ in range(self.I)]
                                for _ in range(self.npos)])
        return other

    def busy(self, k_start=0, k_end=None):
        return self.npos * self.ngroups * (k_end - k_start) * self.nchunks


def check_beats(beats, expected, where=""):
    kinds = [b.kind for b in beats]
    assert kinds == sorted(kinds), f"{where}: a counter beat overtook a result beat: {kinds}"
    res = [b for b in beats if b.kind == 0]
    assert len(res) == len(expected), f"{where}: {len(res)} result beats, expected {len(expected)}"
    for n, (b, (pos, g, k, ys)) in enumerate(zip(res, expected)):
        got = list(b.values[:len(ys)])
        assert b.tag == k and got == ys, \
            f"{where}: beat {n}: mismatch at position {pos} group {g} k {k}: " \
            f"expected k={k} {ys}, " \
            f"got k={b.tag} {got}"


def counters(beats):
    cs = [b for b in beats if b.kind == 1]
    assert [b.tag for b in cs] == list(range(6)), [b.tag for b in cs]
    return {isa.Counter.NAMES[b.tag]: b.values[0] for b in cs}


def simulate(cfg, steps, *, seed=0, stalls=0.0, p_res=None, counters_at_end=True):
    """``steps``: list of (cmds, data, expected result beats). Runs them all in one simulation
    (CLEAR_COUNTERS first, READ_COUNTERS last) and checks every result."""
    eng = Engine(cfg)
    cmds, data, exp = [isa.cmd_clear_counters()], [], []
    for c, d, e in steps:
        cmds += c
        data += d
        exp += e
    if counters_at_end:
        cmds.append(isa.cmd_read_counters())
    run = run_engine(eng, cmds, data, len(exp) + 6 * counters_at_end, seed=seed, p_cmd=stalls,
                     p_data=stalls, p_res=stalls if p_res is None else p_res)
    check_beats(run.beats, exp, f"seed {seed}")
    cnt = counters(run.beats) if counters_at_end else None
    if cnt is not None:
        assert cnt["data_beats"] == len(data)
        assert cnt["result_beats"] == len(exp)
    return run, cnt, eng


def fresh_runs(layer, ks, *, bank=0, every_plane=False):
    """Load ``layer`` once, then one RUN per k in ``ks``."""
    cmds, data = layer.load_cmds(bank=bank)
    steps = [(cmds, data, [])]
    for k in ks:
        steps.append(([layer.run_cmd(k_end=k, bank=bank, every_plane=every_plane)], [],
                      layer.expected(k_end=k, every_plane=every_plane)))
    return steps


# ---- correctness at every k, several shapes, random stalls on all three streams ----------------

@pytest.mark.parametrize("R,C,relu", [(1, 1, True), (2, 3, False), (4, 5, True), (3, 8, False),
                                      (5, 2, True)])
def test_engine_every_k_shapes(R, C, relu):
    """Every k from 1 to N, R x C shapes where C does not divide I and R does not divide O."""
    cfg = small_cfg(rows=R, cols=C)
    layer = Layer(cfg, O=R + 1, I=2 * C + 1, npos=2, seed=R * 10 + C, relu=relu)
    ks = list(range(1, cfg.nbits + 1))
    run, cnt, _ = simulate(cfg, fresh_runs(layer, ks), seed=R + C, stalls=0.3)
    assert cnt["busy"] == sum(layer.busy(k_end=k) for k in ks)
    assert cnt["plane_passes"] == sum(layer.npos * layer.ngroups * k for k in ks)


@pytest.mark.parametrize("R,P,C", [(2, 1, 3), (4, 2, 5), (4, 1, 2), (6, 2, 3), (3, 1, 1)])
def test_engine_pp_lanes_every_k(R, P, C):
    """P < R post-processing lanes (Q = R/P slices per result): every k, with stalls, including
    k * nchunks < Q (results closer than Q cycles: the sequencer waits)."""
    cfg = small_cfg(rows=R, cols=C, pp_lanes=P, ppdepth=32 * R)
    assert cfg.pp_slices == R // P and cfg.pp_width == isa.SW + P * (cfg.mbits + cfg.bbits)
    for relu in (True, False):
        layer = Layer(cfg, O=2 * R + 1, I=C + 1, npos=2, seed=R * 10 + P + relu, relu=relu)
        ks = list(range(1, cfg.nbits + 1))
        steps = fresh_runs(layer, ks) + fresh_runs(layer, [cfg.nbits], every_plane=True)
        run, cnt, _ = simulate(cfg, steps, seed=R + P, stalls=0.3)
        assert cnt["busy"] == sum(layer.busy(k_end=k) for k in ks) + layer.busy(k_end=cfg.nbits)


@pytest.mark.parametrize("k,nchunks", [(1, 1), (1, 2), (2, 2), (1, 4), (3, 2)])
def test_engine_pp_lanes_timing(k, nchunks):
    """Q = 4 slices, no stalls: a result every max(Q, k*nchunks) cycles, so the sequencer stalls
    exactly (results - 1) * (Q - k*nchunks) cycles when k*nchunks < Q and never otherwise; the
    last beat comes busy + stall + latency cycles after the RUN started."""
    cfg = small_cfg(rows=4, cols=2, pp_lanes=1, ppdepth=128)
    Q = cfg.pp_slices
    layer = Layer(cfg, O=8, I=2 * nchunks, npos=3, seed=k * 7 + nchunks)
    assert layer.nchunks == nchunks
    cmds, data = layer.load_cmds()
    steps = [(cmds, data, []), ([layer.run_cmd(k_end=k)], [], layer.expected(k_end=k))]
    run, cnt, eng = simulate(cfg, steps, seed=0, stalls=0.0)
    n_res = layer.npos * layer.ngroups
    stall = (n_res - 1) * max(0, Q - k * nchunks)
    assert cnt["busy"] == layer.busy(k_end=k) and cnt["stall"] == stall
    start = max(run.cmd_cycles[len(cmds) + 1], run.data_cycles[-1])
    assert run.beat_cycles[n_res - 1] - start == layer.busy(k_end=k) + stall + eng.latency


def test_engine_n8():
    """N = 8, A = 8: every k from 1 to 8 in one simulation, with stalls."""
    cfg = EngineConfig(rows=4, cols=8, abits=8, nbits=8, max_reduction=64, wdepth=256, adepth=32,
                       ppdepth=64, accdepth=16)
    layer = Layer(cfg, O=6, I=19, npos=2, seed=8, relu=True)
    ks = list(range(1, 9))
    run, cnt, _ = simulate(cfg, fresh_runs(layer, ks), seed=8, stalls=0.2)
    assert cnt["busy"] == sum(layer.busy(k_end=k) for k in ks)


def test_engine_logits_saturate():
    """Without ReLU the values saturate to the OW-bit range instead of wrapping."""
    cfg = small_cfg(obits=6, abits=4)
    layer = Layer(cfg, O=3, I=7, npos=3, seed=5, relu=False)
    for k in layer.M:
        layer.M[k] = [v * 8 for v in layer.M[k]]
    exp = layer.expected(k_end=3)
    assert any(abs(v) == 32 or v == 31 for e in exp for v in e[3]), "no value saturates"
    simulate(cfg, fresh_runs(layer, [3]), seed=5, stalls=0.2)


def test_engine_wplanes_fewer_than_n():
    """Only the top wplanes planes are stored (the layout uses wplanes, not N)."""
    cfg = small_cfg(nbits=4)
    layer = Layer(cfg, O=4, I=5, npos=2, seed=11, wplanes=2)
    simulate(cfg, fresh_runs(layer, [1, 2]), seed=11, stalls=0.2)


# ---- progressive: every_plane and continuation ---------------------------------------------------

def test_engine_every_plane():
    cfg = small_cfg(nbits=4)
    layer = Layer(cfg, O=3, I=8, npos=2, seed=3)
    run, cnt, _ = simulate(cfg, fresh_runs(layer, [4, 2], every_plane=True), seed=3, stalls=0.3)
    assert cnt["busy"] == layer.busy(k_end=4) + layer.busy(k_end=2)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_engine_continuation_equals_fresh(k):
    """RUN k planes with save, then RUN k_start=k, k_end=k+1: the same beats as a fresh RUN at
    k+1, at the cost of one plane only (busy counter)."""
    cfg = small_cfg(nbits=4)
    layer = Layer(cfg, O=3, I=7, npos=3, seed=20 + k, relu=(k % 2 == 1))
    cmds, data = layer.load_cmds()
    fresh = layer.expected(k_end=k + 1)
    steps = [(cmds, data, []),
             ([layer.run_cmd(k_end=k, save=True)], [], layer.expected(k_end=k)),
             ([layer.run_cmd(k_start=k, k_end=k + 1, save=True)], [], fresh),
             ([layer.run_cmd(k_end=k + 1)], [], fresh)]
    run, cnt, _ = simulate(cfg, steps, seed=k, stalls=0.25)
    res = [b for b in run.beats if b.kind == 0]
    n = len(fresh)
    assert res[-2 * n:-n] == res[-n:]           # continued == fresh, beat for beat
    assert cnt["busy"] == layer.busy(k_end=k) + layer.busy(k, k + 1) + layer.busy(k_end=k + 1)


def test_engine_continuation_back_to_back_single_job():
    """One (pos, g) job and one chunk: the continuation RUN reads the accumulator the previous RUN
    saved only a few cycles earlier (read-after-write across RUNs)."""
    cfg = small_cfg(nbits=4)
    layer = Layer(cfg, O=2, I=3, npos=1, seed=77)
    cmds, data = layer.load_cmds()
    steps = [(cmds, data, [])]
    for k in range(1, 5):
        steps.append(([layer.run_cmd(k_start=k - 1, k_end=k, save=True)], [],
                      layer.expected(k_end=k)))
    run, cnt, _ = simulate(cfg, steps, seed=77, stalls=0.0)
    assert cnt["busy"] == 4


def test_engine_continuation_chain_every_plane():
    """0->1 (save), 1->3 every_plane (save), 3->4: every k exact, each plane computed once."""
    cfg = small_cfg(nbits=4, rows=3, cols=4)
    layer = Layer(cfg, O=5, I=9, npos=2, seed=42)
    cmds, data = layer.load_cmds()
    steps = [(cmds, data, []),
             ([layer.run_cmd(k_end=1, save=True)], [], layer.expected(k_end=1)),
             ([layer.run_cmd(k_start=1, k_end=3, save=True, every_plane=True)], [],
              layer.expected(k_start=1, k_end=3, every_plane=True)),
             ([layer.run_cmd(k_start=3, k_end=4)], [], layer.expected(k_end=4))]
    run, cnt, _ = simulate(cfg, steps, seed=42, stalls=0.3)
    assert cnt["busy"] == layer.busy(k_end=4)
    assert cnt["plane_passes"] == layer.npos * layer.ngroups * 4


# ---- counters, timing, back-pressure ------------------------------------------------------------

def test_engine_bubble_free_latency_and_counters():
    """No stalls, ready consumer: busy == npos*ngroups*k*nchunks exactly, stall == 0, and the last
    beat of two back-to-back RUNs comes busy1 + busy2 + latency cycles after the first RUN was
    accepted: no bubble anywhere (chunk, plane, group, position or RUN boundaries)."""
    cfg = small_cfg(rows=2, cols=3, nbits=3)
    layer = Layer(cfg, O=5, I=8, npos=3, seed=7)
    cmds, data = layer.load_cmds()
    steps = [(cmds, data, []),
             ([layer.run_cmd(k_end=3)], [], layer.expected(k_end=3)),
             ([layer.run_cmd(k_end=2, every_plane=True)], [],
              layer.expected(k_end=2, every_plane=True))]
    run, cnt, eng = simulate(cfg, steps, seed=1, stalls=0.0)
    busy = layer.busy(k_end=3) + layer.busy(k_end=2)
    assert cnt["busy"] == busy
    assert cnt["stall"] == 0
    assert cnt["plane_passes"] == layer.npos * layer.ngroups * 5
    # the RUN can start once it is accepted and the last data beat of the loads has been written
    start = max(run.cmd_cycles[len(cmds) + 1], run.data_cycles[-1])
    n_res = len(layer.expected(k_end=3)) + len(layer.expected(k_end=2, every_plane=True))
    last_res = run.beat_cycles[n_res - 1]
    assert last_res - start == busy + eng.latency, (last_res - start, busy, eng.latency)
    # counters come after every result; 'total' covers the whole sequence
    assert cnt["total"] >= run.beat_cycles[-7] - run.cmd_cycles[0]


def test_engine_counter_beats_between_runs_under_back_pressure(seed=1):
    """READ_COUNTERS between RUNs writes its beats into the result FIFO (they take credits like
    results): under heavy back-pressure on ``res`` no result is lost or reordered, and each read
    comes after every result before it and before every result after it."""
    cfg = small_cfg(rows=2, cols=3, nbits=3)
    layer = Layer(cfg, O=5, I=8, npos=4, seed=11)
    cmds, data = layer.load_cmds()
    eng = Engine(cfg)
    first, second = layer.expected(k_end=3), layer.expected(k_end=2, every_plane=True)
    seq = [isa.cmd_clear_counters(), *cmds, layer.run_cmd(k_end=3), isa.cmd_read_counters(),
           layer.run_cmd(k_end=2, every_plane=True), isa.cmd_read_counters()]
    run = run_engine(eng, seq, data, len(first) + len(second) + 12, seed=seed, p_cmd=0.2,
                     p_data=0.2, p_res=0.8)
    kinds = [b.kind for b in run.beats]
    assert kinds == [0] * len(first) + [1] * 6 + [0] * len(second) + [1] * 6, kinds
    check_beats(run.beats[:len(first)], first, "first RUN")
    check_beats(run.beats[len(first) + 6:-6], second, "second RUN")
    one, two = counters(run.beats[len(first):len(first) + 6]), counters(run.beats[-6:])
    assert one["result_beats"] == len(first) and two["result_beats"] == len(first) + len(second)
    assert one["data_beats"] == two["data_beats"] == len(data)


def test_engine_single_run_latency():
    """The documented fixed latency (Engine.latency) for one RUN from idle."""
    cfg = small_cfg()
    layer = Layer(cfg, O=2, I=3, npos=1, seed=9)     # one chunk, one group, one position
    cmds, data = layer.load_cmds()
    for k in (1, 3):
        steps = [(cmds, data, []), ([layer.run_cmd(k_end=k)], [], layer.expected(k_end=k))]
        run, cnt, eng = simulate(cfg, steps, seed=k, stalls=0.0, counters_at_end=True)
        start = max(run.cmd_cycles[len(cmds) + 1], run.data_cycles[-1])
        assert run.beat_cycles[0] - start == k + eng.latency


def test_engine_one_cycle_runs_back_to_back():
    """Commands execute one per cycle: RUNs of one busy cycle each deliver one beat per cycle."""
    cfg = small_cfg()
    layer = Layer(cfg, O=2, I=3, npos=1, seed=10)
    cmds, data = layer.load_cmds()
    steps = [(cmds, data, [])] + [([layer.run_cmd(k_end=1)], [], layer.expected(k_end=1))
                                  for _ in range(5)]
    run, cnt, _ = simulate(cfg, steps, seed=0)
    cyc = run.beat_cycles[:5]
    assert [b - a for a, b in zip(cyc, cyc[1:])] == [1, 1, 1, 1], cyc
    assert cnt["busy"] == 5 and cnt["stall"] == 0


def test_engine_back_pressure_stalls():
    """A consumer that holds back: results stay exact, busy stays exact, stall counts > 0."""
    cfg = small_cfg(nbits=2)
    layer = Layer(cfg, O=4, I=3, npos=8, seed=13)     # nchunks = 1: a result every plane
    run, cnt, eng = simulate(cfg, fresh_runs(layer, [2, 1], every_plane=True), seed=13,
                             stalls=0.0, p_res=0.85)
    assert cnt["busy"] == layer.busy(k_end=2) + layer.busy(k_end=1)
    assert cnt["stall"] > 0


# ---- hazards: ping-pong activation banks ---------------------------------------------------------

def test_engine_pingpong_load_overlaps_run():
    """LOAD_A into the other bank proceeds while a RUN computes (and is correct); LOAD_A into the
    bank a RUN reads waits for it; results of each RUN come from its own activations."""
    cfg = small_cfg(rows=2, cols=3, nbits=3, adepth=16)
    a = Layer(cfg, O=3, I=8, npos=4, seed=31)
    b, c = a.with_x(32), a.with_x(33)
    k = 3
    cmds, data = a.load_cmds(bank=0)
    steps = [(cmds, data, []),
             ([a.run_cmd(k_end=k, bank=0)], [], a.expected(k_end=k))]
    # into bank 1 during the RUN on bank 0
    cmds_b, data_b = b.load_cmds(bank=1, w=False, pp=False)
    steps.append((cmds_b + [b.run_cmd(k_end=k, bank=1)], data_b, b.expected(k_end=k)))
    # into bank 0 right after: must wait while RUN(bank 0) reads... it is already done; then into
    # bank 1 while RUN(bank 1) reads it: must wait for that RUN, then RUN again
    cmds_c, data_c = c.load_cmds(bank=1, w=False, pp=False)
    steps.append((cmds_c + [c.run_cmd(k_end=k, bank=1)], data_c, c.expected(k_end=k)))
    run, cnt, _ = simulate(cfg, steps, seed=3, stalls=0.0)
    n_a = len(data)
    first_run_done = run.beat_cycles[len(a.expected(k_end=k)) - 1]
    b_load = run.data_cycles[n_a:n_a + len(data_b)]
    assert b_load[-1] < first_run_done - 5, "LOAD_A(bank 1) did not overlap RUN(bank 0)"
    assert cnt["busy"] == 3 * a.busy(k_end=k)


def test_engine_same_bank_load_waits():
    """LOAD_A into the bank a RUN is reading is held until that RUN has read it."""
    cfg = small_cfg(rows=2, cols=3, nbits=3, adepth=16)
    a = Layer(cfg, O=3, I=8, npos=4, seed=41)
    b = a.with_x(42)
    cmds, data = a.load_cmds(bank=0)
    cmds_b, data_b = b.load_cmds(bank=0, w=False, pp=False)
    steps = [(cmds, data, []),
             ([a.run_cmd(k_end=3, bank=0)], [], a.expected(k_end=3)),
             (cmds_b + [b.run_cmd(k_end=2, bank=0)], data_b, b.expected(k_end=2))]
    for seed in range(2):
        simulate(cfg, steps, seed=seed, stalls=0.1 * seed)


def test_engine_weight_and_table_loads_wait_for_run():
    """LOAD_W and LOAD_PP issued right after a RUN wait until it is done: the RUN sees the old
    weights and tables, the next RUN the new ones."""
    cfg = small_cfg(rows=2, cols=3, nbits=3)
    a = Layer(cfg, O=3, I=8, npos=3, seed=51)
    b = Layer(cfg, O=3, I=8, npos=3, seed=52)
    cmds_a, data_a = a.load_cmds(bank=0)
    cmds_b, data_b = b.load_cmds(bank=1)
    steps = [(cmds_a, data_a, []),
             ([a.run_cmd(k_end=3, bank=0)], [], a.expected(k_end=3)),
             (cmds_b + [b.run_cmd(k_end=2, bank=1)], data_b, b.expected(k_end=2))]
    simulate(cfg, steps, seed=5, stalls=0.0)


def test_engine_reset_mid_run():
    """Reset while a RUN computes and its results are held back: afterwards the engine is idle and
    the same job gives exact results (no state survives the reset)."""
    from amaranth.hdl import Module, ClockDomain
    from amaranth.sim import Simulator
    from hwutil import stream_put, stream_get

    cfg = small_cfg()
    layer = Layer(cfg, O=3, I=7, npos=3, seed=1)
    eng = Engine(cfg)
    top = Module()
    top.domains.sync = cd = ClockDomain("sync")
    top.submodules.eng = eng
    cmds, data = layer.load_cmds()
    cmds.append(layer.run_cmd(k_end=3))
    exp = layer.expected(k_end=3)
    got, seen = [], {}

    async def job(ctx):
        for c in cmds:
            await stream_put(ctx, eng.cmd, c)

    async def feed(ctx):
        for w in data:
            await stream_put(ctx, eng.data, w)

    async def tb(ctx):
        ctx.set(eng.res.ready, 0)
        # first attempt: everything sent, nothing collected, then reset mid-RUN
        async for _, _, busy, valid in ctx.tick().sample(eng.busy, eng.res.valid):
            if valid:
                break
        seen["busy_before"] = busy
        ctx.set(cd.rst, 1)
        await ctx.tick()             # (until/repeat would raise DomainReset: plain ticks here)
        await ctx.tick()
        ctx.set(cd.rst, 0)
        seen["busy_after"] = ctx.get(eng.busy)
        seen["valid_after"] = ctx.get(eng.res.valid)
        # second attempt
        ctx.set(eng.cmd.valid, 0)
        ctx.set(eng.data.valid, 0)
        for c in cmds:
            await stream_put(ctx, eng.cmd, c)
        for _ in exp:
            got.append(isa.decode_result(cfg, await stream_get(ctx, eng.res)))

    async def feed2(ctx):
        while not ctx.get(cd.rst):
            await ctx.tick()
        while ctx.get(cd.rst):
            await ctx.tick()
        for w in data:
            await stream_put(ctx, eng.data, w)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(job, background=True)
    sim.add_testbench(feed, background=True)
    sim.add_testbench(feed2, background=True)
    sim.add_testbench(tb)
    sim.run()
    assert seen == {"busy_before": 1, "busy_after": 0, "valid_after": 0}
    check_beats(got, exp, "after reset")


def test_engine_rejects_bad_config():
    with pytest.raises(TypeError, match="EngineConfig"):
        Engine({"rows": 4})
    with pytest.raises(ValueError, match="rows"):
        EngineConfig(rows=0)
    with pytest.raises(ValueError, match="pp_lanes 3 must divide rows 4"):
        EngineConfig(rows=4, pp_lanes=3)
    with pytest.raises(ValueError, match="ppdepth 2 cannot hold"):
        EngineConfig(rows=4, pp_lanes=1, ppdepth=2)


# ---- the default configuration, random command sequences (more of them: -m slow) ----------------

def test_engine_default_config_every_k():
    """The default EngineConfig (R=8, C=16, A=8, N=8) at every k, with stalls."""
    cfg = EngineConfig()
    layer = Layer(cfg, O=12, I=40, npos=2, seed=1234)
    ks = list(range(1, 9))
    run, cnt, _ = simulate(cfg, fresh_runs(layer, ks), seed=5, stalls=0.2)
    assert cnt["busy"] == sum(layer.busy(k_end=k) for k in ks)


@pytest.mark.parametrize("seed", [*range(6), *(pytest.param(s, marks=pytest.mark.slow)
                                                for s in range(6, 60))])
def test_engine_random_sequences(seed):
    """Random shapes, k ranges, continuation chains, banks and stalls."""
    rng = random.Random(seed)
    R, C, N = rng.randint(1, 5), rng.randint(1, 9), rng.randint(1, 5)
    lanes = rng.choice([0] + [p for p in range(1, R + 1) if R % p == 0])
    cfg = small_cfg(rows=R, cols=C, nbits=N, abits=rng.randint(1, 6), wdepth=512, adepth=64,
                    accdepth=32, ppdepth=64 * R, obits=rng.choice([8, 24]), pp_lanes=lanes)
    layer = Layer(cfg, O=rng.randint(1, 3 * R), I=rng.randint(1, 3 * C), npos=rng.randint(1, 3),
                  seed=seed, relu=rng.random() < 0.5)
    steps = [layer.load_cmds(bank=0) + ([],)]
    busy = 0
    k = 0
    bank = 0
    cur = layer
    for _ in range(rng.randint(2, 5)):
        if rng.random() < 0.4:                       # new activations into the other bank
            bank ^= 1
            cur = layer.with_x(rng.randrange(1000))
            c, d = cur.load_cmds(bank=bank, w=False, pp=False)
            steps.append((c, d, []))
            k = 0
        if k >= N or rng.random() < 0.3:
            k = 0
        k_end = rng.randint(k + 1, N)
        ep = rng.random() < 0.5
        steps.append(([cur.run_cmd(k_start=k, k_end=k_end, bank=bank, every_plane=ep,
                                   save=True)], [],
                      cur.expected(k_start=k, k_end=k_end, every_plane=ep)))
        busy += cur.busy(k, k_end)
        k = k_end
    run, cnt, _ = simulate(cfg, steps, seed=seed, stalls=rng.choice([0.0, 0.3, 0.6]))
    assert cnt["busy"] == busy


def test_engine_sliced_memories(monkeypatch):
    """ECP5's memory slicing (``exec_stage.memory_slices``: 18-bit memories side by side on one
    address, for the weight, activation and table memories 513..1024 deep) holds the same memory:
    forced on every memory wider than 18 bits, the default configuration at every k and Q = 4
    post-processing slices are bit-exact."""
    from progressivenn.hw import exec_stage, result_stage
    def sliced(platform, width, depth):
        return [min(18, width - lo) for lo in range(0, width, 18)]
    monkeypatch.setattr(exec_stage, "memory_slices", sliced)
    monkeypatch.setattr(result_stage, "memory_slices", sliced)
    test_engine_default_config_every_k()
    test_engine_pp_lanes_every_k(4, 1, 2)
