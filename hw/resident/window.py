"""Convolution-window address generator of the resident engine: one chunk per cycle.

Walks one program layer (``layout.desc_layout``) in the order
``for ty: for tx: for qy < qh: for qx < qw: for g: for p < planes: for dy < kh: for dx < kw:
for cw < ncw`` (output position ``(ty*qh + qy, tx*qw + qx)``; a tile is the window of a pool fused
into the convolution, 1x1 otherwise) and presents, per
chunk, the feature-map word, the weight word and the flags the PE array, post-processing and
write-back need. All addresses are kept incrementally (adders only, no multiplier); taps that fall
into the zero padding are flagged (``inb`` low) so the engine gates them to zero instead of reading
them.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Module, Signal, Mux, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .layout import ResidentConfig, Kind, desc_layout, addr_width, DIMW

__all__ = ["WindowGen"]


class WindowGen(wiring.Component):
    """Address and flag generator of one program layer.

    Parameters
    ----------
    cfg : ResidentConfig

    Members
    -------
    start : In(1)
        Load counters from ``desc`` (which must hold the layer's descriptor) and begin.
    desc : In(desc_layout(cfg))
        The layer descriptor (held constant while ``active``).
    planes : In(5)
        Planes per output group: k for a convolution, 1 for a pool.
    p0, wskip : In(5), In(waw) (only with ``cfg.accdepth``)
        Continuation: walk planes ``p0 .. planes-1`` only (the first chunk of plane ``p0`` loads
        the saved accumulator); ``wskip = p0*nchunks`` (the weights of the skipped planes).
        0 and 0 for a plain layer.
    active : Out(1)
        A chunk is issued this cycle (the generator never stalls).
    done : Out(1)
        This chunk is the layer's last.
    fm_addr : Out(faw)
        Feature-map word of the chunk (meaningless when ``inb`` is low).
    inb : Out(1)
        The tap lies inside the input map (low: zero padding, gate the activations to 0).
    w_addr : Out(waw)
        Weight word: ``wbase + (g*N + p)*nchunks + c``.
    pp_addr : Out(ppaw)
        Post-processing entry ``ppbase + g*N + p`` (meaningful with ``emit``: p = k-1).
    first, load, emit : Out(1)
        First chunk of a plane (the accumulator doubles); first chunk of an output group (the
        accumulator starts at 0); last chunk of the group's last plane (post-process it).
    g : Out(12)
        Output group (conv: channels ``g*R ..``; pool: input word ``g`` of a pixel).
    o_addr : Out(faw)
        Feature-map word the group's result goes to.
    gsub : Out(8)
        Conv: which R-lane slice of that word (``g mod C/R``).
    tfirst, tlast : Out(1)
        First / last output position of its tile (a fused pool window: the write-back keeps a
        running maximum per group and writes at the last).
    win, iy0, ix0 : Out
        Address of the window's top-left tap and its input row/column (``oy*sh - ph``,
        ``ox*sw - pw``): the tap banks of a first layer add each lane's offset to them.

    Latency: 0 (outputs are functions of registers in the issue cycle). One chunk per cycle from
    the cycle after ``start`` to ``done``; a layer issues exactly
    ``out_h*out_w*qh*qw*ngroups*(planes - p0)*nchunks`` chunks (``p0`` = 0 without
    ``cfg.accdepth``).
    """

    def __init__(self, cfg: ResidentConfig):
        self.cfg = cfg
        faw, waw, ppaw = (addr_width(d) for d in (cfg.fmdepth, cfg.wdepth, cfg.ppdepth))
        self._widths = faw, waw, ppaw
        cont = {"p0": In(5), "wskip": In(waw)} if cfg.accdepth else {}
        super().__init__({
            "start": In(1), "desc": In(desc_layout(cfg)), "planes": In(5), **cont,
            "active": Out(1), "done": Out(1),
            "fm_addr": Out(faw), "inb": Out(1), "w_addr": Out(waw), "pp_addr": Out(ppaw),
            "first": Out(1), "load": Out(1), "emit": Out(1),
            "g": Out(12), "o_addr": Out(faw), "gsub": Out(8),
            "win": Out(faw), "iy0": Out(signed(DIMW + 2)), "ix0": Out(signed(DIMW + 2)),
            "tfirst": Out(1), "tlast": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        s = self._registers()
        self._flags(s)
        self._outputs(m, s)
        with m.If(self.start):
            self._load(m, s)
        with m.Elif(s.active):
            self._step_taps(m, s)
            self._step_groups(m, s)
            self._step_positions(m, s)
        return m

    def _registers(self) -> SimpleNamespace:
        """The walk's counters and incrementally kept addresses."""
        faw, waw, ppaw = self._widths
        cw, dx, dy = Signal(8), Signal(DIMW), Signal(DIMW)
        c, p, g = Signal(16), Signal(5), Signal(12)
        ox, oy = Signal(DIMW), Signal(DIMW)            # tile
        qx, qy = Signal(DIMW), Signal(DIMW)            # position inside the tile
        win_q, win_t = Signal(faw), Signal(faw)         # tile row start, tile origin
        ix_t, iy_t = Signal(signed(DIMW + 2)), Signal(signed(DIMW + 2))
        gsub, gw = Signal(8), Signal(12)
        off, off_row = Signal(faw), Signal(faw)
        win, win_row = Signal(faw), Signal(faw)
        iy0, ix0 = Signal(signed(DIMW + 2)), Signal(signed(DIMW + 2))
        wg, wrow = Signal(waw), Signal(waw)
        ppg = Signal(ppaw)
        opos = Signal(faw)
        active = Signal()
        return SimpleNamespace(cw=cw, dx=dx, dy=dy, c=c, p=p, g=g, ox=ox, oy=oy, qx=qx, qy=qy,
                               win_q=win_q, win_t=win_t, ix_t=ix_t, iy_t=iy_t, gsub=gsub, gw=gw,
                               off=off, off_row=off_row, win=win, win_row=win_row, iy0=iy0,
                               ix0=ix0, wg=wg, wrow=wrow, ppg=ppg, opos=opos, active=active)

    def _flags(self, s):
        """Last-of-loop conditions, innermost first (expressions, no logic of their own)."""
        d = self.desc
        s.pool = d.kind == Kind.POOL
        s.l_cw = s.cw == Mux(s.pool, 1, d.ncw) - 1
        s.l_dx = s.dx == d.kw - 1
        s.l_dy = s.dy == d.kh - 1
        s.row_end = s.l_cw & s.l_dx
        s.plane_end = s.row_end & s.l_dy
        s.l_p = s.p == self.planes - 1
        s.group_end = s.plane_end & s.l_p
        s.l_g = s.g == d.ngroups - 1
        s.pos_end = s.group_end & s.l_g
        s.l_qx = s.qx == d.qw - 1
        s.l_qy = s.qy == d.qh - 1
        s.tile_end = s.pos_end & s.l_qx & s.l_qy
        s.l_ox = s.ox == d.out_w - 1
        s.l_oy = s.oy == d.out_h - 1

    def _outputs(self, m, s):
        """The chunk's addresses and flags: functions of the registers (latency 0)."""
        d = self.desc
        p0 = self.p0 if self.cfg.accdepth else 0
        iy = Signal(signed(DIMW + 3))
        ix = Signal(signed(DIMW + 3))
        m.d.comb += [iy.eq(s.iy0 + s.dy), ix.eq(s.ix0 + s.dx)]
        m.d.comb += [
            self.active.eq(s.active),
            self.done.eq(s.active & s.tile_end & s.l_ox & s.l_oy),
            self.tfirst.eq((s.qx == 0) & (s.qy == 0)),
            self.tlast.eq(s.l_qx & s.l_qy),
            self.fm_addr.eq(s.win + Mux(s.pool, s.g, 0) + s.off),
            self.inb.eq((iy >= 0) & (iy < d.in_h) & (ix >= 0) & (ix < d.in_w)),
            self.w_addr.eq(s.wrow + s.c),
            self.pp_addr.eq(s.ppg + s.p),
            self.first.eq((s.cw == 0) & (s.dx == 0) & (s.dy == 0)),
            self.load.eq((s.cw == 0) & (s.dx == 0) & (s.dy == 0) & (s.p == p0)),
            self.emit.eq(s.group_end),
            self.g.eq(s.g),
            self.o_addr.eq(s.opos + Mux(s.pool, s.g, s.gw)),
            self.gsub.eq(s.gsub),
            self.win.eq(s.win), self.iy0.eq(s.iy0), self.ix0.eq(s.ix0),
        ]

    def _load(self, m, s):
        """``start``: every counter to the layer's first chunk."""
        d = self.desc
        p0, wskip = (self.p0, self.wskip) if self.cfg.accdepth else (0, 0)
        m.d.sync += [
            s.active.eq(1),
            s.cw.eq(0), s.dx.eq(0), s.dy.eq(0), s.c.eq(0), s.p.eq(p0), s.g.eq(0), s.ox.eq(0),
            s.oy.eq(0), s.qx.eq(0), s.qy.eq(0), s.win_q.eq(d.win0), s.win_t.eq(d.win0),
            s.ix_t.eq(-d.pw), s.iy_t.eq(-d.ph),
            s.gsub.eq(0), s.gw.eq(0), s.off.eq(0), s.off_row.eq(0),
            s.win.eq(d.win0), s.win_row.eq(d.win0),
            s.iy0.eq(-d.ph), s.ix0.eq(-d.pw),
            s.wg.eq(d.wbase), s.wrow.eq(d.wbase + wskip if self.cfg.accdepth else d.wbase),
            s.ppg.eq(d.ppbase), s.opos.eq(d.out_base),
        ]

    def _step_taps(self, m, s):
        """Taps: cw fastest, then dx, then dy (channel-packed words are contiguous along a row)."""
        d = self.desc
        m.d.sync += s.cw.eq(Mux(s.l_cw, 0, s.cw + 1))
        with m.If(s.l_cw):
            m.d.sync += s.dx.eq(Mux(s.l_dx, 0, s.dx + 1))
        with m.If(s.plane_end):
            m.d.sync += [s.dy.eq(0), s.off.eq(0), s.off_row.eq(0), s.c.eq(0)]
        with m.Elif(s.row_end):
            m.d.sync += [s.dy.eq(s.dy + 1), s.off.eq(s.off_row + d.rowstride),
                         s.off_row.eq(s.off_row + d.rowstride), s.c.eq(s.c + 1)]
        with m.Else():
            # next word of the pixel or the next pixel's first (conv: contiguous); a pool steps
            # whole pixels
            m.d.sync += [s.off.eq(s.off + Mux(s.pool, d.ncw, 1)), s.c.eq(s.c + 1)]

    def _step_groups(self, m, s):
        """Planes, then output groups (weight row, table entry, output word and lane slice)."""
        d, N = self.desc, self.cfg.nbits
        if self.cfg.accdepth:      # continuation: every group starts at plane p0
            p0, w0, wnext = self.p0, d.wbase + self.wskip, s.wg + d.wgstep + self.wskip
        else:
            p0, w0, wnext = 0, d.wbase, s.wg + d.wgstep
        with m.If(s.plane_end):
            m.d.sync += [s.p.eq(Mux(s.l_p, p0, s.p + 1)), s.wrow.eq(s.wrow + d.nchunks)]
        with m.If(s.group_end):
            with m.If(s.l_g):
                m.d.sync += [s.g.eq(0), s.gsub.eq(0), s.gw.eq(0), s.wg.eq(d.wbase),
                             s.wrow.eq(w0), s.ppg.eq(d.ppbase)]
            with m.Else():
                m.d.sync += [s.g.eq(s.g + 1), s.wg.eq(s.wg + d.wgstep),
                             s.wrow.eq(wnext), s.ppg.eq(s.ppg + N)]
                with m.If(s.gsub == self.cfg.groups_per_word - 1):
                    m.d.sync += [s.gsub.eq(0), s.gw.eq(s.gw + 1)]
                with m.Else():
                    m.d.sync += s.gsub.eq(s.gsub + 1)

    def _step_positions(self, m, s):
        """Output positions: qx, qy inside a qw x qh tile (a fused pool window), then tiles; the
        generator stops after the last tile's last chunk."""
        d = self.desc
        with m.If(s.pos_end):
            with m.If(~s.l_qx):
                m.d.sync += [s.qx.eq(s.qx + 1), s.ix0.eq(s.ix0 + d.sw), s.win.eq(s.win + d.xstep)]
            with m.Elif(~s.l_qy):
                m.d.sync += [s.qx.eq(0), s.qy.eq(s.qy + 1), s.ix0.eq(s.ix_t),
                             s.iy0.eq(s.iy0 + d.sh), s.win.eq(s.win_q + d.ystep),
                             s.win_q.eq(s.win_q + d.ystep)]
            with m.Elif(~s.l_ox):
                m.d.sync += [s.qx.eq(0), s.qy.eq(0), s.ox.eq(s.ox + 1),
                             s.ix_t.eq(s.ix_t + d.tsw), s.ix0.eq(s.ix_t + d.tsw),
                             s.iy0.eq(s.iy_t), s.win_t.eq(s.win_t + d.txstep),
                             s.win_q.eq(s.win_t + d.txstep), s.win.eq(s.win_t + d.txstep)]
            with m.Else():
                m.d.sync += [s.qx.eq(0), s.qy.eq(0), s.ox.eq(0), s.oy.eq(s.oy + 1),
                             s.iy_t.eq(s.iy_t + d.tsh), s.iy0.eq(s.iy_t + d.tsh),
                             s.ix_t.eq(-d.pw), s.ix0.eq(-d.pw),
                             s.win_row.eq(s.win_row + d.tystep),
                             s.win_t.eq(s.win_row + d.tystep),
                             s.win_q.eq(s.win_row + d.tystep), s.win.eq(s.win_row + d.tystep)]
                with m.If(s.l_oy):
                    m.d.sync += s.active.eq(0)
        with m.If(s.tile_end):
            m.d.sync += s.opos.eq(s.opos + d.out_words)
