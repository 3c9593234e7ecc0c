"""The ProgressiveNN engine: stream-connected stages (command front-end, data loader, exec stage,
result stage, counters) behind four ports.

Implements ``docs/engine.md`` exactly; every word format comes from :mod:`isa`, the stages and the
data flow are drawn in ``docs/architecture.md``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import isa
from .isa import EngineConfig, Kind, Op, CMD_WIDTH
from .counters import Counters, events_layout
from .exec_stage import ExecStage
from .frontend import CommandFrontEnd
from .loader import DataLoader
from .result_stage import ResultStage

__all__ = ["Engine"]


class Engine(wiring.Component):
    """MSB-first accumulative bit-serial inference engine (``docs/engine.md``).

    Parameters
    ----------
    cfg : EngineConfig
        All parameters; every derived width (``acc_width``, ``data_width``, ``res_width``) comes
        from it.
    exec_stage : type
        The exec stage class: :class:`ExecStage` (bit-serial, default) or a subclass with its
        ports and latency contract (``hw/baseline.py``: ``Int8ExecStage``, the int8 baseline).
        ``data`` is ``max(cfg.data_width, exec_stage.wwidth_of(cfg))`` wide.

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

    Structure (``docs/architecture.md``): command front-end (:class:`CommandFrontEnd`) ->
    dispatch (here) -> data loader (:class:`DataLoader`), exec stage (:class:`ExecStage`:
    sequencer, memories, PE array) -> result stage (:class:`ResultStage`: slice serializer,
    post-processing, FIFO, credits); :class:`Counters` beside them.

    Timing: one chunk per cycle with no bubbles across chunk, plane, group, position (or RUN)
    boundaries; the last result beat of a RUN whose results are not held back is valid
    ``busy_cycles + latency`` (15 + Q - 1) cycles after the cycle the RUN command was accepted (or
    the last data beat of an earlier LOAD was accepted, whichever is later). ``latency`` is the sum
    of the stages' latencies: front-end (1: accepted -> dispatched; the RUN's chunks are then
    issued in the next ``busy_cycles`` cycles) + exec stage (issue -> accumulators: memory read 1,
    memory data registered 1, :attr:`PEArray.LATENCY`) + result stage (accumulators -> beat:
    Q - 1 slices, :attr:`PostProc.LATENCY`, result FIFO 2). A
    result-producing chunk is issued only when a result FIFO place is reserved for it (credits)
    and, with Q > 1, at least Q cycles after the previous one (the post-processing lanes are then
    free), so nothing is ever dropped; the array stalls only under back-pressure on ``res`` or
    when a result would follow the previous one in fewer than Q cycles (``k * nchunks < Q``).
    """

    def __init__(self, cfg: EngineConfig = EngineConfig(), *, exec_stage: type = ExecStage):
        if not isinstance(cfg, EngineConfig):
            isa.refuse(self, TypeError(f"cfg must be an EngineConfig, not {cfg!r}"))
        if not (isinstance(exec_stage, type) and issubclass(exec_stage, ExecStage)):
            isa.refuse(self, TypeError(f"exec_stage must be an ExecStage class, not {exec_stage!r}"))
        self.cfg = cfg
        #: the exec stage class (:class:`ExecStage`, or the int8 baseline's ``Int8ExecStage``)
        self.exec_stage = exec_stage
        #: data-stream width: the widest of an activation, post-processing or weight-memory word
        self.data_width = max(cfg.data_width, exec_stage.wwidth_of(cfg))
        super().__init__({
            "cmd": In(stream.Signature(CMD_WIDTH)),
            "data": In(stream.Signature(self.data_width)),
            "res": Out(stream.Signature(cfg.res_width)),
            "busy": Out(1),
        })

    #: cycles from the FIFO write to the beat on ``res``
    FIFO_LATENCY = ResultStage.FIFO_LATENCY

    @property
    def issue_to_fifo(self) -> int:
        """Cycles from a result-producing chunk's issue to its result entering the result FIFO."""
        return self.exec_stage.LATENCY + ResultStage.to_fifo_of(self.cfg)

    @property
    def latency(self) -> int:
        """Fixed cycles from the cycle a RUN is accepted to its last result beat being valid,
        on top of the RUN's busy cycles, when the engine is idle before and ``res`` is ready: the
        sum of the stages' latencies."""
        return (CommandFrontEnd.LATENCY + self.exec_stage.LATENCY
                + ResultStage.latency_of(self.cfg))

    @property
    def fifo_depth(self) -> int:
        """Result FIFO depth (:meth:`ResultStage.fifo_depth_of`)."""
        return ResultStage.fifo_depth_of(self.cfg, self.exec_stage.LATENCY)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.frontend = fe = CommandFrontEnd()
        m.submodules.exec = ex = self.exec_stage(cfg)
        m.submodules.result = rs = ResultStage(cfg, issue_latency=ex.latency)
        m.submodules.counters = cnt = Counters(cfg)
        m.submodules.loader = ld = DataLoader(self.data_width, {
            Op.LOAD_W: (ex.waw, ex.wwidth),
            Op.LOAD_A: (ex.aaw, cfg.cols * cfg.abits),
            Op.LOAD_PP: (rs.ppaw, cfg.pp_width),
        })

        wiring.connect(m, wiring.flipped(self.cmd), fe.cmd)
        wiring.connect(m, wiring.flipped(self.data), ld.data)
        wiring.connect(m, ld.w, ex.w_wr)
        wiring.connect(m, ld.a, ex.a_wr)
        wiring.connect(m, ld.pp, rs.pp_wr)
        wiring.connect(m, ex.o, rs.i)
        wiring.connect(m, ex.pp_req, rs.pp_req)
        st = ex.status
        m.d.comb += [
            ex.run.eq(fe.cur.p.run),
            ex.bank.eq(fe.cur.bank),
            ex.hold.eq(rs.hold),
            rs.issue.eq(st.issue_emit),
        ]

        # result beats, and counter beats written into the result FIFO behind them: ``res`` is
        # the FIFO's output register and ``res.ready`` reaches nothing else (Fmax)
        wiring.connect(m, cnt.beats, rs.extra)
        wiring.connect(m, rs.res, wiring.flipped(self.res))
        reading = cnt.reading
        sent = self.res.valid & self.res.ready
        m.d.comb += [
            cnt.events.eq(isa.pack_value(
                events_layout, total=1, busy=st.issue, stall=st.seq_active & ~st.issue,
                plane_passes=st.issue & st.plane_end, data_beats=ld.xfer,
                result_beats=sent & (isa.result_layout(cfg)(self.res.payload).kind
                                     == Kind.RESULT))),
        ]

        run_idle = st.idle & ~rs.active
        all_idle = run_idle & ~ld.active & ~rs.outstanding
        self._dispatch(m, fe, ld, ex, cnt, run_idle, all_idle)
        m.d.comb += self.busy.eq(fe.pending | fe.queued | ld.active | ~run_idle | rs.outstanding | reading)
        return m

    def _dispatch(self, m, fe, ld, ex, cnt, run_idle, all_idle):
        """Execute the held command when its hazards allow (``docs/engine.md`` "Commands")."""
        cfg = self.cfg
        cmd, st = fe.cur, ex.status
        run_bank = Signal()
        done = fe.done

        def start_load(addr):
            m.d.comb += [ld.start.eq(1), ld.target.eq(cmd.op), ld.addr.eq(addr),
                         ld.count.eq(cmd.p.load.count), done.eq(1)]

        m.d.comb += cnt.req.eq(fe.pending & (cmd.op == Op.READ_COUNTERS))
        m.d.comb += cnt.idle.eq(all_idle)
        with m.If(fe.pending):
            with m.Switch(cmd.op):
                with m.Case(Op.LOAD_W, Op.LOAD_PP):
                    with m.If(~ld.active & run_idle):
                        start_load(cmd.p.load.addr)
                with m.Case(Op.LOAD_A):
                    with m.If(~ld.active & ~(st.seq_active & (run_bank == cmd.bank))):
                        start_load(cmd.p.load.addr + Mux(cmd.bank, cfg.adepth, 0))
                with m.Case(Op.RUN):
                    with m.If(~ld.active & st.free & ((cmd.p.run.k_start == 0) | st.idle)):
                        m.d.comb += [ex.start.eq(1), done.eq(1)]
                        m.d.sync += run_bank.eq(cmd.bank)
                with m.Case(Op.READ_COUNTERS):
                    m.d.comb += done.eq(cnt.done)
                with m.Case(Op.CLEAR_COUNTERS):
                    m.d.comb += [cnt.clear.eq(1), done.eq(1)]
                with m.Default():   # NOP and reserved op codes
                    m.d.comb += done.eq(1)
