"""RUN sequencer: walks positions x groups x planes x chunks, one chunk per cycle.

It owns the address arithmetic of ``docs/engine.md`` (weight, activation, post-processing and
saved-accumulator addresses), all computed incrementally (no per-cycle multiplier), and the
per-chunk flags the PE array and the post-processing path need.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from . import isa
from .isa import check_int

__all__ = ["Sequencer", "chunk_layout", "seq_addr_layout"]


def _fw(name):
    return isa.FIELDS[name][1]


#: flags of the chunk presented in the issue cycle
chunk_layout = data.StructLayout({
    "dbl": 1,         # first chunk of a plane: the accumulator doubles
    "load": 1,        # first chunk of a (pos, g) job: the accumulator starts anew
    "use_saved": 1,   # the job starts from a saved accumulator (k_start > 0)
    "emit": 1,        # the accumulators are post-processed after this chunk
    "save": 1,        # the accumulators are saved after this chunk
    "plane_end": 1,   # last chunk of a plane
    "k": isa.KW,      # planes done after this chunk's plane
    "relu": 1,        # ReLU (the RUN's relu)
})


def seq_addr_layout(waddr_width: int, aaddr_width: int, ppaddr_width: int,
                    accaddr_width: int) -> data.StructLayout:
    """Memory addresses of the chunk presented in the issue cycle."""
    return data.StructLayout({"w": waddr_width, "a": aaddr_width, "pp": ppaddr_width,
                              "acc": accaddr_width})


def _job_layout(width: int) -> data.StructLayout:
    """The job registers: a RUN's fields and the constants derived from them at start."""
    return data.StructLayout({
        "kstart": _fw("k_start"),
        "ncm1": _fw("nchunks"),       # nchunks - 1
        "kendm1": _fw("k_end"),       # k_end - 1
        "ngm1": _fw("ngroups"),
        "npm1": _fw("npos"),
        "nchunks": _fw("nchunks"),
        "ngroups": _fw("ngroups"),
        "wstride": width,             # wplanes * nchunks: weight words per group
        "wstart": width,              # k_start * nchunks
        "ppstart": width,             # k_start * ngroups
        "every": 1, "save": 1, "relu": 1, "saved": 1,
        "c1": 1, "p1": 1, "g1": 1,    # one chunk / plane / group per job
    })


