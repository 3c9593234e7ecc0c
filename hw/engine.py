"""The ProgressiveNN engine: PE array, buffers, controller, post-processing, result FIFO, counters.

Implements ``docs/engine.md`` exactly; every word format comes from :mod:`isa`.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, Cat, Const, Mux, Array
from amaranth.lib import wiring, stream, fifo
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import isa
from .isa import EngineConfig, Op, CMD_WIDTH, SW
from .pe_array import PEArray
from .postproc import PostProc
from .controller import Sequencer
from .loader import DataLoader

__all__ = ["Engine"]

NCOUNTERS = len(isa.Counter.NAMES)




class Engine(wiring.Component):
    """MSB-first accumulative bit-serial inference engine (``docs/engine.md``).

    Parameters
    ----------
    cfg : EngineConfig
        All parameters; every derived width (``acc_width``, ``data_width``, ``res_width``) comes
        from it.

    Members
    -------
    cmd : In(stream.Signature(64))
        Commands (encoded by ``isa.cmd_*``).
    data : In(stream.Signature(cfg.data_width))
        Data beats consumed, in order, by LOAD_W / LOAD_A / LOAD_PP.
    res : Out(stream.Signature(cfg.res_width))
        Result beats (one per (pos, g, k)) and counter beats (``isa.decode_result``).
    busy : Out(1)
        A command, a load, a computation, a post-processing or an undelivered result is in flight.

    Widths (defaults in brackets): ``AW = cfg.acc_width`` [29], ``DW = cfg.data_width`` [534],
    ``RW = cfg.res_width`` [264]; memories: weights ``wdepth x R*C``, activations
    ``2*adepth x C*A`` (two banks), post-processing ``ppdepth x pp_width``, saved accumulators
    ``accdepth x R*AW``, result FIFO ``fifo_depth x RW``; all synchronous-read.

    Timing: one chunk per cycle with no bubbles across chunk, plane, group, position (or RUN)
    boundaries; the last result beat of a RUN whose results are not held back is valid
    ``busy_cycles + latency`` (11 + Q - 1) cycles after the cycle the RUN command was accepted (or
    the last data beat of an earlier LOAD was accepted, whichever is later).
    Internal pipeline: issue (memory read) -> memory data registered -> PE array (:attr:`PEArray.latency`) ->
    post-processing (P = ``cfg.pp_par`` lanes, Q = R/P slices one per cycle, then
    :attr:`PostProc.latency`) -> result FIFO (2 cycles). A result-producing chunk is issued only
    when a result FIFO place is reserved for it (credits) and, with Q > 1, at least Q cycles after
    the previous one (the post-processing lanes are then free), so nothing is ever dropped; the
    array stalls only under back-pressure on ``res`` or when a result would follow the previous
    one in fewer than Q cycles (``k * nchunks < Q``).
    """

    #: cycles from the FIFO write to the beat on ``res`` (SyncFIFOBuffered)
    FIFO_LATENCY = 2

    def __init__(self, cfg: EngineConfig = EngineConfig()):
        if not isinstance(cfg, EngineConfig):
            self._MustUse__silence = True      # refused: no "never used" warning
            raise TypeError(f"cfg must be an EngineConfig, not {cfg!r}")
        self.cfg = cfg
        super().__init__({
            "cmd": In(stream.Signature(CMD_WIDTH)),
            "data": In(stream.Signature(cfg.data_width)),
            "res": Out(stream.Signature(cfg.res_width)),
            "busy": Out(1),
        })

    @property
    def issue_to_fifo(self) -> int:
        """Cycles from a result-producing chunk's issue to its result entering the result FIFO."""
        return 2 + PEArray.LATENCY + (self.cfg.pp_slices - 1) + PostProc.LATENCY

    @property
    def latency(self) -> int:
        """Fixed cycles from the cycle a RUN is accepted to its last result beat being valid,
        on top of the RUN's busy cycles, when the engine is idle before and ``res`` is ready:
        decode (1) + sequencer start (1) + issue-to-FIFO + FIFO."""
        return 2 + self.issue_to_fifo + self.FIFO_LATENCY - 1

    @property
    def fifo_depth(self) -> int:
        """Result FIFO depth: enough credits that a ready consumer never stalls the array (results
        are issued at most one per Q cycles)."""
        Q = self.cfg.pp_slices
        return -(-(self.issue_to_fifo + self.FIFO_LATENCY) // Q) + 4

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        R, C, A, AW = cfg.rows, cfg.cols, cfg.abits, cfg.acc_width
        OW = cfg.obits
        waw = isa.addr_width(cfg.wdepth)
        aaw = isa.addr_width(2 * cfg.adepth)
        P, Q = cfg.pp_par, cfg.pp_slices
        ppaw = isa.addr_width(cfg.ppdepth)          # memory words
        ppew = isa.addr_width(cfg.pp_entries)       # table entries (Q words each)
        accaw = isa.addr_width(cfg.accdepth)

        # ---- memories ---------------------------------------------------------------------------
        m.submodules.wmem = wmem = Memory(shape=R * C, depth=cfg.wdepth, init=[])
        m.submodules.amem = amem = Memory(shape=C * A, depth=2 * cfg.adepth, init=[])
        m.submodules.ppmem = ppmem = Memory(shape=cfg.pp_width, depth=cfg.ppdepth, init=[])
        m.submodules.accmem = accmem = Memory(shape=R * AW, depth=cfg.accdepth, init=[])
        w_wr, w_rd = wmem.write_port(), wmem.read_port()
        a_wr, a_rd = amem.write_port(), amem.read_port()
        pp_wr, pp_rd = ppmem.write_port(), ppmem.read_port()
        acc_wr, acc_rd = accmem.write_port(), accmem.read_port()

        # ---- blocks -----------------------------------------------------------------------------
        m.submodules.seq = seq = Sequencer(waddr_width=waw, aaddr_width=aaw, ppaddr_width=ppew,
                                           accaddr_width=accaw)
        # PE tag: emit, save, relu, k(5), accaddr
        kw = isa.FIELDS["k_end"][1]
        m.submodules.pe = pe = PEArray(rows=R, cols=C, abits=A, acc_width=AW,
                                       tag_width=3 + kw + accaw)
        m.submodules.pp = pp = PostProc(rows=P, acc_width=AW, mbits=cfg.mbits, bbits=cfg.bbits,
                                        abits=A, obits=OW, shift_width=SW, tag_width=kw + 1)
        depth = self.fifo_depth
        m.submodules.rfifo = rfifo = fifo.SyncFIFOBuffered(width=cfg.res_width, depth=depth)

        # ---- command register and decode --------------------------------------------------------
        # one command register; the next command is accepted in the cycle the current one
        # completes (``done``), so commands can execute one per cycle
        pending = Signal()
        done = Signal()
        cmd = Signal(CMD_WIDTH)
        m.d.comb += self.cmd.ready.eq(~pending | done)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [pending.eq(1), cmd.eq(self.cmd.payload)]
        with m.Elif(done):
            m.d.sync += pending.eq(0)
        op = isa.cmd_field(cmd, "op")

        # ---- loader -----------------------------------------------------------------------------
        loader = DataLoader(m, self.data, {Op.LOAD_W: w_wr, Op.LOAD_A: a_wr, Op.LOAD_PP: pp_wr})
        ld_active = loader.active

        # ---- pipeline: issue (S0) -> memory data (S1) -> registered (S2) -> PE array -> ---------
        # ---- post-processing (the memories' outputs never feed logic directly: Fmax) -----------
        s1_valid, s2_valid = Signal(), Signal()
        s1_tag, s2_tag = Signal(pe.tag_width), Signal(pe.tag_width)
        s1_load, s1_dbl, s1_saved = Signal(), Signal(), Signal()
        s2_load, s2_dbl = Signal(), Signal()
        s1_pp = Signal(ppew)
        s2_pp = Signal(ppew)
        s2_emit = Signal()
        s2_w, s2_x, s2_init = Signal(R * C), Signal(C * A), Signal(R * AW)
        m.d.comb += [
            w_rd.addr.eq(seq.waddr),
            a_rd.addr.eq(seq.aaddr),
            acc_rd.addr.eq(seq.accaddr),
        ]
        m.d.sync += [
            s1_valid.eq(seq.issue),
            s1_load.eq(seq.load), s1_dbl.eq(seq.dbl), s1_saved.eq(seq.use_saved),
            s1_tag.eq(Cat(seq.emit, seq.save_o, seq.relu_o, seq.k, seq.accaddr)),
            s1_pp.eq(seq.ppaddr),
            s2_pp.eq(s1_pp),
            s2_emit.eq(s1_valid & s1_tag[0]),
            s2_valid.eq(s1_valid), s2_tag.eq(s1_tag), s2_load.eq(s1_load), s2_dbl.eq(s1_dbl),
            s2_w.eq(w_rd.data), s2_x.eq(a_rd.data), s2_init.eq(Mux(s1_saved, acc_rd.data, 0)),
        ]
        m.d.comb += [
            pe.i_valid.eq(s2_valid),
            pe.i_w.eq(s2_w),
            pe.i_x.eq(s2_x),
            pe.i_dbl.eq(s2_dbl),
            pe.i_load.eq(s2_load),
            pe.i_init.eq(s2_init),
            pe.i_tag.eq(s2_tag),
        ]
        o_emit = pe.o_tag[0]
        o_save = pe.o_tag[1]
        o_relu = pe.o_tag[2]
        o_k = pe.o_tag[3:3 + kw]
        o_accaddr = pe.o_tag[3 + kw:]
        m.d.comb += [
            acc_wr.addr.eq(o_accaddr),
            acc_wr.data.eq(pe.o_acc),
            acc_wr.en.eq(pe.o_valid & o_save),
        ]

        # ---- post-processing: Q slices of P accumulators, one per cycle -------------------------
        # A result's R accumulators reach the lanes in Q consecutive cycles: slice 0 straight from
        # the PE array, slices 1..Q-1 from a copy taken then (the array's registers move on).
        # Table word e*Q + q (slice q of entry e) is read two cycles before slice q is presented.
        first = pe.o_valid & o_emit
        pp_word = Signal(cfg.pp_width)               # the table word, registered
        m.d.sync += pp_word.eq(pp_rd.data)
        pp_q = Signal(range(Q))                      # slice presented this cycle (when pass_on)
        pass_on = Signal()                           # slices 1..Q-1 of a result are being presented
        if Q == 1:
            m.d.comb += pp_rd.addr.eq(s2_pp)
            slice_acc, slice_relu, slice_k = pe.o_acc, o_relu, o_k
            slice_valid, slice_last = first, Const(1)
        else:
            held_acc = Signal(R * AW)
            held_relu, held_k = Signal(), Signal(kw)
            rd_next = Signal(ppaw)
            with m.If(first):
                m.d.sync += [held_acc.eq(pe.o_acc), held_relu.eq(o_relu), held_k.eq(o_k),
                             pass_on.eq(1), pp_q.eq(1)]
            with m.Elif(pass_on):
                m.d.sync += pp_q.eq(pp_q + 1)
                with m.If(pp_q == Q - 1):
                    m.d.sync += pass_on.eq(0)
            entry_word = s2_pp * Q
            m.d.comb += pp_rd.addr.eq(Mux(s2_emit, entry_word, rd_next))
            m.d.sync += rd_next.eq(Mux(s2_emit, entry_word, rd_next) + 1)
            slices = Array(held_acc[q * P * AW:(q + 1) * P * AW] for q in range(Q))
            slice_acc = Mux(first, pe.o_acc[:P * AW], slices[pp_q])
            slice_relu = Mux(first, o_relu, held_relu)
            slice_k = Mux(first, o_k, held_k)
            slice_valid = first | pass_on
            slice_last = pass_on & (pp_q == Q - 1)
        m.d.comb += [
            pp.i_valid.eq(slice_valid),
            pp.i_acc.eq(slice_acc),
            pp.i_pp.eq(pp_word),
            pp.i_relu.eq(slice_relu),
            pp.i_tag.eq(Cat(slice_k, slice_last)),
        ]
        # results leave the lanes slice by slice; the beat is written with its last slice
        pp_k, pp_last = pp.o_tag[:kw], pp.o_tag[kw]
        if Q == 1:
            res_y = pp.o_y
        else:
            gathered = Signal((Q - 1) * P * OW)      # slices 0..Q-2 of the result in flight
            with m.If(pp.o_valid):
                m.d.sync += gathered.eq(Cat(gathered[P * OW:], pp.o_y))
            res_y = Cat(gathered, pp.o_y)
        m.d.comb += [
            rfifo.w_en.eq(pp.o_valid & pp_last),
            rfifo.w_data.eq(Cat(Const(0, 1), pp_k, Const(0, 2), res_y)),
        ]

        # ---- credits: results issued but not yet delivered never exceed the FIFO depth ----------
        outstanding = Signal(range(depth + 1))
        cnt_mode = Signal()
        res_from_fifo = rfifo.r_rdy & rfifo.r_en
        inc = seq.issue & seq.emit
        with m.If(inc & ~res_from_fifo):
            m.d.sync += outstanding.eq(outstanding + 1)
        with m.Elif(~inc & res_from_fifo):
            m.d.sync += outstanding.eq(outstanding - 1)
        if Q == 1:
            m.d.comb += seq.hold.eq(outstanding >= depth)
        else:   # and at least Q cycles between result-producing chunks: the lanes are free
            gap = Signal(range(Q))
            with m.If(inc):
                m.d.sync += gap.eq(Q - 1)
            with m.Elif(gap != 0):
                m.d.sync += gap.eq(gap - 1)
            m.d.comb += seq.hold.eq((outstanding >= depth) | (gap != 0))

        # ---- counters ---------------------------------------------------------------------------
        counters = [Signal(64, name=f"cnt_{n}") for n in isa.Counter.NAMES]
        events = [
            Const(1),
            seq.issue,
            seq.active & ~seq.issue,
            seq.issue & seq.plane_end,
            loader.xfer,
            res_from_fifo,
        ]
        clear = Signal()
        for cnt, ev in zip(counters, events):
            with m.If(clear):
                m.d.sync += cnt.eq(0)
            with m.Elif(ev):
                m.d.sync += cnt.eq(cnt + 1)

        # counter beats
        cnt_idx = Signal(range(NCOUNTERS + 1))
        cnt_beat = Signal(cfg.res_width)
        cnt_valid = Signal()
        cnt_xfer = cnt_valid & self.res.ready
        # build the beat for index cnt_idx (a mux; loaded into cnt_beat when a beat starts)
        cnt_next = Signal(cfg.res_width)
        with m.Switch(cnt_idx):
            for i in range(NCOUNTERS):
                with m.Case(i):
                    m.d.comb += cnt_next.eq(Cat(Const(1, 1), Const(i, 5), Const(0, 2), counters[i]))

        # ---- result output ----------------------------------------------------------------------
        m.d.comb += [
            self.res.valid.eq(Mux(cnt_mode, cnt_valid, rfifo.r_rdy)),
            self.res.payload.eq(Mux(cnt_mode, cnt_beat, rfifo.r_data)),
            rfifo.r_en.eq(self.res.ready & ~cnt_mode),
        ]

        # ---- command execution ------------------------------------------------------------------
        run_bank = Signal()
        compute_idle = ~seq.active & ~s1_valid & ~s2_valid & ~pe.o_active
        run_idle = compute_idle & ~pass_on & ~pp.o_active
        all_idle = run_idle & ~ld_active & (outstanding == 0)
        seq_free = ~seq.active | (seq.issue & seq.last)

        cmd_bank = isa.cmd_field(cmd, "bank")
        cmd_addr = isa.cmd_field(cmd, "addr")
        cmd_count = isa.cmd_field(cmd, "count")
        cmd_kstart = isa.cmd_field(cmd, "k_start")
        m.d.comb += [
            seq.k_start.eq(cmd_kstart),
            seq.k_end.eq(isa.cmd_field(cmd, "k_end")),
            seq.wplanes.eq(isa.cmd_field(cmd, "wplanes")),
            seq.ngroups.eq(isa.cmd_field(cmd, "ngroups")),
            seq.nchunks.eq(isa.cmd_field(cmd, "nchunks")),
            seq.npos.eq(isa.cmd_field(cmd, "npos")),
            seq.every_plane.eq(isa.cmd_field(cmd, "every_plane")),
            seq.save.eq(isa.cmd_field(cmd, "save")),
            seq.relu.eq(isa.cmd_field(cmd, "relu")),
            seq.abase.eq(Mux(cmd_bank, cfg.adepth, 0)),
        ]

        def start_load(target, addr):
            m.d.sync += loader.start(target, addr, cmd_count)
            m.d.comb += done.eq(1)

        with m.If(pending):
            with m.Switch(op):
                with m.Case(Op.LOAD_W):
                    with m.If(~ld_active & run_idle):
                        start_load(Op.LOAD_W, cmd_addr)
                with m.Case(Op.LOAD_PP):
                    with m.If(~ld_active & run_idle):
                        start_load(Op.LOAD_PP, cmd_addr)
                with m.Case(Op.LOAD_A):
                    with m.If(~ld_active & ~(seq.active & (run_bank == cmd_bank))):
                        start_load(Op.LOAD_A, cmd_addr + Mux(cmd_bank, cfg.adepth, 0))
                with m.Case(Op.RUN):
                    with m.If(~ld_active & seq_free & ((cmd_kstart == 0) | compute_idle)):
                        m.d.comb += seq.start.eq(1)
                        m.d.sync += run_bank.eq(cmd_bank)
                        m.d.comb += done.eq(1)
                with m.Case(Op.READ_COUNTERS):
                    with m.If(~cnt_mode & all_idle):
                        m.d.sync += [cnt_mode.eq(1), cnt_idx.eq(0), cnt_valid.eq(0)]
                    with m.If(cnt_mode):
                        with m.If(~cnt_valid | cnt_xfer):
                            with m.If(cnt_idx == NCOUNTERS):
                                m.d.sync += [cnt_mode.eq(0), cnt_valid.eq(0)]
                                m.d.comb += done.eq(1)
                            with m.Else():
                                m.d.sync += [cnt_beat.eq(cnt_next), cnt_valid.eq(1),
                                             cnt_idx.eq(cnt_idx + 1)]
                with m.Case(Op.CLEAR_COUNTERS):
                    m.d.comb += clear.eq(1)
                    m.d.comb += done.eq(1)
                with m.Default():   # NOP and reserved op codes
                    m.d.comb += done.eq(1)

        m.d.comb += self.busy.eq(pending | ld_active | ~run_idle | (outstanding != 0) | cnt_mode)
        return m
