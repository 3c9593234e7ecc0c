"""Bit-parallel baseline: the engine with an R x C int8 x uint8 MAC array as its exec stage.

For area and Fmax comparisons (``pnn build --baseline``) against the bit-serial engine of the same
R x C. :class:`MACArray` is the same :class:`~.engine.Engine` (command front-end, data loader,
result stage with post-processing and FIFO, counters) with :class:`Int8ExecStage` in place of the
plane-serial :class:`~.exec_stage.ExecStage`: weights are whole int8 words (one word holds R x C
signed 8-bit weights, ``[(r*C + l)*8 +: 8]``), multiplied by R x C multipliers and summed by R
adder trees. A RUN computes the full-precision product in one pass per chunk (its k fields and
``save`` / ``every_plane`` are ignored; result beats carry k = 1):

    acc_r = sum_c sum_l w[r, c*C + l] * x[c*C + l];   then post-processing with table word g.

Commands: LOAD_W / LOAD_A / LOAD_PP / RUN / READ_COUNTERS / CLEAR_COUNTERS as in
``docs/engine.md``; the counters are the engine's (a RUN counts one plane pass per chunk group of a
position). The host driver runs networks on it with ``infer(..., target=INT8_BASELINE)`` for
k <= 7 (int8 holds q_k only up to 7 planes); ``tests/test_boards.py`` checks one RUN against numpy
and a whole network against the golden model.
"""

from __future__ import annotations

import functools
import operator

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from . import isa
from .engine import Engine
from .exec_stage import ExecStage, exec_out_layout, exec_status_layout
from .isa import EngineConfig
from .pe_array import adder_tree
from .sequencer import Sequencer

__all__ = ["MACArray", "Int8ExecStage", "Int8PipelinedExecStage", "baseline_data_width",
           "WBITS"]

WBITS = 8


def baseline_data_width(cfg: EngineConfig) -> int:
    """Data-stream width of the baseline: an int8 weight word, an activation word or a
    post-processing word (one lane per row), whichever is widest."""
    cfg = cfg.full_rate_pp()
    return max(cfg.rows * cfg.cols * WBITS, cfg.cols * cfg.abits, cfg.pp_width)