class Sequencer(wiring.Component):
    """Address and flag generator of one RUN at a time, bubble-free across every boundary.

    Order (``docs/engine.md``): ``for pos: for g: for p in k_start..k_end-1: for c in 0..nchunks-1``.
    A new RUN may be started in the cycle that issues the previous RUN's last chunk, so two RUNs
    run back to back with no gap either.

    Parameters
    ----------
    waddr_width, aaddr_width, ppaddr_width, accaddr_width : int
        Widths of the memory addresses produced (the arithmetic is done wider; addresses are
        truncated to these widths, i.e. the host keeps them below each memory's depth).

    Members
    -------
    start : In(1)
        Load the RUN parameters below and begin (honoured when ``~active | last``).
    run : In(isa.RunArgs)
        The RUN's arguments (a view of the command's ``p.run``).
    abase : In(aaddr_width)
        Activation address of the RUN's bank (bank * adepth).
    hold : In(1)
        Do not issue an *emitting* chunk this cycle (no room for its result).
    active : Out(1)
        A RUN is being sequenced.
    issue : Out(1)
        The current chunk is issued this cycle (the memories read the addresses below).
    last : Out(1)
        The current chunk is the RUN's last one (valid with ``issue``).
    addr : Out(seq_addr_layout(...))
        Addresses of the current chunk: weight word ``w``, activation word ``a``,
        post-processing table entry ``pp`` of its plane's k (meaningful when ``emit``),
        saved-accumulator word ``acc`` of its (pos, g).
    chunk : Out(chunk_layout)
        Flags of the current chunk (see :data:`chunk_layout`).

    Latency: 0 (addresses are registers presented in the issue cycle; synchronous memories deliver
    the data one cycle later); a RUN's first chunk is presented the cycle after ``start``.
    """

    def __init__(self, *, waddr_width: int, aaddr_width: int, ppaddr_width: int,
                 accaddr_width: int):
        for n, v in (("waddr_width", waddr_width), ("aaddr_width", aaddr_width),
                     ("ppaddr_width", ppaddr_width), ("accaddr_width", accaddr_width)):
            check_int(n, v, 1, 32)
        self.waddr_width, self.aaddr_width = waddr_width, aaddr_width
        self.ppaddr_width, self.accaddr_width = ppaddr_width, accaddr_width
        super().__init__({
            "start": In(1),
            "run": In(isa.RunArgs),
            "abase": In(aaddr_width),
            "hold": In(1),
            "active": Out(1), "issue": Out(1), "last": Out(1),
            "addr": Out(seq_addr_layout(waddr_width, aaddr_width, ppaddr_width, accaddr_width)),
            "chunk": Out(chunk_layout),
        })

    @property
    def latency(self) -> int:
        return 0

    def elaborate(self, platform):
        m = Module()
        W = 32  # internal arithmetic width (wider than any address)

        j = Signal(_job_layout(W))           # the RUN being sequenced (its derived constants)
        j_kstart, j_ncm1, j_kendm1, j_ngm1, j_npm1 = j.kstart, j.ncm1, j.kendm1, j.ngm1, j.npm1
        j_nchunks, j_ngroups, j_wstride, j_wstart, j_ppstart = (j.nchunks, j.ngroups, j.wstride,
                                                                j.wstart, j.ppstart)
        j_every, j_save, j_relu, j_saved = j.every, j.save, j.relu, j.saved
        j_c1, j_p1, j_g1 = j.c1, j.p1, j.g1

        # loop state
        active = Signal()
        c = Signal(_fw("nchunks"))
        p = Signal(_fw("k_end"))
        g = Signal(_fw("ngroups"))
        pos = Signal(_fw("npos"))
        waddr = Signal(W)
        gwbase = Signal(W)                   # g*wstride + wstart: first word of this group's run
        aaddr = Signal(W)
        apos = Signal(W)                     # abase + pos*nchunks
        pprow = Signal(W)                    # p*ngroups
        accaddr = Signal(W)                  # pos*ngroups + g

        # "this is the last chunk / plane / group / position": registers kept up to date with the
        # counters (their comparisons sit beside the issue logic, not in front of it: Fmax)
        last_c, last_p, last_g, last_pos = Signal(), Signal(), Signal(), Signal()
        emit = last_c & (last_p | j_every)
        issue = active & ~(emit & self.hold)
        last = last_c & last_p & last_g & last_pos

        # addresses truncated to their widths; whole-word assignments (isa.pack_value)
        addr_layout = seq_addr_layout(self.waddr_width, self.aaddr_width, self.ppaddr_width,
                                      self.accaddr_width)
        pp_addr = (pprow + g)[:self.ppaddr_width]
        m.d.comb += [
            self.active.eq(active),
            self.issue.eq(issue),
            self.last.eq(last),
            self.addr.eq(isa.pack_value(
                addr_layout, w=waddr[:self.waddr_width], a=aaddr[:self.aaddr_width], pp=pp_addr,
                acc=accaddr[:self.accaddr_width])),
            self.chunk.eq(isa.pack_value(
                chunk_layout, dbl=c == 0, load=(c == 0) & (p == j_kstart), use_saved=j_saved,
                emit=emit, save=last_c & last_p & j_save, plane_end=last_c,
                k=(p + 1)[:isa.KW], relu=j_relu)),
        ]

        with m.If(issue):
            with m.If(~last_c):
                m.d.sync += [c.eq(c + 1), waddr.eq(waddr + 1), aaddr.eq(aaddr + 1),
                             last_c.eq(c + 1 == j_ncm1)]
            with m.Elif(~last_p):
                m.d.sync += [c.eq(0), p.eq(p + 1), waddr.eq(waddr + 1), aaddr.eq(apos),
                             pprow.eq(pprow + j_ngroups),
                             last_c.eq(j_c1), last_p.eq(p + 1 == j_kendm1)]
            with m.Elif(~last_g):
                m.d.sync += [c.eq(0), p.eq(j_kstart), g.eq(g + 1),
                             gwbase.eq(gwbase + j_wstride), waddr.eq(gwbase + j_wstride),
                             aaddr.eq(apos), pprow.eq(j_ppstart), accaddr.eq(accaddr + 1),
                             last_c.eq(j_c1), last_p.eq(j_p1), last_g.eq(g + 1 == j_ngm1)]
            with m.Elif(~last_pos):
                m.d.sync += [c.eq(0), p.eq(j_kstart), g.eq(0), pos.eq(pos + 1),
                             gwbase.eq(j_wstart), waddr.eq(j_wstart),
                             apos.eq(apos + j_nchunks), aaddr.eq(apos + j_nchunks),
                             pprow.eq(j_ppstart), accaddr.eq(accaddr + 1),
                             last_c.eq(j_c1), last_p.eq(j_p1), last_g.eq(j_g1),
                             last_pos.eq(pos + 1 == j_npm1)]
            with m.Else():
                m.d.sync += active.eq(0)

        self._start(m, j, SimpleNamespace(
            active=active, issue=issue, last=last, last_c=last_c, last_p=last_p, last_g=last_g,
            last_pos=last_pos, c=c, p=p, g=g, pos=pos, waddr=waddr, gwbase=gwbase, aaddr=aaddr,
            apos=apos, pprow=pprow, accaddr=accaddr))
        return m

    def _start(self, m, j, st):
        """Load a new RUN into the job registers ``j`` and the loop state ``st``."""
        run = self.run
        with m.If(self.start & (~st.active | (st.issue & st.last))):
            wstart = run.k_start * run.nchunks
            m.d.sync += [
                st.active.eq(1),
                j.kstart.eq(run.k_start),
                j.ncm1.eq(run.nchunks - 1),
                j.kendm1.eq(run.k_end - 1),
                j.ngm1.eq(run.ngroups - 1),
                j.npm1.eq(run.npos - 1),
                j.nchunks.eq(run.nchunks),
                j.ngroups.eq(run.ngroups),
                j.wstride.eq(run.wplanes * run.nchunks),
                j.wstart.eq(wstart),
                j.ppstart.eq(run.k_start * run.ngroups),
                j.every.eq(run.every_plane),
                j.save.eq(run.save),
                j.relu.eq(run.relu),
                j.saved.eq(run.k_start != 0),
                j.c1.eq(run.nchunks == 1),
                j.p1.eq(run.k_start == run.k_end - 1),
                j.g1.eq(run.ngroups == 1),
                st.last_c.eq(run.nchunks == 1),
                st.last_p.eq(run.k_start == run.k_end - 1),
                st.last_g.eq(run.ngroups == 1),
                st.last_pos.eq(run.npos == 1),
                st.c.eq(0), st.p.eq(run.k_start), st.g.eq(0), st.pos.eq(0),
                st.waddr.eq(wstart), st.gwbase.eq(wstart),
                st.aaddr.eq(self.abase), st.apos.eq(self.abase),
                st.pprow.eq(run.k_start * run.ngroups),
                st.accaddr.eq(0),
            ]
