"""The MSB-first accumulative bit-serial (ABS) PE array.

``R`` rows (output channels) x ``C`` lanes (reduction inputs). Per cycle every row takes one weight
bit per lane and adds its bit-gated activations through an adder tree; the plane sum
``P_r = 2*sum_{bit=1} x - sum x`` shares the ``sum x`` term across all rows; at the first chunk of a
plane the accumulator doubles (MSB plane first): ``acc <- (dbl ? 2*acc : acc) + P``.
No multiplier anywhere.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, Cat, Mux, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from . import isa

__all__ = ["PEArray", "adder_tree"]


def adder_tree(m: Module, terms, *, name: str = "t", keep: bool = True):
    """Sum ``terms`` pairwise (balanced tree, widths grow by one bit per level).

    With ``keep`` (the default) every partial sum is a named signal with Yosys' ``keep``
    attribute, so each addition stays a two-operand adder that maps onto the FPGA's carry chain
    (``CCU2C`` on ECP5, ``SB_CARRY`` on iCE40). Without it Yosys merges the whole tree into one
    multi-operand ``$macc`` and builds it from LUT full adders: on ECP5 an 8-lane 8-bit tree then
    takes 245 LUT4 (+ 131 wide-function muxes) instead of 64 LUT4 + 36 CCU2C. Nothing changes in
    simulation.
    """
    terms = list(terms)
    if not terms:
        raise ValueError("adder_tree needs at least one term")
    level = 0
    while len(terms) > 1:
        nxt = []
        for i in range(0, len(terms) - 1, 2):
            s = terms[i] + terms[i + 1]
            if keep:
                w = Signal(s.shape(), name=f"{name}_l{level}_{i // 2}", attrs={"keep": 1})
                m.d.comb += w.eq(s)
                s = w
            nxt.append(s)
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms = nxt
        level += 1
    return terms[0]


#: old name of :func:`isa.check_int`
_check_int = isa.check_int


class PEArray(wiring.Component):
    """R x C bit-serial PE array with MSB-first plane accumulation.

    Parameters
    ----------
    rows : int
        R, output channels (one accumulator each), 1..256.
    cols : int
        C, reduction lanes (activations consumed per cycle), 1..1024.
    abits : int
        A, unsigned activation code width.
    acc_width : int
        AW, signed accumulator width (the caller derives it from the largest reduction length so
        that nothing can wrap; see ``EngineConfig.acc_width``).
    tag_width : int
        Width of a side-band tag carried along with each input beat and presented, aligned, with
        the accumulator it contributed to (default 0: none).

    Members
    -------
    i_valid : In(1)
        One chunk is presented this cycle.
    i_w : In(R*C)
        Weight bits of this chunk; bit ``r*C + l`` is row r, lane l (1 reads as +1, 0 as -1).
    i_x : In(C*A)
        Activation codes; lane l at ``[l*A +: A]``.
    i_dbl : In(1)
        First chunk of a plane: the accumulator base doubles before the plane sum is added.
    i_load : In(1)
        First chunk of a job: the base is ``i_init`` instead of the running accumulator.
    i_init : In(R*AW)
        Starting accumulators (row r signed at ``[r*AW +: AW]``) of the ``i_load`` chunk presented
        ``LATENCY - 1`` cycles earlier: sampled in the accumulate stage, so that they are not
        carried through the pipeline (the caller reads them late instead).
    i_tag : In(tag_width)
        Side-band tag.
    o_valid : Out(1)
        ``o_acc`` was updated by a chunk presented ``latency`` cycles ago.
    o_acc : Out(R*AW)
        The accumulators (registers), row r signed at ``[r*AW +: AW]``.
    o_tag : Out(tag_width)
        The tag of that chunk.
    o_active : Out(1)
        A chunk is inside the pipeline (for drain detection).

    Latency: 4 cycles (the first half of the adder-tree levels, sums of :attr:`tree_group`
    lanes -> register; the other half -> register; plane sum ``2*S - T`` -> register; accumulate
    -> register: at most ceil(log2(C)/2) chained carry chains per stage, one after the trees),
    throughput one chunk per cycle with no bubbles at plane or job boundaries.
    """

    #: cycles from a chunk at the inputs to the accumulator holding it
    LATENCY = 4

    def __init__(self, *, rows: int, cols: int, abits: int, acc_width: int, tag_width: int = 0):
        isa.check_args(self, ("rows", rows, 1, 256), ("cols", cols, 1, 1024),
                       ("abits", abits, 1, 16), ("tag_width", tag_width, 0))
        isa.check_args(self, ("acc_width", acc_width, abits + (cols + 1).bit_length() + 2))
        self.rows, self.cols, self.abits = rows, cols, abits
        self.acc_width, self.tag_width = acc_width, tag_width
        super().__init__({
            "i_valid": In(1),
            "i_w": In(rows * cols),
            "i_x": In(cols * abits),
            "i_dbl": In(1),
            "i_load": In(1),
            "i_init": In(rows * acc_width),
            "i_tag": In(tag_width),
            "o_valid": Out(1),
            "o_acc": Out(rows * acc_width),
            "o_tag": Out(tag_width),
            "o_active": Out(1),
        })

    @property
    def latency(self) -> int:
        """Cycles from a chunk at the inputs to the accumulator holding it."""
        return self.LATENCY

    @property
    def tree_group(self) -> int:
        """G: lanes summed in the first stage, ``2^ceil(levels/2)`` of the ``ceil(log2(C))``
        tree levels (C = 16: 4, C = 8: 4, C = 4: 2)."""
        levels = (self.cols - 1).bit_length()
        return 1 << ((levels + 1) // 2)

    def elaborate(self, platform):
        m = Module()
        R, C, A, AW = self.rows, self.cols, self.abits, self.acc_width

        xs = [self.i_x[l * A:(l + 1) * A] for l in range(C)]
        # stage 1: the first half of the adder-tree levels -> registers (partial sums of groups
        # of G lanes, per row of gated activations and for the shared sum x)
        G = self.tree_group
        groups = [list(range(g, min(g + G, C))) for g in range(0, C, G)]
        total_part = [adder_tree(m, [xs[l] for l in grp], name=f"total_g{j}")
                      for j, grp in enumerate(groups)]
        row_part = []
        for r in range(R):
            gated = [xs[l] & self.i_w[r * C + l].replicate(A) for l in range(C)]
            row_part.append([adder_tree(m, [gated[l] for l in grp], name=f"row{r}_g{j}")
                             for j, grp in enumerate(groups)])
        s1_total = [Signal(t.shape().width, name=f"s1_total_g{j}")
                    for j, t in enumerate(total_part)]
        s1_rows = [[Signal(t.shape().width, name=f"s1_row{r}_g{j}") for j, t in enumerate(parts)]
                   for r, parts in enumerate(row_part)]
        s1_valid, s1_dbl, s1_load = Signal(), Signal(), Signal()
        s1_tag = Signal(self.tag_width)
        m.d.sync += [
            s1_valid.eq(self.i_valid),
            s1_dbl.eq(self.i_dbl),
            s1_load.eq(self.i_load),
            s1_tag.eq(self.i_tag),
        ]
        m.d.sync += [reg.eq(t) for reg, t in zip(s1_total, total_part)]
        m.d.sync += [reg.eq(t) for regs, parts in zip(s1_rows, row_part)
                     for reg, t in zip(regs, parts)]

        # stage 2: the rest of the tree levels -> registers (row sums S_r, shared T = sum x)
        total = adder_tree(m, s1_total, name="total")
        sums = [adder_tree(m, regs, name=f"row{r}") for r, regs in enumerate(s1_rows)]
        s2_total = Signal(total.shape().width, name="s2_total")
        s2_sums = [Signal(s.shape().width, name=f"s2_sum{r}") for r, s in enumerate(sums)]
        s2_valid, s2_dbl, s2_load = Signal(), Signal(), Signal()
        s2_tag = Signal(self.tag_width)
        m.d.sync += [s2_valid.eq(s1_valid), s2_dbl.eq(s1_dbl), s2_load.eq(s1_load),
                     s2_tag.eq(s1_tag), s2_total.eq(total)]
        m.d.sync += [reg.eq(s) for reg, s in zip(s2_sums, sums)]

        # stage 3: plane sum P = 2*S - T -> register (a two-operand adder on its own carry chain)
        s3_valid, s3_dbl, s3_load = Signal(), Signal(), Signal()
        s3_tag = Signal(self.tag_width)
        s3_planes = [Signal(signed(s2_total.shape().width + 2), name=f"plane{r}")
                     for r in range(R)]                     # signed (difference of unsigned)
        m.d.sync += [s3_valid.eq(s2_valid), s3_dbl.eq(s2_dbl), s3_load.eq(s2_load),
                     s3_tag.eq(s2_tag)]
        m.d.sync += [p.eq((s2_sums[r] << 1) - s2_total) for r, p in enumerate(s3_planes)]

        # stage 4: acc <- (dbl ? 2*base : base) + P, base = i_init (sampled now) on a load
        accs = [Signal(signed(AW), name=f"acc{r}") for r in range(R)]
        with m.If(s3_valid):
            for r in range(R):
                base = Mux(s3_load, self.i_init[r * AW:(r + 1) * AW].as_signed(), accs[r])
                m.d.sync += accs[r].eq(Mux(s3_dbl, base << 1, base) + s3_planes[r])
        o_valid = Signal()
        m.d.sync += o_valid.eq(s3_valid)
        with m.If(s3_valid):
            m.d.sync += self.o_tag.eq(s3_tag)
        m.d.comb += [
            self.o_valid.eq(o_valid),
            self.o_acc.eq(Cat(*accs)),
            self.o_active.eq(s1_valid | s2_valid | s3_valid | o_valid),
        ]
        return m