class Int8ExecStage(ExecStage):
    """Sequencer -> memories -> registered memory data -> int8 products and adder trees ->
    accumulators: the :class:`ExecStage` ports and side-band contract with int8 weights.

    Weight memory ``wdepth // nbits`` words of R*C*8 bits (the same bits as the engine's
    ``wdepth`` plane words); no saved-accumulator memory. Each row accumulates in
    :attr:`int8_acc_width` bits (|sum| <= I_max * 128 * (2^A - 1)) and leaves on ``o``
    sign-extended (or, if ``cfg.acc_width`` is narrower, truncated: the driver's k-plane weights
    never exceed ``cfg.acc_bound``) to ``cfg.acc_width``, the result stage's width.

    Latency (:attr:`LATENCY` = 4) from a chunk's issue to its accumulators on ``o``: memory read
    (1), memory data registered (1), products and adder trees (1), accumulate (1); ``pp_req`` 2
    cycles before ``o``, as in :class:`ExecStage`. One chunk per cycle.
    """

    WEIGHT_BITS = WBITS
    LATENCY = 4
    #: the R x C products registered before their sums (:class:`Int8PipelinedExecStage`)
    PRODUCTS_REGISTERED = False

    @staticmethod
    def wdepth_of(cfg: EngineConfig) -> int:
        return max(1, cfg.wdepth // cfg.nbits)

    def __init__(self, cfg: EngineConfig):
        super().__init__(cfg)
        bound = cfg.max_reduction * (1 << (WBITS - 1)) * ((1 << cfg.abits) - 1)
        self.int8_acc_width = isa.signed_bits(-bound, bound)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        R, C, A, AW = cfg.rows, cfg.cols, cfg.abits, self.int8_acc_width

        m.submodules.wmem = wmem = Memory(shape=self.wwidth, depth=self.wdepth, init=[])
        m.submodules.amem = amem = Memory(shape=C * A, depth=2 * cfg.adepth, init=[])
        w_rd, a_rd = wmem.read_port(), amem.read_port()
        wiring.connect(m, wiring.flipped(self.w_wr), wmem.write_port())
        wiring.connect(m, wiring.flipped(self.a_wr), amem.write_port())

        m.submodules.seq = seq = Sequencer(waddr_width=self.waw, aaddr_width=self.aaw,
                                           ppaddr_width=self.ppew, accaddr_width=self.accaw)
        run = self.run
        m.d.comb += [
            seq.start.eq(self.start),
            seq.run.k_start.eq(0), seq.run.k_end.eq(1), seq.run.wplanes.eq(1),
            seq.run.every_plane.eq(0), seq.run.save.eq(0), seq.run.relu.eq(run.relu),
            seq.run.ngroups.eq(run.ngroups), seq.run.nchunks.eq(run.nchunks),
            seq.run.npos.eq(run.npos),
            seq.abase.eq(Mux(self.bank, cfg.adepth, 0)),
            seq.hold.eq(self.hold),
            w_rd.addr.eq(seq.addr.w), a_rd.addr.eq(seq.addr.a),
        ]

        # issue (S0) -> memory data (S1) -> registered (S2) -> [products (S3) ->] sums (S3 or S4)
        # -> accumulators (S4 or S5): L = LATENCY stages, the products registered when L = 5
        L = self.LATENCY
        ch = seq.chunk
        meta_layout = isa.pe_meta_layout(self.accaw)
        valid = [Signal(name=f"s{i}_valid") for i in range(1, L + 1)]
        meta = [Signal(meta_layout, name=f"s{i}_meta") for i in range(1, L + 1)]
        load = [Signal(name=f"s{i}_load") for i in range(1, L)]
        # the pp address at S1..S(L-2) (S1's unnamed, as before the pipelined variant)
        pps = [Signal(self.ppew)] + [Signal(self.ppew, name=f"s{i}_pp") for i in range(2, L - 1)]
        s2_w, s2_x = Signal(self.wwidth), Signal(C * A)
        m.d.sync += [
            valid[0].eq(seq.issue), load[0].eq(ch.load),
            meta[0].emit.eq(ch.emit), meta[0].relu.eq(ch.relu), meta[0].k.eq(ch.k),
            pps[0].eq(seq.addr.pp), *(pps[i + 1].eq(pps[i]) for i in range(L - 3)),
            s2_w.eq(w_rd.data), s2_x.eq(a_rd.data),
        ]
        for i in range(L - 1):
            m.d.sync += [valid[i + 1].eq(valid[i]), meta[i + 1].eq(meta[i])]
        for i in range(L - 2):
            m.d.sync += load[i + 1].eq(load[i])

        sums = [Signal(signed(AW), name=f"sum{r}") for r in range(R)]
        for r in range(R):
            terms = []
            for l in range(C):
                w = s2_w[(r * C + l) * WBITS:(r * C + l + 1) * WBITS].as_signed()
                prod = w * s2_x[l * A:(l + 1) * A]
                if self.PRODUCTS_REGISTERED:
                    reg = Signal(prod.shape(), name=f"prod{r}_{l}")
                    m.d.sync += reg.eq(prod)
                    prod = reg
                terms.append(prod)
            # one multi-operand sum: Yosys builds the products and their sum as a single $macc,
            # which maps smaller than carry-chain adders here (ECP5 4 x 8 LUT-only: 17944 against
            # 18905 LUT4 + 2 x CCU2C), unlike the engine's gated sums
            m.d.sync += sums[r].eq(adder_tree(m, terms, name=f"row{r}", keep=False))
        accs = [Signal(signed(AW), name=f"acc{r}") for r in range(R)]
        with m.If(valid[L - 2]):
            for r in range(R):
                m.d.sync += accs[r].eq(Mux(load[L - 2], 0, accs[r]) + sums[r])
        wide = [Signal(signed(cfg.acc_width), name=f"acc_out{r}") for r in range(R)]
        m.d.comb += [wide[r].eq(accs[r]) for r in range(R)]

        o_meta = meta[L - 1]
        m.d.comb += [
            self.pp_req.valid.eq(valid[L - 3] & meta[L - 3].emit),
            self.pp_req.payload.eq(pps[L - 3]),
            self.o.valid.eq(valid[L - 1]),
            self.o.payload.eq(isa.pack_value(exec_out_layout(cfg), acc=Cat(*wide), meta=o_meta)),
            self.status.eq(isa.pack_value(
                exec_status_layout, seq_active=seq.active, issue=seq.issue,
                issue_emit=seq.issue & ch.emit, plane_end=ch.plane_end,
                free=~seq.active | (seq.issue & seq.last),
                idle=functools.reduce(operator.and_, (~v for v in valid), ~seq.active))),
        ]
        return m


class Int8PipelinedExecStage(Int8ExecStage):
    """:class:`Int8ExecStage` with its products registered before the adder trees (issue #16: the
    int8 array gets a pipelining step as the engine did; the single-stage one's critical path is
    its products and sum, 16.7 ns on the ECP5 12F): memory read (1), memory data registered (1),
    products (1), sums (1), accumulate (1): :attr:`LATENCY` = 5, one chunk per cycle, the same
    cycles per image apart from one cycle of latency per RUN."""

    LATENCY = 5
    PRODUCTS_REGISTERED = True


class MACArray(Engine):
    """The int8 bit-parallel baseline: :class:`Engine` with :class:`Int8ExecStage`.

    Parameters
    ----------
    cfg : EngineConfig
        R, C, A, the post-processing widths and the memory depths; ``wdepth // nbits`` int8 weight
        words are kept. A bit-parallel array can finish a result every cycle: its post-processing
        keeps one lane per row whatever ``cfg.pp_lanes`` says (``cfg.full_rate_pp()``; the
        driver's ``INT8_BASELINE`` target does the same).
    pipelined : bool
        Register the products before the adder trees (:class:`Int8PipelinedExecStage`, latency
        5); default the single-stage :class:`Int8ExecStage`.

    Members: as :class:`Engine`, with ``data`` :func:`baseline_data_width` wide.

    Latency: the engine's with :attr:`Int8ExecStage.LATENCY` (4; 5 pipelined) for the exec stage:
    the last result beat of a RUN is valid ``busy_cycles + 1 + 4 + PostProc.LATENCY + 2`` cycles
    (one more pipelined) after the RUN is accepted (:attr:`Engine.latency`).
    """

    def __init__(self, cfg: EngineConfig, *, pipelined: bool = False):
        if not isinstance(cfg, EngineConfig):
            isa.refuse(self, TypeError(f"cfg must be an EngineConfig, not {cfg!r}"))
        super().__init__(cfg.full_rate_pp(),
                         exec_stage=Int8PipelinedExecStage if pipelined else Int8ExecStage)
