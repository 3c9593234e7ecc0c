"""Post-processing unit: P parallel lanes of ``y = (acc*M + B + 2^(S-1)) >> S``, then clamp or
signed.

BN, ReLU and requantization in one (the numeric contract, ``docs/engine.md`` "RUN"). Fully
pipelined: one vector of P accumulators per cycle.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, Cat, Const, Mux, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from . import isa

__all__ = ["PostProc"]


class PostProc(wiring.Component):
    """P-lane pipelined ``z = acc*M + B; y = (z + 2^(S-1)) >> S`` with ReLU clamp or saturation.

    Parameters
    ----------
    lanes : int
        P, values per vector (``rows=`` is accepted as the old name).
    acc_width : int
        AW, signed width of each accumulator.
    mbits : int
        MW, signed width of M (the multiplier is AW x MW, registered on its output: DSP-friendly).
    bbits : int
        BW, signed width of B.
    abits : int
        A: with ``relu`` the result is clamped to ``[0, 2^A - 1]``.
    obits : int
        OW, signed width of each output value. Without ``relu`` a value outside the OW-bit range
        saturates to its nearest end (never wraps).
    shift_width : int
        Width of S (default 6).
    tag_width : int
        Side-band tag carried along, aligned with the output (default 0).

    Members
    -------
    i_valid : In(1)
        A vector is presented this cycle.
    i_acc : In(P*AW)
        Lane j signed at ``[j*AW +: AW]``.
    i_pp : In(shift_width + P*(MW+BW))
        A post-processing table word, ``isa.pp_word_layout(P, MW, BW, shift_width)``: S, then
        (M, B) per lane.
    i_relu : In(1)
        Clamp to ``[0, 2^A-1]`` (hidden layer) instead of signed output (logits).
    i_tag : In(tag_width)
    o_valid : Out(1)
    o_y : Out(P*OW)
        Lane j signed at ``[j*OW +: OW]``.
    o_tag : Out(tag_width)
    o_active : Out(1)
        A vector is inside the pipeline.

    Latency: 4 cycles (multiply, and beside it B + rounding constant -> register; add them ->
    register; shift -> register; clamp or saturate -> register), throughput one vector per cycle.
    """

    #: cycles from a vector at the inputs to its result at the outputs
    LATENCY = 4

    def __init__(self, *, lanes: int | None = None, acc_width: int, mbits: int, bbits: int,
                 abits: int, obits: int, shift_width: int = 6, tag_width: int = 0,
                 rows: int | None = None):
        if lanes is None:
            lanes = rows
        isa.check_args(self, ("lanes", lanes, 1, 256), ("acc_width", acc_width, 2),
                       ("mbits", mbits, 2, 32), ("bbits", bbits, 2, 96), ("abits", abits, 1, 16))
        isa.check_args(self, ("obits", obits, abits + 1, 64), ("shift_width", shift_width, 1, 7),
                       ("tag_width", tag_width, 0))
        self.lanes, self.acc_width, self.mbits, self.bbits = lanes, acc_width, mbits, bbits
        self.abits, self.obits = abits, obits
        self.shift_width, self.tag_width = shift_width, tag_width
        super().__init__({
            "i_valid": In(1),
            "i_acc": In(lanes * acc_width),
            "i_pp": In(shift_width + lanes * (mbits + bbits)),
            "i_relu": In(1),
            "i_tag": In(tag_width),
            "o_valid": Out(1),
            "o_y": Out(lanes * obits),
            "o_tag": Out(tag_width),
            "o_active": Out(1),
        })

    @property
    def rows(self) -> int:
        """Old name of :attr:`lanes`."""
        return self.lanes

    @property
    def latency(self) -> int:
        """Cycles from a vector at the inputs to its result at the outputs."""
        return self.LATENCY

    @property
    def z_width(self) -> int:
        """Signed width of ``acc*M + B + 2^(S-1)`` for every S that can change the result.

        With ``X = max(AW+MW, BW)``, ``|acc*M + B| < 2^X``; for ``S <= X+1`` the sum fits X+2 bits,
        and for ``S > X+1`` the rounded result is exactly 0 (handled separately), so nothing wraps.
        """
        return max(self.acc_width + self.mbits, self.bbits) + 2

    def elaborate(self, platform):
        m = Module()
        R, AW, MW, BW, SWd = self.lanes, self.acc_width, self.mbits, self.bbits, self.shift_width
        ZW = self.z_width
        word = isa.pp_word_layout(R, MW, BW, SWd)(self.i_pp)
        shift = word.shift

        # stage 1: products (registered: maps to DSP output registers), and beside them
        # B + round constant (its own carry chain, so that stage 2 holds one adder only)
        v1, relu1, sh1, tag1 = Signal(), Signal(), Signal(SWd), Signal(self.tag_width)
        prods = [Signal(signed(AW + MW), name=f"prod{r}") for r in range(R)]
        brnds = [Signal(signed(max(BW, ZW - 1) + 1), name=f"brnd{r}") for r in range(R)]
        rnd = Signal(ZW - 1)                                    # 2^(S-1) for S <= ZW-1, 0 for S = 0
        m.d.comb += rnd.eq((Const(1, ZW) << shift) >> 1)
        m.d.sync += [v1.eq(self.i_valid), relu1.eq(self.i_relu), sh1.eq(shift), tag1.eq(self.i_tag)]
        for r in range(R):
            acc = self.i_acc[r * AW:(r + 1) * AW].as_signed()
            m.d.sync += [prods[r].eq(acc * word.lanes[r].m),
                         brnds[r].eq(word.lanes[r].b + rnd)]

        # stage 2: z = prod + (B + round constant)
        v2, relu2, sh2, tag2 = Signal(), Signal(), Signal(SWd), Signal(self.tag_width)
        zs = [Signal(signed(ZW), name=f"z{r}") for r in range(R)]
        m.d.sync += [v2.eq(v1), relu2.eq(relu1), sh2.eq(sh1), tag2.eq(tag1)]
        for r in range(R):
            m.d.sync += zs[r].eq(prods[r] + brnds[r])

        # stage 3: arithmetic shift -> register
        v3, relu3 = Signal(), Signal()
        tag3 = Signal(self.tag_width)
        ysh = [Signal(signed(ZW), name=f"ysh{r}") for r in range(R)]
        m.d.sync += [v3.eq(v2), relu3.eq(relu2), tag3.eq(tag2)]
        for r in range(R):
            # S > ZW-1: |acc*M + B| < 2^(S-1), so the rounded result is 0
            m.d.sync += ysh[r].eq(Mux(sh2 > ZW - 1, 0, zs[r] >> sh2))

        # stage 4: clamp (relu) or saturate (logits) by bit tests (no comparators) -> register
        v4 = Signal()
        ys = [Signal(signed(self.obits), name=f"y{r}") for r in range(R)]
        A, OW = self.abits, self.obits
        amax = (1 << A) - 1
        omax = (1 << (OW - 1)) - 1
        omin = -(1 << (OW - 1))
        m.d.sync += [v4.eq(v3), self.o_tag.eq(tag3)]
        for r in range(R):
            y = ysh[r]
            neg = y[ZW - 1]
            # relu: y < 0 -> 0; y > 2^A - 1 (a bit set above A-1) -> 2^A - 1
            clamp = Mux(neg, 0, Mux(y[A:ZW - 1].any(), amax, y[:A]))
            if ZW > OW:   # y fits OW bits iff bits OW-1 .. ZW-1 all equal the sign
                top = y[OW - 1:ZW]
                fits = top.all() | ~top.any()
                sat = Mux(fits, y[:OW].as_signed(), Mux(neg, omin, omax))
            else:
                sat = y
            m.d.sync += ys[r].eq(Mux(relu3, clamp, sat))

        m.d.comb += [
            self.o_valid.eq(v4),
            self.o_y.eq(Cat(*ys)),
            self.o_active.eq(v1 | v2 | v3 | v4),
        ]
        return m
