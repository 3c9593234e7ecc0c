"""Bit-parallel baseline: an R x C int8 x uint8 MAC array with the engine's stream interfaces.

For area and Fmax comparisons (``pnn build --baseline``) against the bit-serial engine of the same
R x C. It keeps the engine's memories (weights now as whole int8 words: one word holds R x C
signed 8-bit weights, ``[(r*C + l)*8 +: 8]``), its sequencer, its post-processing unit and its
result FIFO, and replaces the plane-serial PE array by R x C multipliers and R adder trees. A RUN
computes the full-precision product in one pass per chunk (its k fields are ignored; result
beats carry k = 1):

    acc_r = sum_c sum_l w[r, c*C + l] * x[c*C + l];   then post-processing with table word g.

Commands: LOAD_W / LOAD_A / LOAD_PP / RUN as in ``docs/engine.md``; READ_COUNTERS and
CLEAR_COUNTERS are accepted and do nothing (the baseline has no counters). The host driver runs
networks on it with ``infer(..., target=INT8_BASELINE)`` for k <= 7 (int8 holds q_k only up to 7 planes);
``tests/test_boards.py`` checks one RUN against numpy and a whole network against the golden model.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import isa
from .sequencer import Sequencer
from .loader import DataLoader
from .isa import CMD_WIDTH, SW, EngineConfig, Kind, Op
from .pe_array import adder_tree
from .postproc import PostProc

__all__ = ["MACArray", "baseline_data_width"]

WBITS = 8


def baseline_data_width(cfg: EngineConfig) -> int:
    """Data-stream width of the baseline: an int8 weight word, an activation word or a
    post-processing word (one lane per row), whichever is widest."""
    cfg = cfg.full_rate_pp()
    return max(cfg.rows * cfg.cols * WBITS, cfg.cols * cfg.abits, cfg.pp_width)


class MACArray(wiring.Component):
    """R x C int8 MAC array behind the engine's ports.

    Parameters
    ----------
    cfg : EngineConfig
        R, C, A, the post-processing widths and the memory depths; ``wdepth // nbits`` int8 weight
        words are kept (the same bits as the engine's ``wdepth`` plane words).

    Members
    -------
    cmd : In(stream.Signature(64))
    data : In(stream.Signature(baseline_data_width(cfg)))
    res : Out(stream.Signature(cfg.res_width))
    busy : Out(1)

    Latency: issue (memory read, 1) -> memory data registered (1) -> products and adder tree (1)
    -> accumulate (1) -> post-processing (:attr:`PostProc.LATENCY`) -> result FIFO; one chunk
    per cycle.
    """

    FIFO_DEPTH = 8

    def __init__(self, cfg: EngineConfig):
        if not isinstance(cfg, EngineConfig):
            isa.refuse(self, TypeError(f"cfg must be an EngineConfig, not {cfg!r}"))
        # a bit-parallel array can finish a result every cycle: its post-processing keeps one lane
        # per row whatever ``cfg.pp_lanes`` says (the driver's ``INT8_BASELINE`` target does the same)
        cfg = cfg.full_rate_pp()
        self.cfg = cfg
        self.wdepth = max(1, cfg.wdepth // cfg.nbits)
        # |sum| <= I_max * 128 * (2^A - 1): the accumulator width for int8 weights
        bound = cfg.max_reduction * (1 << (WBITS - 1)) * ((1 << cfg.abits) - 1)
        self.acc_width = isa.signed_bits(-bound, bound)
        super().__init__({
            "cmd": In(stream.Signature(CMD_WIDTH)),
            "data": In(stream.Signature(baseline_data_width(cfg))),
            "res": Out(stream.Signature(cfg.res_width)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        R, C, A, AW = cfg.rows, cfg.cols, cfg.abits, self.acc_width
        waw, aaw, ppaw = isa.addr_width(self.wdepth), isa.addr_width(2 * cfg.adepth), isa.addr_width(cfg.ppdepth)

        m.submodules.wmem = wmem = Memory(shape=R * C * WBITS, depth=self.wdepth, init=[])
        m.submodules.amem = amem = Memory(shape=C * A, depth=2 * cfg.adepth, init=[])
        m.submodules.ppmem = ppmem = Memory(shape=cfg.pp_width, depth=cfg.ppdepth, init=[])
        w_wr, w_rd = wmem.write_port(), wmem.read_port()
        a_wr, a_rd = amem.write_port(), amem.read_port()
        pp_wr, pp_rd = ppmem.write_port(), ppmem.read_port()

        m.submodules.seq = seq = Sequencer(waddr_width=waw, aaddr_width=aaw, ppaddr_width=ppaw,
                                           accaddr_width=1)
        kw = isa.KW
        m.submodules.pp = pp = PostProc(lanes=R, acc_width=AW, mbits=cfg.mbits, bbits=cfg.bbits,
                                        abits=A, obits=cfg.obits, shift_width=SW, tag_width=kw)
        m.submodules.rfifo = rfifo = fifo.SyncFIFOBuffered(width=cfg.res_width,
                                                           depth=self.FIFO_DEPTH)

        # ---- commands and loads ----------------------------------------------------------------
        pending = Signal()
        cmd = Signal(isa.Command)
        m.d.comb += self.cmd.ready.eq(~pending)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [pending.eq(1), cmd.eq(self.cmd.payload)]
        op = cmd.op

        m.submodules.loader = loader = DataLoader(len(self.data.payload), {
            Op.LOAD_W: (waw, R * C * WBITS), Op.LOAD_A: (aaw, C * A), Op.LOAD_PP: (ppaw, cfg.pp_width)})
        wiring.connect(m, wiring.flipped(self.data), loader.data)
        wiring.connect(m, loader.w, w_wr)
        wiring.connect(m, loader.a, a_wr)
        wiring.connect(m, loader.pp, pp_wr)

        # in-flight work (for the load hazards and busy)
        pipe = Signal(4)          # issue -> memory data registered -> tree -> acc
        inflight = Signal(range(self.FIFO_DEPTH + 8))
        computing = Signal()
        m.d.comb += computing.eq(seq.active | (pipe != 0) | pp.o_active)

        start = Signal()
        with m.If(pending & ~loader.active):
            with m.Switch(op):
                with m.Case(Op.LOAD_W, Op.LOAD_A, Op.LOAD_PP):
                    with m.If(~computing):
                        bank = Mux(op == Op.LOAD_A, Mux(cmd.bank, cfg.adepth, 0), 0)
                        m.d.comb += [loader.start.eq(1), loader.target.eq(op),
                                     loader.addr.eq(cmd.p.load.addr + bank),
                                     loader.count.eq(cmd.p.load.count)]
                        m.d.sync += pending.eq(0)
                with m.Case(Op.RUN):
                    with m.If(~seq.active):
                        m.d.comb += start.eq(1)
                        m.d.sync += pending.eq(0)
                with m.Default():
                    m.d.sync += pending.eq(0)

        m.d.comb += [
            seq.start.eq(start),
            seq.run.k_start.eq(0), seq.run.k_end.eq(1), seq.run.wplanes.eq(1),
            seq.run.ngroups.eq(cmd.p.run.ngroups), seq.run.nchunks.eq(cmd.p.run.nchunks),
            seq.run.npos.eq(cmd.p.run.npos), seq.run.every_plane.eq(0), seq.run.save.eq(0),
            seq.run.relu.eq(cmd.p.run.relu),
            seq.abase.eq(Mux(cmd.bank, cfg.adepth, 0)),
            seq.hold.eq(rfifo.level + inflight >= self.FIFO_DEPTH - 1),
            w_rd.addr.eq(seq.addr.w), a_rd.addr.eq(seq.addr.a), pp_rd.addr.eq(seq.addr.pp),
        ]

        self._datapath(m, seq, pp, pipe, w_rd.data, a_rd.data, pp_rd.data)
        beat = Signal(isa.result_layout(cfg))
        m.d.comb += [
            beat.kind.eq(Kind.RESULT), beat.tag.eq(pp.o_tag), beat.body.values.eq(pp.o_y),
            rfifo.w_stream.valid.eq(pp.o_valid),
            rfifo.w_stream.payload.eq(beat),
        ]
        with m.If(seq.issue & seq.chunk.emit & ~rfifo.w_en):
            m.d.sync += inflight.eq(inflight + 1)
        with m.Elif(~(seq.issue & seq.chunk.emit) & rfifo.w_en):
            m.d.sync += inflight.eq(inflight - 1)
        wiring.connect(m, rfifo.r_stream, wiring.flipped(self.res))
        m.d.comb += [
            self.busy.eq(pending | loader.active | computing | rfifo.r_rdy | (inflight != 0)),
        ]
        return m

    def _datapath(self, m, seq, pp, pipe, w_data, a_data, pp_data):
        """Memory data (stage 0) -> registered (r) -> products + adder trees (1) -> accumulate (2)
        -> post-processing; as in the engine, no memory output drives logic directly."""
        cfg = self.cfg
        R, C, A, AW = cfg.rows, cfg.cols, cfg.abits, self.acc_width
        kw = isa.KW
        emit0, load0, relu0, k0 = Signal(), Signal(), Signal(), Signal(kw)
        m.d.sync += [pipe[0].eq(seq.issue), emit0.eq(seq.issue & seq.chunk.emit),
                     load0.eq(seq.chunk.load), relu0.eq(seq.chunk.relu), k0.eq(seq.chunk.k)]
        emitr, loadr, relur, kr = Signal(), Signal(), Signal(), Signal(kw)
        wq, xq = Signal(R * C * WBITS), Signal(C * A)
        m.d.sync += [pipe[1].eq(pipe[0]), emitr.eq(emit0), loadr.eq(load0), relur.eq(relu0),
                     kr.eq(k0), wq.eq(w_data), xq.eq(a_data)]
        sums = [Signal(signed(AW), name=f"sum{r}") for r in range(R)]
        emit1, load1, relu1, k1 = Signal(), Signal(), Signal(), Signal(kw)
        m.d.sync += [pipe[2].eq(pipe[1]), emit1.eq(emitr), load1.eq(loadr), relu1.eq(relur),
                     k1.eq(kr)]
        for r in range(R):
            terms = []
            for l in range(C):
                w = wq[(r * C + l) * WBITS:(r * C + l + 1) * WBITS].as_signed()
                x = xq[l * A:(l + 1) * A]
                terms.append(w * x)
            # one multi-operand sum: Yosys builds the products and their sum as a single $macc,
            # which maps smaller than carry-chain adders here (ECP5 4 x 8 LUT-only: 17944 against
            # 18905 LUT4 + 2 x CCU2C), unlike the engine's gated sums
            m.d.sync += sums[r].eq(adder_tree(m, terms, name=f"row{r}", keep=False))
        accs = [Signal(signed(AW), name=f"acc{r}") for r in range(R)]
        emit2, relu2, k2 = Signal(), Signal(), Signal(kw)
        m.d.sync += [pipe[3].eq(pipe[2]), emit2.eq(emit1), relu2.eq(relu1), k2.eq(k1)]
        with m.If(pipe[2]):
            for r in range(R):
                m.d.sync += accs[r].eq(Mux(load1, 0, accs[r]) + sums[r])
        # the post-processing table word travels with its chunk (read at issue, like the data)
        pp1, ppr, pp_word = Signal(cfg.pp_width), Signal(cfg.pp_width), Signal(cfg.pp_width)
        m.d.sync += [pp1.eq(pp_data), ppr.eq(pp1), pp_word.eq(ppr)]
        m.d.comb += [
            pp.i_valid.eq(pipe[3] & emit2), pp.i_acc.eq(Cat(*accs)), pp.i_pp.eq(pp_word),
            pp.i_relu.eq(relu2), pp.i_tag.eq(k2),
        ]
