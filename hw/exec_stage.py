"""The engine's exec stage: RUN sequencer, weight / activation / saved-accumulator memories, the
bit-serial PE array and the write-back of saved accumulators (``docs/architecture.md``)."""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory, WritePort
from amaranth.lib.wiring import In, Out

from . import isa
from .isa import EngineConfig
from .pe_array import PEArray
from .sequencer import Sequencer

__all__ = ["ExecStage", "exec_out_layout", "exec_status_layout", "memory_slices", "memory_ports"]


def memory_slices(platform, width: int, depth: int) -> list[int]:
    """Widths of the memories that hold a ``width x depth`` memory side by side: ``[width]`` (one
    memory), except on ECP5 at depths 513..1024, where Yosys maps a wide memory onto 512 x 36
    blocks two deep and selects between each pair with a LUT after the blocks' read data (5.83 ns
    clock-to-out): there, 18-bit slices, each one ``DP16KD`` in its 1024 x 18 mode whose read data
    goes straight to its register (#16). Same block count (ceil(width / 18) against
    2 * ceil(width / 36)) or one fewer."""
    if getattr(platform, "family", None) == "ecp5" and 512 < depth <= 1024 and width > 18:
        return [min(18, width - lo) for lo in range(0, width, 18)]
    return [width]


def memory_ports(m, name: str, widths: list[int], depth: int, addr_width: int):
    """A memory of ``sum(widths)`` bits built from one memory per width (:func:`memory_slices`),
    all on one address: ``(read, write)``. One width: the memory's own read and write ports (the
    memory is submodule ``name``). Several: ``read`` has ``addr`` (a signal) and ``data`` (the
    slices' read data, concatenated), ``write`` is a ``WritePort.Signature`` interface whose
    address, data slices and enable go to every slice (submodules ``name0``, ``name1``, ...)."""
    if len(widths) == 1:
        m.submodules[name] = mem = Memory(shape=widths[0], depth=depth, init=[])
        return mem.read_port(), mem.write_port()
    rd = SimpleNamespace(addr=Signal(addr_width, name=f"{name}_rd_addr"))
    wr = WritePort.Signature(addr_width=addr_width, shape=sum(widths)).create(path=(f"{name}_wr",))
    datas, lo = [], 0
    for i, w in enumerate(widths):
        m.submodules[f"{name}{i}"] = mem = Memory(shape=w, depth=depth, init=[])
        rp, wp = mem.read_port(), mem.write_port()
        m.d.comb += [rp.addr.eq(rd.addr), wp.addr.eq(wr.addr), wp.data.eq(wr.data[lo:lo + w]),
                     wp.en.eq(wr.en)]
        datas.append(rp.data)
        lo += w
    rd.data = Cat(*datas)
    return rd, wr


def exec_out_layout(cfg: EngineConfig) -> data.StructLayout:
    """One chunk leaving the PE array: the R accumulators and the chunk's side-band metadata."""
    return data.StructLayout({"acc": cfg.rows * cfg.acc_width,
                              "meta": isa.pe_meta_layout(isa.addr_width(cfg.accdepth))})


#: what the command front-end needs to know about the exec stage
exec_status_layout = data.StructLayout({
    "seq_active": 1,   # a RUN is being sequenced
    "issue": 1,        # a chunk is issued this cycle
    "issue_emit": 1,   # ... and it produces a result (takes a result credit)
    "plane_end": 1,    # ... and it ends a plane pass
    "free": 1,         # a new RUN may start this cycle (none active, or the last chunk issued)
    "idle": 1,         # no chunk anywhere in the stage (sequencer, pipeline, PE array)
})


