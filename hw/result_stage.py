"""The engine's result stage: slice serializer, post-processing lanes, result FIFO and the credits
that keep the FIFO from ever overflowing (``docs/architecture.md``)."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.memory import Memory, WritePort
from amaranth.lib.wiring import In, Out

from . import isa
from .exec_stage import exec_out_layout, memory_ports, memory_slices
from .isa import EngineConfig, Kind
from .postproc import PostProc

__all__ = ["ResultStage"]


class ResultStage(wiring.Component):
    """Post-processes every result-producing chunk of the exec stage into one result beat.

    A result's R accumulators reach the P post-processing lanes in Q = R/P consecutive slices
    (slice 0 straight from the exec stage, slices 1..Q-1 from a copy taken then); table word
    ``e*Q + q`` (slice q of entry e) is read two cycles before slice q is presented. The beat
    (``isa.result_layout``) is written into the result FIFO with its last slice.

    Credits: a result-producing chunk may be issued (``issue``) only while ``hold`` is low: a
    FIFO place is reserved for it and, with Q > 1, the lanes are free (at least Q cycles since the
    previous one). So nothing is ever dropped and the FIFO's ``w_rdy`` need not be looked at.

    Members
    -------
    i : In(stream.Signature(exec_out_layout(cfg), always_ready=True))
        Chunks leaving the exec stage (only those whose ``meta.emit`` is set are used).
    pp_req : In(stream.Signature(addr_width(pp_entries), always_ready=True))
        Table entry of a result-producing chunk, 2 cycles ahead of it on ``i``.
    pp_wr : Out(WritePort.Signature(addr_width(ppdepth), pp_width))
        Post-processing table write port (``isa.pp_layout`` words).
    issue : In(1)
        A result-producing chunk is issued this cycle (takes a credit).
    hold : Out(1)
        No credit: the next result-producing chunk must wait.
    extra : In(stream.Signature(cfg.res_width))
        Other beats (the engine's counter beats) written into the result FIFO in order, so that
        ``res`` is the FIFO's output register with no multiplexer behind it and ``res.ready``
        reaches nothing but the FIFO. Taken only in a cycle without a result to write; the
        engine sends them only while no result is in flight.
    res : Out(stream.Signature(cfg.res_width))
        Result beats (and the ``extra`` beats).
    outstanding : Out(1)
        Results issued, or ``extra`` beats taken, but not yet delivered on ``res``.
    active : Out(1)
        A slice is in the lanes or being presented.

    Latency (:attr:`latency`): ``(Q - 1) + PostProc.LATENCY + FIFO_LATENCY`` cycles from a
    chunk on ``i`` to its beat valid on ``res`` (when the FIFO is empty).
    """

    #: cycles from the FIFO write to the beat on ``res`` (SyncFIFOBuffered)
    FIFO_LATENCY = 2

    def __init__(self, cfg: EngineConfig, *, issue_latency: int):
        self.cfg = cfg
        self.issue_latency = issue_latency
        self.ppaw = isa.addr_width(cfg.ppdepth)
        self.ppew = isa.addr_width(cfg.pp_entries)
        super().__init__({
            "i": In(stream.Signature(exec_out_layout(cfg), always_ready=True)),
            "pp_req": In(stream.Signature(self.ppew, always_ready=True)),
            "pp_wr": Out(WritePort.Signature(addr_width=self.ppaw, shape=cfg.pp_width)),
            "issue": In(1),
            "hold": Out(1),
            "extra": In(stream.Signature(cfg.res_width)),
            "res": Out(stream.Signature(cfg.res_width)),
            "outstanding": Out(1),
            "active": Out(1),
        })

    @staticmethod
    def to_fifo_of(cfg: EngineConfig) -> int:
        """Cycles from a chunk on ``i`` to its result entering the FIFO."""
        return (cfg.pp_slices - 1) + PostProc.LATENCY

    @classmethod
    def latency_of(cls, cfg: EngineConfig) -> int:
        """Cycles from a chunk on ``i`` to its beat valid on ``res``."""
        return cls.to_fifo_of(cfg) + cls.FIFO_LATENCY

    @classmethod
    def fifo_depth_of(cls, cfg: EngineConfig, issue_latency: int) -> int:
        """Enough credits that a ready consumer never stalls the array (results are issued at most
        one per Q cycles): ``issue_latency`` is the exec stage's, from issue to ``i``."""
        Q = cfg.pp_slices
        return -(-(issue_latency + cls.latency_of(cfg)) // Q) + 4

    @property
    def to_fifo(self) -> int:
        return self.to_fifo_of(self.cfg)

    @property
    def latency(self) -> int:
        return self.latency_of(self.cfg)

    @property
    def fifo_depth(self) -> int:
        return self.fifo_depth_of(self.cfg, self.issue_latency)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        ppsl = memory_slices(platform, cfg.pp_width, cfg.ppdepth)
        if len(ppsl) == 1:
            m.submodules.ppmem = ppmem = Memory(shape=cfg.pp_width, depth=cfg.ppdepth, init=[])
            wiring.connect(m, wiring.flipped(self.pp_wr), ppmem.write_port())
            pp_rd = ppmem.read_port()
        else:        # ECP5, 513..1024 entries: 18-bit slices (exec_stage.memory_slices)
            pp_rd, pp_wr = memory_ports(m, "ppmem", ppsl, cfg.ppdepth, self.ppaw)
            wiring.connect(m, wiring.flipped(self.pp_wr), pp_wr)
        m.submodules.pp = pp = PostProc(lanes=cfg.pp_par, acc_width=cfg.acc_width,
                                        mbits=cfg.mbits, bbits=cfg.bbits, abits=cfg.abits,
                                        obits=cfg.obits, shift_width=isa.SW,
                                        tag_width=isa.pp_meta_layout.size)
        m.submodules.rfifo = rfifo = fifo.SyncFIFOBuffered(width=cfg.res_width,
                                                           depth=self.fifo_depth)
        pass_on = self._slices(m, pp_rd, pp)
        self._gather(m, pp, rfifo)
        wiring.connect(m, rfifo.r_stream, wiring.flipped(self.res))
        self._credits(m)
        m.d.comb += self.active.eq(pass_on | pp.o_active)
        return m

    def _slices(self, m, pp_rd, pp):
        """Present a result's Q slices to the lanes, one per cycle; returns ``pass_on``."""
        cfg = self.cfg
        R, AW, P, Q = cfg.rows, cfg.acc_width, cfg.pp_par, cfg.pp_slices
        meta = self.i.payload.meta
        first = self.i.valid & meta.emit
        pp_word = Signal(cfg.pp_width)               # the table word, registered
        m.d.sync += pp_word.eq(pp_rd.data)
        pp_q = Signal(range(Q))                      # slice presented this cycle (when pass_on)
        pass_on = Signal()                           # slices 1..Q-1 of a result are presented
        if Q == 1:
            m.d.comb += pp_rd.addr.eq(self.pp_req.payload)
            slice_acc, slice_relu, slice_k = self.i.payload.acc, meta.relu, meta.k
            slice_valid, slice_last = first, Const(1)
        else:
            held_acc = Signal(R * AW)
            held_relu, held_k = Signal(), Signal(isa.KW)
            rd_next = Signal(self.ppaw)
            with m.If(first):
                m.d.sync += [held_acc.eq(self.i.payload.acc), held_relu.eq(meta.relu),
                             held_k.eq(meta.k), pass_on.eq(1), pp_q.eq(1)]
            with m.Elif(pass_on):
                m.d.sync += pp_q.eq(pp_q + 1)
                with m.If(pp_q == Q - 1):
                    m.d.sync += pass_on.eq(0)
            entry_word = self.pp_req.payload * Q
            rd = Mux(self.pp_req.valid, entry_word, rd_next)
            m.d.comb += pp_rd.addr.eq(rd)
            m.d.sync += rd_next.eq(rd + 1)
            slices = Array(held_acc[q * P * AW:(q + 1) * P * AW] for q in range(Q))
            slice_acc = Mux(first, self.i.payload.acc[:P * AW], slices[pp_q])
            slice_relu = Mux(first, meta.relu, held_relu)
            slice_k = Mux(first, meta.k, held_k)
            slice_valid = first | pass_on
            slice_last = pass_on & (pp_q == Q - 1)
        m.d.comb += [
            pp.i_valid.eq(slice_valid),
            pp.i_acc.eq(slice_acc),
            pp.i_pp.eq(pp_word),
            pp.i_relu.eq(slice_relu),
            pp.i_tag.eq(isa.pack_value(isa.pp_meta_layout, k=slice_k, last=slice_last)),
        ]
        return pass_on

    def _gather(self, m, pp, rfifo):
        """Results leave the lanes slice by slice; the beat is written with its last slice."""
        cfg = self.cfg
        P, Q, OW = cfg.pp_par, cfg.pp_slices, cfg.obits
        o_tag = isa.pp_meta_layout(pp.o_tag)
        if Q == 1:
            res_y = pp.o_y
        else:
            gathered = Signal((Q - 1) * P * OW)      # slices 0..Q-2 of the result in flight
            with m.If(pp.o_valid):
                m.d.sync += gathered.eq(Cat(gathered[P * OW:], pp.o_y))
            res_y = Cat(gathered, pp.o_y)
        # one whole-word assignment (isa.pack_value: no partial drivers for Icarus)
        beat = isa.pack_value(isa.result_layout(cfg), kind=Kind.RESULT.value, tag=o_tag.k,
                              body=res_y)
        result = pp.o_valid & o_tag.last
        m.d.comb += [
            rfifo.w_stream.valid.eq(result | self.extra.valid),
            rfifo.w_stream.payload.eq(Mux(result, beat, self.extra.payload)),
            self.extra.ready.eq(rfifo.w_stream.ready & ~result),
        ]

    def _credits(self, m):
        """Results issued (and ``extra`` beats taken) but not yet delivered never exceed the FIFO
        depth. An ``extra`` beat is taken only when the FIFO has room and never in a cycle that
        issues a result (no result is in flight then)."""
        Q, depth = self.cfg.pp_slices, self.fifo_depth
        outstanding = Signal(range(depth + 1))
        delivered = self.res.valid & self.res.ready
        taken = self.issue | (self.extra.valid & self.extra.ready)
        with m.If(taken & ~delivered):
            m.d.sync += outstanding.eq(outstanding + 1)
        with m.Elif(~taken & delivered):
            m.d.sync += outstanding.eq(outstanding - 1)
        m.d.comb += self.outstanding.eq(outstanding != 0)
        if Q == 1:
            m.d.comb += self.hold.eq(outstanding >= depth)
        else:   # and at least Q cycles between result-producing chunks: the lanes are free
            gap = Signal(range(Q))
            with m.If(self.issue):
                m.d.sync += gap.eq(Q - 1)
            with m.Elif(gap != 0):
                m.d.sync += gap.eq(gap - 1)
            m.d.comb += self.hold.eq((outstanding >= depth) | (gap != 0))
