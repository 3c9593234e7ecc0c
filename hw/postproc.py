"""Post-processing unit: P parallel lanes of ``y = (acc*M + B + 2^(S-1)) >> S``, then clamp or
signed.

BN, ReLU and requantization in one (the numeric contract, ``docs/engine.md`` "RUN"). Fully
pipelined: one vector of P accumulators per cycle.
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Cat, Elaboratable, Instance, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from . import isa

__all__ = ["PostProc", "Mult18Model", "ecp5_mult18", "NO_DSP"]

#: operand width of one ECP5 ``MULT18X18D`` (signed)
MULT18 = 18
#: a platform attribute: when true, no DSP block is instantiated (``pnn build --dsp off`` sets it,
#: so that LUT-only builds stay LUT-only)
NO_DSP = "pnn_no_dsp"


def ecp5_mult18(a, b, p) -> Instance:
    """An ECP5 ``MULT18X18D``, 18 x 18 signed, with its input registers (A, B) and its output
    register used, all on the ``sync`` clock without enable or reset: ``p`` (36 bits) is
    ``a * b`` two cycles after ``a``/``b`` (18 bits each, signed). Yosys does not absorb fabric
    registers into this block, so without the instance the multiplier is combinational between
    fabric flip-flops (3.93 ns on the 12F build, #16)."""
    conns = {f"i_A{i}": a[i] for i in range(MULT18)}
    conns |= {f"i_B{i}": b[i] for i in range(MULT18)}
    conns |= {f"i_C{i}": Const(0, 1) for i in range(MULT18)}
    conns |= {f"o_P{i}": p[i] for i in range(2 * MULT18)}
    params = {"p_REG_INPUTA_CLK": "CLK0", "p_REG_INPUTA_CE": "CE0", "p_REG_INPUTA_RST": "RST0",
              "p_REG_INPUTB_CLK": "CLK0", "p_REG_INPUTB_CE": "CE0", "p_REG_INPUTB_RST": "RST0",
              "p_REG_INPUTC_CLK": "NONE", "p_REG_PIPELINE_CLK": "NONE",
              "p_REG_OUTPUT_CLK": "CLK0", "p_REG_OUTPUT_CE": "CE0", "p_REG_OUTPUT_RST": "RST0",
              "p_CLK0_DIV": "ENABLED", "p_CLK1_DIV": "ENABLED", "p_CLK2_DIV": "ENABLED",
              "p_CLK3_DIV": "ENABLED", "p_HIGHSPEED_CLK": "NONE", "p_GSR": "DISABLED",
              "p_CAS_MATCH_REG": "FALSE", "p_SOURCEB_MODE": "B_SHIFT", "p_MULT_BYPASS": "DISABLED",
              "p_RESETMODE": "SYNC"}
    return Instance("MULT18X18D", **params, **conns,
                    i_SIGNEDA=Const(1, 1), i_SIGNEDB=Const(1, 1),
                    i_SOURCEA=Const(0, 1), i_SOURCEB=Const(0, 1),
                    i_CLK0=ClockSignal("sync"), i_CLK1=Const(0, 1), i_CLK2=Const(0, 1),
                    i_CLK3=Const(0, 1), i_CE0=Const(1, 1), i_CE1=Const(0, 1), i_CE2=Const(0, 1),
                    i_CE3=Const(0, 1), i_RST0=Const(0, 1), i_RST1=Const(0, 1),
                    i_RST2=Const(0, 1), i_RST3=Const(0, 1))


class Mult18Model(Elaboratable):
    """A simulation model of :func:`ecp5_mult18` with the same registers (tests drive the ECP5
    path of :class:`PostProc` with it: ``PostProc(..., mult18=Mult18Model)``). Unlike the block,
    its registers take the ``sync`` reset."""

    def __init__(self, a, b, p):
        self.a, self.b, self.p = a, b, p

    def elaborate(self, platform):
        m = Module()
        ra, rb = Signal(signed(MULT18)), Signal(signed(MULT18))
        m.d.sync += [ra.eq(self.a), rb.eq(self.b), self.p.eq(ra * rb)]
        return m


class PostProc(wiring.Component):
    """P-lane pipelined ``z = acc*M + B; y = (z + 2^(S-1)) >> S`` with ReLU clamp or saturation.

    Parameters
    ----------
    lanes : int
        P, values per vector (``rows=`` is accepted as the old name).
    acc_width : int
        AW, signed width of each accumulator.
    mbits : int
        MW, signed width of M (the AW x MW product is two registered partial products:
        DSP-friendly, :attr:`split`).
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
    register_inputs : bool
        Register every input first (stage 0, the default). False: the inputs feed the partial
        products directly (latency 5; the caller presents registered values).
    merge_stages : bool
        False (the default): as below. True: stages 2 and 3 (``z = (acc[L:]*M << L) +
        acc[:L]*M + B + round``, two carry chains) and stages 4 and 5 (shift, then clamp or
        saturate) are each one registered stage: latency 2 less, about ``2*ZW + AW + MW + BW``
        flip-flops less per lane, longer paths (for small, slow FPGAs).
    mult18 : callable or None
        ``mult18(a, b, p)`` -> an elaboratable 18 x 18 signed multiplier with registered operands
        and a registered product (:func:`ecp5_mult18`, :class:`Mult18Model`). Default: ECP5's
        ``MULT18X18D`` when elaborated for an ECP5 platform (``platform.family == "ecp5"``)
        without the :data:`NO_DSP` attribute set, else none. Used (with ``register_inputs``, and operands of at most 18 signed bits) for the
        two partial products, whose stage-0 and stage-1 registers are then the block's own input
        and output registers: same latency, same results, no fabric path through the multiplier.

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

    Latency: 6 cycles (inputs -> register; the partial products ``acc[:L]*M`` and ``acc[L:]*M``
    (:attr:`split`), and beside them B + rounding constant -> register; their sum ``acc*M`` ->
    register; ``z = acc*M + B + 2^(S-1)`` -> register; shift -> register; clamp or saturate ->
    register), throughput one vector per cycle. Each stage holds at most one carry chain or one DSP multiply, whose
    operands and result are registers.
    """

    #: cycles from a vector at the inputs to its result at the outputs
    LATENCY = 6
    #: widest unsigned low part of the accumulator in one partial product (16-bit signed operand)
    SPLIT = 15

    def __init__(self, *, lanes: int | None = None, acc_width: int, mbits: int, bbits: int,
                 abits: int, obits: int, shift_width: int = 6, tag_width: int = 0,
                 rows: int | None = None, register_inputs: bool = True,
                 merge_stages: bool = False, mult18=None):
        if lanes is None:
            lanes = rows
        isa.check_args(self, ("lanes", lanes, 1, 256), ("acc_width", acc_width, 2),
                       ("mbits", mbits, 2, 32), ("bbits", bbits, 2, 96), ("abits", abits, 1, 16))
        isa.check_args(self, ("obits", obits, abits + 1, 64), ("shift_width", shift_width, 1, 7),
                       ("tag_width", tag_width, 0))
        self.lanes, self.acc_width, self.mbits, self.bbits = lanes, acc_width, mbits, bbits
        self.abits, self.obits = abits, obits
        self.shift_width, self.tag_width = shift_width, tag_width
        self.register_inputs = bool(register_inputs)
        self.merge_stages = bool(merge_stages)
        self.mult18 = mult18
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
        return self.LATENCY - (not self.register_inputs) - 2 * self.merge_stages

    @property
    def z_width(self) -> int:
        """Signed width of ``acc*M + B + 2^(S-1)`` for every S that can change the result.

        With ``X = max(AW+MW, BW)``, ``|acc*M + B| < 2^X``; for ``S <= X+1`` the sum fits X+2 bits,
        and for ``S > X+1`` the rounded result is exactly 0 (handled separately), so nothing wraps.
        """
        return max(self.acc_width + self.mbits, self.bbits) + 2

    @property
    def split(self) -> int:
        """L: the accumulator is multiplied as ``acc[:L]`` (unsigned) and ``acc[L:]`` (signed),
        two products of at most 16 x MW bits, each one DSP block (``MULT18X18D`` on ECP5; on iCE40
        the same ``SB_MAC16`` count as one AW x MW product)."""
        return min(self.SPLIT, self.acc_width - 1)

    def _mult18_for(self, platform):
        """The 18 x 18 block builder used for the partial products, or None (fabric ``*``)."""
        AW, MW, L = self.acc_width, self.mbits, self.split
        fits = L + 1 <= MULT18 and AW - L <= MULT18 and MW <= MULT18
        if not (self.register_inputs and fits):
            return None
        if self.mult18 is not None:
            return self.mult18
        if getattr(platform, "family", None) == "ecp5" and not getattr(platform, NO_DSP, False):
            return ecp5_mult18
        return None

    def elaborate(self, platform):
        m = Module()
        R, AW, MW, BW, SWd = self.lanes, self.acc_width, self.mbits, self.bbits, self.shift_width
        ZW, L = self.z_width, self.split
        word = isa.pp_word_layout(R, MW, BW, SWd)(self.i_pp)
        mult18 = self._mult18_for(platform)

        # stage 0: every input registered, so the multipliers get registered operands
        v0, relu0, sh0, tag0 = Signal(), Signal(), Signal(SWd), Signal(self.tag_width)
        accs = [Signal(signed(AW), name=f"acc{r}") for r in range(R)]
        ms = [Signal(signed(MW), name=f"m{r}") for r in range(R)]
        bs = [Signal(signed(BW), name=f"b{r}") for r in range(R)]
        stage0 = m.d.sync if self.register_inputs else m.d.comb
        stage0 += [v0.eq(self.i_valid), relu0.eq(self.i_relu), sh0.eq(word.shift),
                   tag0.eq(self.i_tag)]
        for r in range(R):
            stage0 += [accs[r].eq(self.i_acc[r * AW:(r + 1) * AW].as_signed()),
                       ms[r].eq(word.lanes[r].m), bs[r].eq(word.lanes[r].b)]

        # stage 1: the two partial products acc[:L]*M and acc[L:]*M (registered: each maps to a
        # DSP block with its output registered), and beside them B + round constant
        v1, relu1, sh1, tag1 = Signal(), Signal(), Signal(SWd), Signal(self.tag_width)
        plos = [Signal(signed(L + 1 + MW), name=f"plo{r}") for r in range(R)]
        phis = [Signal(signed(AW - L + MW), name=f"phi{r}") for r in range(R)]
        brnds = [Signal(signed(max(BW, ZW - 1) + 1), name=f"brnd{r}") for r in range(R)]
        rnd = Signal(ZW - 1)                                    # 2^(S-1) for S <= ZW-1, 0 for S = 0
        m.d.comb += rnd.eq((Const(1, ZW) << sh0) >> 1)
        m.d.sync += [v1.eq(v0), relu1.eq(relu0), sh1.eq(sh0), tag1.eq(tag0)]
        for r in range(R):
            m.d.sync += brnds[r].eq(bs[r] + rnd)
            if mult18 is None:
                m.d.sync += [plos[r].eq(accs[r][:L] * ms[r]),
                             phis[r].eq(accs[r][L:].as_signed() * ms[r])]
                continue
            # the block's input registers take the stage-0 operands (the unregistered inputs),
            # its output register is the stage-1 product: the fabric accs/ms go unused
            acc_in = self.i_acc[r * AW:(r + 1) * AW]
            for name, a, dst in (("lo", Cat(acc_in[:L], Const(0, 1)), plos[r]),
                                 ("hi", acc_in[L:].as_signed(), phis[r])):
                ea, eb = Signal(signed(MULT18), name=f"m18{name}_a{r}"), Signal(
                    signed(MULT18), name=f"m18{name}_b{r}")
                p = Signal(signed(2 * MULT18), name=f"m18{name}_p{r}")
                m.d.comb += [ea.eq(a.as_signed()), eb.eq(word.lanes[r].m), dst.eq(p)]
                m.submodules[f"mult18{name}{r}"] = mult18(ea, eb, p)

        # stage 2: the product acc*M = (acc[L:]*M << L) + acc[:L]*M
        v2, relu2, sh2, tag2 = Signal(), Signal(), Signal(SWd), Signal(self.tag_width)
        prods = [Signal(signed(AW + MW), name=f"prod{r}") for r in range(R)]
        brnd2 = [Signal(b.shape(), name=f"brnd2_{r}") for r, b in enumerate(brnds)]
        stage2 = m.d.comb if self.merge_stages else m.d.sync
        stage2 += [v2.eq(v1), relu2.eq(relu1), sh2.eq(sh1), tag2.eq(tag1)]
        for r in range(R):
            stage2 += [prods[r].eq((phis[r] << L) + plos[r]), brnd2[r].eq(brnds[r])]

        # stage 3: z = prod + (B + round constant)
        v3, relu3, sh3, tag3 = Signal(), Signal(), Signal(SWd), Signal(self.tag_width)
        zs = [Signal(signed(ZW), name=f"z{r}") for r in range(R)]
        m.d.sync += [v3.eq(v2), relu3.eq(relu2), sh3.eq(sh2), tag3.eq(tag2)]
        for r in range(R):
            m.d.sync += zs[r].eq(prods[r] + brnd2[r])

        # stage 4: arithmetic shift -> register
        v4, relu4 = Signal(), Signal()
        tag4 = Signal(self.tag_width)
        ysh = [Signal(signed(ZW), name=f"ysh{r}") for r in range(R)]
        stage4 = m.d.comb if self.merge_stages else m.d.sync
        stage4 += [v4.eq(v3), relu4.eq(relu3), tag4.eq(tag3)]
        for r in range(R):
            # S > ZW-1: |acc*M + B| < 2^(S-1), so the rounded result is 0
            stage4 += ysh[r].eq(Mux(sh3 > ZW - 1, 0, zs[r] >> sh3))

        # stage 5: clamp (relu) or saturate (logits) by bit tests (no comparators) -> register
        v5 = Signal()
        ys = [Signal(signed(self.obits), name=f"y{r}") for r in range(R)]
        A, OW = self.abits, self.obits
        amax = (1 << A) - 1
        omax = (1 << (OW - 1)) - 1
        omin = -(1 << (OW - 1))
        m.d.sync += [v5.eq(v4), self.o_tag.eq(tag4)]
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
            m.d.sync += ys[r].eq(Mux(relu4, clamp, sat))

        m.d.comb += [
            self.o_valid.eq(v5),
            self.o_y.eq(Cat(*ys)),
            self.o_active.eq(v0 | v1 | v2 | v3 | v4 | v5),
        ]
        return m
