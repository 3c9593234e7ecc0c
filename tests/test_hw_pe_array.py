"""PE array in the Amaranth simulator against ``golden.acc_planes`` / ``golden.acc_direct``."""

from __future__ import annotations

import random

import pytest
import torch
from amaranth.sim import Simulator

from progressivenn.hw.isa import to_signed, signed_bits
from progressivenn.hw.pe_array import PEArray
from progressivenn.model import golden


def _acc_width(N, I, A):
    b = ((1 << N) - 1) * I * ((1 << A) - 1)
    return max(signed_bits(-b, b), A + (I + 1).bit_length() + 2 + 4)


def simulate_pe(R, C, A, N, jobs, *, seed=0, p_gap=0.3):
    """``jobs``: list of (u [R][I], x [I], p_from, p_to, init [R]) run back to back; every plane
    end is tagged. Returns {(job, plane p): acc list} observed at the array output."""
    I = max(len(j[1]) for j in jobs)
    AW = _acc_width(N, I, A)
    dut = PEArray(rows=R, cols=C, abits=A, acc_width=AW, tag_width=16)
    rng = random.Random(seed)
    beats = []      # (w, x, dbl, load, init, tag)
    marks = {}
    for jn, (u, x, p_from, p_to, init) in enumerate(jobs):
        nchunks = -(-len(x) // C)
        for p in range(p_from, p_to):
            j = N - 1 - p
            for c in range(nchunks):
                w = 0
                xw = 0
                for l in range(C):
                    i = c * C + l
                    if i < len(x):
                        xw |= int(x[i]) << (l * A)
                        for r in range(R):
                            w |= ((int(u[r][i]) >> j) & 1) << (r * C + l)
                    else:
                        for r in range(R):                 # junk weight bits on zero lanes
                            w |= rng.getrandbits(1) << (r * C + l)
                initw = sum((v & ((1 << AW) - 1)) << (r * AW) for r, v in enumerate(init))
                tag = 0
                if c == nchunks - 1:
                    tag = len(marks) + 1
                    marks[tag] = (jn, p)
                beats.append((w, xw, int(c == 0), int(c == 0 and p == p_from), initw, tag))
    got = {}

    async def tb(ctx):
        pending = list(beats)
        init_at = {}          # i_init is sampled LATENCY - 1 cycles after its chunk
        for n in range(len(beats) * 4 + 10):
            if pending and rng.random() >= p_gap:
                w, xw, dbl, load, initw, tag = pending.pop(0)
                ctx.set(dut.i_valid, 1)
                ctx.set(dut.i_w, w)
                ctx.set(dut.i_x, xw)
                ctx.set(dut.i_dbl, dbl)
                ctx.set(dut.i_load, load)
                ctx.set(dut.i_tag, tag)
                if load:
                    init_at[n + PEArray.LATENCY - 1] = initw
            else:
                ctx.set(dut.i_valid, 0)
                ctx.set(dut.i_w, rng.getrandbits(R * C))     # garbage while not valid
                ctx.set(dut.i_dbl, rng.getrandbits(1))
            ctx.set(dut.i_init, init_at.pop(n, rng.getrandbits(R * AW)))   # else garbage
            await ctx.tick()
            if ctx.get(dut.o_valid) and ctx.get(dut.o_tag):
                accw = ctx.get(dut.o_acc)
                got[marks[ctx.get(dut.o_tag)]] = [to_signed(accw >> (r * AW), AW) for r in range(R)]
            if not pending and not ctx.get(dut.o_active) and not ctx.get(dut.o_valid):
                break

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return got, len(marks)


@pytest.mark.parametrize("R,C,A,N,I", [(1, 1, 1, 1, 1), (2, 3, 4, 3, 7), (3, 4, 8, 4, 9),
                                       (4, 5, 3, 8, 5), (2, 16, 8, 8, 33)])
def test_pe_array_planes(R, C, A, N, I):
    rng = random.Random(R * 100 + C)
    u = torch.tensor([[rng.randrange(1 << N) for _ in range(I)] for _ in range(R)])
    xs = [torch.tensor([rng.randrange(1 << A) for _ in range(I)]) for _ in range(2)]
    # two jobs back to back (no bubble), every plane observed
    got, n = simulate_pe(R, C, A, N, [(u.tolist(), xs[0].tolist(), 0, N, [0] * R),
                                      (u.tolist(), xs[1].tolist(), 0, N, [0] * R)], seed=I)
    assert len(got) == n == 2 * N
    for jn in range(2):
        for p in range(N):
            exp = golden.acc_planes(u, xs[jn], p + 1, N).tolist()
            assert got[(jn, p)] == exp, f"job {jn} plane {p}: expected {exp}, got {got[(jn, p)]}"
    assert got[(0, N - 1)] == golden.acc_direct(u, xs[0], N, N).tolist()


@pytest.mark.parametrize("k", [1, 2, 3])
def test_pe_array_continuation(k):
    """Starting from the saved acc_k (i_load with i_init) and adding planes k..N-1 gives acc_N."""
    R, C, A, N, I = 3, 4, 5, 4, 10
    rng = random.Random(k)
    u = torch.tensor([[rng.randrange(1 << N) for _ in range(I)] for _ in range(R)])
    x = torch.tensor([rng.randrange(1 << A) for _ in range(I)])
    acc_k = golden.acc_planes(u, x, k, N).tolist()
    got, _ = simulate_pe(R, C, A, N, [(u.tolist(), x.tolist(), k, N, acc_k)], seed=k, p_gap=0.0)
    assert got[(0, N - 1)] == golden.acc_planes(u, x, N, N).tolist()


def test_pe_array_checks_parameters():
    with pytest.raises(ValueError, match="rows must be an integer.*not 0"):
        PEArray(rows=0, cols=4, abits=8, acc_width=32)
    with pytest.raises(ValueError, match="cols"):
        PEArray(rows=1, cols=2.5, abits=8, acc_width=32)
    with pytest.raises(ValueError, match="acc_width"):
        PEArray(rows=1, cols=4, abits=8, acc_width=4)


def test_pe_array_latency_is_its_constant():
    """A chunk presented in one cycle is in the accumulators ``PEArray.LATENCY`` cycles later."""
    dut = PEArray(rows=2, cols=4, abits=4, acc_width=16, tag_width=4)
    seen = []

    async def bench(ctx):
        ctx.set(dut.i_valid, 1)
        ctx.set(dut.i_load, 1)
        ctx.set(dut.i_dbl, 1)
        ctx.set(dut.i_w, 0xFF)
        ctx.set(dut.i_x, 0x1234)
        ctx.set(dut.i_tag, 5)
        await ctx.tick()
        ctx.set(dut.i_valid, 0)
        for cycle in range(1, 8):
            await ctx.tick()
            if ctx.get(dut.o_valid):
                seen.append((cycle + 1, ctx.get(dut.o_tag), ctx.get(dut.o_acc) & 0xFFFF))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    # lanes 1, 2, 3, 4 all +1: acc = sum x = 10 in both rows
    assert seen == [(PEArray.LATENCY, 5, 10)]
