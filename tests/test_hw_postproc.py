"""Post-processing unit in the Amaranth simulator against ``golden.postprocess``."""

from __future__ import annotations

import random

import pytest
import torch
from amaranth.sim import Simulator
from hypothesis import given, settings, strategies as st, HealthCheck

from progressivenn.hw.isa import to_signed, to_unsigned, SW
from progressivenn.hw.postproc import Mult18Model, PostProc
from progressivenn.model import golden


def expected(acc, m, b, s, relu, abits, obits):
    y = golden.postprocess(torch.tensor(acc), torch.tensor(m), torch.tensor(b), s, relu=relu,
                           abits=abits).tolist()
    lo, hi = -(1 << (obits - 1)), (1 << (obits - 1)) - 1
    return [min(hi, max(lo, v)) for v in y]


def simulate_pp(dut, vectors, *, seed=0, p_gap=0.3):
    """``vectors``: list of (acc[R], m[R], b[R], S, relu). Returns the outputs in order and checks
    the latency and the tag alignment."""
    R, AW, MW, BW, OW = dut.rows, dut.acc_width, dut.mbits, dut.bbits, dut.obits
    rng = random.Random(seed)
    outs, sent = [], []
    cycle = 0

    async def tb(ctx):
        nonlocal cycle
        pending = list(enumerate(vectors))
        while pending or ctx.get(dut.o_active):
            if pending and rng.random() >= p_gap:
                n, (acc, m, b, s, relu) = pending.pop(0)
                ppw = s
                for r in range(R):
                    ppw |= to_unsigned(m[r], MW) << (SW + r * (MW + BW))
                    ppw |= to_unsigned(b[r], BW) << (SW + r * (MW + BW) + MW)
                ctx.set(dut.i_valid, 1)
                ctx.set(dut.i_acc, sum(to_unsigned(a, AW) << (r * AW) for r, a in enumerate(acc)))
                ctx.set(dut.i_pp, ppw)
                ctx.set(dut.i_relu, relu)
                ctx.set(dut.i_tag, n)
                sent.append(cycle)
            else:
                ctx.set(dut.i_valid, 0)
            await ctx.tick()
            cycle += 1
            if ctx.get(dut.o_valid):
                yw = ctx.get(dut.o_y)
                outs.append((cycle, ctx.get(dut.o_tag),
                             [to_signed(yw >> (r * OW), OW) for r in range(R)]))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert [t for _, t, _ in outs] == list(range(len(vectors)))
    assert [c - s for (c, _, _), s in zip(outs, sent)] == [dut.latency] * len(vectors)
    return [y for _, _, y in outs]


def _extremes(w):
    return [-(1 << (w - 1)), (1 << (w - 1)) - 1, 0, -1, 1]


@pytest.mark.parametrize("mult18", [None, Mult18Model], ids=["fabric", "mult18"])
@pytest.mark.parametrize("R,AW,MW,BW,A,OW", [(1, 8, 4, 6, 4, 8), (3, 20, 18, 48, 8, 32),
                                             (2, 30, 18, 20, 8, 12), (4, 12, 10, 40, 3, 64)])
def test_postproc_random_and_extremes(R, AW, MW, BW, A, OW, mult18):
    """Bit-exact and at :attr:`PostProc.latency`; ``mult18``: the partial products through an
    18 x 18 block with its own input and output registers (the ECP5 path, simulated by
    :class:`Mult18Model`)."""
    dut = PostProc(rows=R, acc_width=AW, mbits=MW, bbits=BW, abits=A, obits=OW, tag_width=16,
                   mult18=mult18)
    rng = random.Random(AW * MW)
    vecs = []
    for n in range(60):
        pick = (lambda w: rng.choice(_extremes(w))) if n % 3 == 0 else \
            (lambda w: rng.randint(-(1 << (w - 1)), (1 << (w - 1)) - 1))
        s = rng.choice([0, 1, 2, 5, AW, AW + MW - 1, AW + MW, AW + MW + 1, AW + MW + 2,
                        (1 << SW) - 1, rng.randrange(1 << SW)])
        vecs.append(([pick(AW) for _ in range(R)], [pick(MW) for _ in range(R)],
                     [pick(BW) for _ in range(R)], s, n % 2 == 0))
    ys = simulate_pp(dut, vecs, seed=R)
    for n, ((acc, m, b, s, relu), y) in enumerate(zip(vecs, ys)):
        exp = expected(acc, m, b, s, relu, A, OW)
        assert y == exp, \
            f"vector {n}: acc={acc} M={m} B={b} S={s} relu={relu}: expected {exp}, got {y}"


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_postproc_property(data):
    AW, MW, BW, A, OW = 16, 8, 24, 5, 20
    dut = PostProc(rows=2, acc_width=AW, mbits=MW, bbits=BW, abits=A, obits=OW, tag_width=16)
    sint = lambda w: st.integers(-(1 << (w - 1)), (1 << (w - 1)) - 1)
    vec = st.tuples(st.lists(sint(AW), min_size=2, max_size=2),
                    st.lists(sint(MW), min_size=2, max_size=2),
                    st.lists(sint(BW), min_size=2, max_size=2),
                    st.integers(0, (1 << SW) - 1), st.booleans())
    vecs = data.draw(st.lists(vec, min_size=1, max_size=6))
    ys = simulate_pp(dut, vecs, p_gap=0.0)
    for (acc, m, b, s, relu), y in zip(vecs, ys):
        assert y == expected(acc, m, b, s, relu, A, OW)


def test_postproc_checks_parameters():
    with pytest.raises(ValueError, match="mbits must be an integer.*not 40"):
        PostProc(rows=1, acc_width=8, mbits=40, bbits=8, abits=4, obits=8)
    with pytest.raises(ValueError, match="obits"):
        PostProc(rows=1, acc_width=8, mbits=8, bbits=8, abits=8, obits=8)


class _ECP5:
    family = "ecp5"


@pytest.mark.parametrize("AW,MW,blocks", [(27, 18, 2), (33, 18, 2), (34, 18, 0), (27, 19, 0)])
def test_postproc_ecp5_uses_registered_mult18x18d(AW, MW, blocks):
    """Elaborated for ECP5, each lane's two partial products are ``MULT18X18D`` blocks with their
    input and output registers on (two per lane), when the operands fit 18 signed bits; other
    platforms (and operands that do not fit) keep the fabric multiply, whose RTLIL is unchanged."""
    from amaranth.back import rtlil
    mk = lambda: PostProc(rows=2, acc_width=AW, mbits=MW, bbits=24, abits=8, obits=16)
    text = rtlil.convert(mk(), platform=_ECP5())
    assert text.count("cell \\MULT18X18D ") == 2 * blocks
    if blocks:
        for reg in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_OUTPUT_CLK"):
            assert text.count(f'parameter \\{reg} "CLK0"') == 2 * blocks
    assert "MULT18X18D" not in rtlil.convert(mk())
    nodsp = _ECP5()
    nodsp.pnn_no_dsp = True                    # pnn build --dsp off
    assert rtlil.convert(mk(), platform=nodsp) == rtlil.convert(mk())
    if not blocks:
        assert text == rtlil.convert(mk())