class ExecStage(wiring.Component):
    """Sequencer -> memories -> registered memory data -> PE array -> saved-accumulator write.

    Members
    -------
    start : In(1)
        Start the RUN described by ``run`` and ``bank`` (see :class:`Sequencer`).
    run : In(isa.RunArgs)
    bank : In(1)
        Activation bank of the RUN.
    hold : In(1)
        Do not issue a result-producing chunk this cycle (no result credit).
    w_wr : Out(WritePort.Signature(addr_width(wdepth), R*C))
        Weight memory write port (``isa.weight_layout`` words).
    a_wr : Out(WritePort.Signature(addr_width(2*adepth), C*A))
        Activation memory write port, two banks of ``adepth`` words (``isa.act_layout``).
    pp_req : Out(stream.Signature(addr_width(pp_entries), always_ready=True))
        Table entry of a result-producing chunk, valid 2 cycles before its accumulators leave on
        ``o`` (the result stage reads its table then and registers the word).
    o : Out(stream.Signature(exec_out_layout(cfg), always_ready=True))
        Every chunk's accumulators and metadata (``isa.pe_meta_layout``) as they leave the array.
    status : Out(exec_status_layout)

    Widths: accumulators ``cfg.acc_width`` each; memories weights ``wdepth x R*C``, activations
    ``2*adepth x C*A``, saved accumulators ``accdepth x R*AW``; all synchronous-read.

    Latency (:attr:`latency`): 2 + ``PEArray.LATENCY`` cycles from a chunk's issue to its
    accumulators on ``o``: memory read (1), memory data registered (1: no memory output feeds
    logic directly), PE array. A RUN's first chunk is issued the cycle after ``start`` and its
    last ``busy_cycles`` later; one chunk per cycle, no bubbles. The saved accumulator of a job's
    first chunk is read ``PEArray.LATENCY - 1`` cycles after the chunk's weights and activations
    (the array samples ``i_init`` in its accumulate stage), so it is not carried through the
    array's pipeline (R*AW flip-flops a stage).
    """

    #: bits of one weight in a weight-memory word (one plane bit here)
    WEIGHT_BITS = 1

    @staticmethod
    def wdepth_of(cfg: EngineConfig) -> int:
        """Words of the weight memory."""
        return cfg.wdepth

    @classmethod
    def wwidth_of(cls, cfg: EngineConfig) -> int:
        """Width of one weight-memory word (a ``LOAD_W`` data beat)."""
        return cfg.rows * cfg.cols * cls.WEIGHT_BITS

    def __init__(self, cfg: EngineConfig):
        self.cfg = cfg
        self.wdepth = self.wdepth_of(cfg)
        self.wwidth = self.wwidth_of(cfg)
        self.waw = isa.addr_width(self.wdepth)
        self.aaw = isa.addr_width(2 * cfg.adepth)
        self.ppew = isa.addr_width(cfg.pp_entries)
        self.accaw = isa.addr_width(cfg.accdepth)
        super().__init__({
            "start": In(1),
            "run": In(isa.RunArgs),
            "bank": In(1),
            "hold": In(1),
            "w_wr": Out(WritePort.Signature(addr_width=self.waw, shape=self.wwidth)),
            "a_wr": Out(WritePort.Signature(addr_width=self.aaw, shape=cfg.cols * cfg.abits)),
            "pp_req": Out(stream.Signature(self.ppew, always_ready=True)),
            "o": Out(stream.Signature(exec_out_layout(cfg), always_ready=True)),
            "status": Out(exec_status_layout),
        })

    #: cycles from a chunk's issue to its accumulators on ``o``
    LATENCY = 2 + PEArray.LATENCY

    @property
    def latency(self) -> int:
        """Cycles from a chunk's issue to its accumulators on ``o``."""
        return self.LATENCY

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        R, C, A, AW = cfg.rows, cfg.cols, cfg.abits, cfg.acc_width

        wsl = memory_slices(platform, R * C, cfg.wdepth)
        asl = memory_slices(platform, C * A, 2 * cfg.adepth)
        if len(wsl) == 1 and len(asl) == 1:
            m.submodules.wmem = wmem = Memory(shape=R * C, depth=cfg.wdepth, init=[])
            m.submodules.amem = amem = Memory(shape=C * A, depth=2 * cfg.adepth, init=[])
            m.submodules.accmem = accmem = Memory(shape=R * AW, depth=cfg.accdepth, init=[])
            w_rd, a_rd, acc_rd, acc_wr = (wmem.read_port(), amem.read_port(),
                                          accmem.read_port(), accmem.write_port())
            wiring.connect(m, wiring.flipped(self.w_wr), wmem.write_port())
            wiring.connect(m, wiring.flipped(self.a_wr), amem.write_port())
        else:        # ECP5: memories 513..1024 deep in 18-bit slices (memory_slices)
            w_rd, w_wr = memory_ports(m, "wmem", wsl, cfg.wdepth, self.waw)
            a_rd, a_wr = memory_ports(m, "amem", asl, 2 * cfg.adepth, self.aaw)
            m.submodules.accmem = accmem = Memory(shape=R * AW, depth=cfg.accdepth, init=[])
            acc_rd, acc_wr = accmem.read_port(), accmem.write_port()
            wiring.connect(m, wiring.flipped(self.w_wr), w_wr)
            wiring.connect(m, wiring.flipped(self.a_wr), a_wr)

        m.submodules.seq = seq = Sequencer(waddr_width=self.waw, aaddr_width=self.aaw,
                                           ppaddr_width=self.ppew, accaddr_width=self.accaw)
        meta_layout = isa.pe_meta_layout(self.accaw)
        m.submodules.pe = pe = PEArray(rows=R, cols=C, abits=A, acc_width=AW,
                                       tag_width=meta_layout.size)
        m.d.comb += [
            seq.start.eq(self.start),
            seq.run.eq(self.run),
            seq.abase.eq(Mux(self.bank, cfg.adepth, 0)),
            seq.hold.eq(self.hold),
            w_rd.addr.eq(seq.addr.w),
            a_rd.addr.eq(seq.addr.a),
        ]

        # issue (S0) -> memory data (S1) -> registered (S2) -> PE array
        ch = seq.chunk
        s1_valid, s2_valid = Signal(), Signal()
        s1_meta, s2_meta = Signal(meta_layout), Signal(meta_layout)
        s1_load, s1_dbl, s2_load, s2_dbl = Signal(), Signal(), Signal(), Signal()
        s1_pp, s2_pp = Signal(self.ppew), Signal(self.ppew)
        s2_emit = Signal()
        s2_w, s2_x = Signal(R * C), Signal(C * A)
        m.d.sync += [
            s1_valid.eq(seq.issue),
            s1_load.eq(ch.load), s1_dbl.eq(ch.dbl),
            s1_meta.emit.eq(ch.emit), s1_meta.save.eq(ch.save), s1_meta.relu.eq(ch.relu),
            s1_meta.k.eq(ch.k), s1_meta.accaddr.eq(seq.addr.acc),
            s1_pp.eq(seq.addr.pp),
            s2_pp.eq(s1_pp),
            s2_emit.eq(s1_valid & s1_meta.emit),
            s2_valid.eq(s1_valid), s2_meta.eq(s1_meta), s2_load.eq(s1_load), s2_dbl.eq(s1_dbl),
            s2_w.eq(w_rd.data), s2_x.eq(a_rd.data),
        ]
        # saved accumulators are read late: the array samples i_init in its accumulate stage,
        # PEArray.LATENCY - 1 cycles after the chunk (S2), so the read address and flag wait
        # PEArray.LATENCY - 1 cycles, then memory read (1) and data registered (1), as above
        rd_acc, rd_saved = seq.addr.acc, ch.use_saved
        for i in range(PEArray.LATENCY - 1):
            d_acc = Signal(self.accaw, name=f"acc_rd_addr{i}")
            d_saved = Signal(name=f"acc_rd_saved{i}")
            m.d.sync += [d_acc.eq(rd_acc), d_saved.eq(rd_saved)]
            rd_acc, rd_saved = d_acc, d_saved
        m.d.comb += acc_rd.addr.eq(rd_acc)
        init_saved, init = Signal(), Signal(R * AW)
        m.d.sync += [init_saved.eq(rd_saved), init.eq(Mux(init_saved, acc_rd.data, 0))]
        m.d.comb += [
            pe.i_valid.eq(s2_valid), pe.i_w.eq(s2_w), pe.i_x.eq(s2_x), pe.i_dbl.eq(s2_dbl),
            pe.i_load.eq(s2_load), pe.i_init.eq(init), pe.i_tag.eq(s2_meta),
        ]
        # the table entry goes to the result stage 2 cycles before the accumulators leave the
        # array (it reads the table, then registers the word): PEArray.LATENCY - 2 cycles after S2
        req_emit, req_pp = s2_emit, s2_pp
        for i in range(PEArray.LATENCY - 2):
            d_emit, d_pp = Signal(name=f"req_emit{i}"), Signal(self.ppew, name=f"req_pp{i}")
            m.d.sync += [d_emit.eq(req_emit), d_pp.eq(req_pp)]
            req_emit, req_pp = d_emit, d_pp
        o_meta = data.View(meta_layout, pe.o_tag)
        m.d.comb += [
            acc_wr.addr.eq(o_meta.accaddr),
            acc_wr.data.eq(pe.o_acc),
            acc_wr.en.eq(pe.o_valid & o_meta.save),
            self.pp_req.valid.eq(req_emit),
            self.pp_req.payload.eq(req_pp),
            self.o.valid.eq(pe.o_valid),
            # whole-word assignments (isa.pack_value: no partial drivers for Icarus)
            self.o.payload.eq(isa.pack_value(exec_out_layout(cfg), acc=pe.o_acc, meta=pe.o_tag)),
            self.status.eq(isa.pack_value(
                exec_status_layout, seq_active=seq.active, issue=seq.issue,
                issue_emit=seq.issue & ch.emit, plane_end=ch.plane_end,
                free=~seq.active | (seq.issue & seq.last),
                idle=~seq.active & ~s1_valid & ~s2_valid & ~pe.o_active)),
        ]
        return m
