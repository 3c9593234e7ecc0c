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
    ``out_h*out_w*qh*qw*ngroups*planes*nchunks`` chunks.
    """

    def __init__(self, cfg: ResidentConfig):
        self.cfg = cfg
        faw, waw, ppaw = (addr_width(d) for d in (cfg.fmdepth, cfg.wdepth, cfg.ppdepth))
        self._widths = faw, waw, ppaw
        super().__init__({
            "start": In(1), "desc": In(desc_layout(cfg)), "planes": In(5),
            "active": Out(1), "done": Out(1),
            "fm_addr": Out(faw), "inb": Out(1), "w_addr": Out(waw), "pp_addr": Out(ppaw),
            "first": Out(1), "load": Out(1), "emit": Out(1),
            "g": Out(12), "o_addr": Out(faw), "gsub": Out(8),
            "win": Out(faw), "iy0": Out(signed(DIMW + 2)), "ix0": Out(signed(DIMW + 2)),
            "tfirst": Out(1), "tlast": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, d = self.cfg, self.desc
        faw, waw, ppaw = self._widths
        N = cfg.nbits
        pool = d.kind == Kind.POOL

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

        ncw = Mux(pool, 1, d.ncw)
        l_cw = cw == ncw - 1
        l_dx = dx == d.kw - 1
        l_dy = dy == d.kh - 1
        row_end = l_cw & l_dx
        plane_end = row_end & l_dy
        l_p = p == self.planes - 1
        group_end = plane_end & l_p
        l_g = g == d.ngroups - 1
        pos_end = group_end & l_g
        l_qx = qx == d.qw - 1
        l_qy = qy == d.qh - 1
        tile_end = pos_end & l_qx & l_qy
        l_ox = ox == d.out_w - 1
        l_oy = oy == d.out_h - 1

        iy = Signal(signed(DIMW + 3))
        ix = Signal(signed(DIMW + 3))
        m.d.comb += [iy.eq(iy0 + dy), ix.eq(ix0 + dx)]
        m.d.comb += [
            self.active.eq(active),
            self.done.eq(active & tile_end & l_ox & l_oy),
            self.tfirst.eq((qx == 0) & (qy == 0)),
            self.tlast.eq(l_qx & l_qy),
            self.fm_addr.eq(win + Mux(pool, g, 0) + off),
            self.inb.eq((iy >= 0) & (iy < d.in_h) & (ix >= 0) & (ix < d.in_w)),
            self.w_addr.eq(wrow + c),
            self.pp_addr.eq(ppg + p),
            self.first.eq((cw == 0) & (dx == 0) & (dy == 0)),
            self.load.eq((cw == 0) & (dx == 0) & (dy == 0) & (p == 0)),
            self.emit.eq(group_end),
            self.g.eq(g),
            self.o_addr.eq(opos + Mux(pool, g, gw)),
            self.gsub.eq(gsub),
            self.win.eq(win), self.iy0.eq(iy0), self.ix0.eq(ix0),
        ]

        with m.If(self.start):
            m.d.sync += [
                active.eq(1),
                cw.eq(0), dx.eq(0), dy.eq(0), c.eq(0), p.eq(0), g.eq(0), ox.eq(0), oy.eq(0),
                qx.eq(0), qy.eq(0), win_q.eq(d.win0), win_t.eq(d.win0),
                ix_t.eq(-d.pw), iy_t.eq(-d.ph),
                gsub.eq(0), gw.eq(0), off.eq(0), off_row.eq(0),
                win.eq(d.win0), win_row.eq(d.win0),
                iy0.eq(-d.ph), ix0.eq(-d.pw),
                wg.eq(d.wbase), wrow.eq(d.wbase), ppg.eq(d.ppbase), opos.eq(d.out_base),
            ]
        with m.Elif(active):
            # taps: cw fastest, then dx, then dy (channel-packed words are contiguous along a row)
            m.d.sync += cw.eq(Mux(l_cw, 0, cw + 1))
            with m.If(l_cw):
                m.d.sync += dx.eq(Mux(l_dx, 0, dx + 1))
            with m.If(plane_end):
                m.d.sync += [dy.eq(0), off.eq(0), off_row.eq(0), c.eq(0)]
            with m.Elif(row_end):
                m.d.sync += [dy.eq(dy + 1), off.eq(off_row + d.rowstride),
                             off_row.eq(off_row + d.rowstride), c.eq(c + 1)]
            with m.Else():
                # next word of the pixel or the next pixel's first (conv: contiguous); a pool
                # steps whole pixels
                m.d.sync += [off.eq(off + Mux(pool, d.ncw, 1)), c.eq(c + 1)]
            # planes, then output groups
            with m.If(plane_end):
                m.d.sync += [p.eq(Mux(l_p, 0, p + 1)), wrow.eq(wrow + d.nchunks)]
            with m.If(group_end):
                with m.If(l_g):
                    m.d.sync += [g.eq(0), gsub.eq(0), gw.eq(0), wg.eq(d.wbase),
                                 wrow.eq(d.wbase), ppg.eq(d.ppbase)]
                with m.Else():
                    m.d.sync += [g.eq(g + 1), wg.eq(wg + d.wgstep), wrow.eq(wg + d.wgstep),
                                 ppg.eq(ppg + N)]
                    with m.If(gsub == cfg.groups_per_word - 1):
                        m.d.sync += [gsub.eq(0), gw.eq(gw + 1)]
                    with m.Else():
                        m.d.sync += gsub.eq(gsub + 1)
            # output positions: qx, qy inside a qw x qh tile (a fused pool window), then tiles
            with m.If(pos_end):
                with m.If(~l_qx):
                    m.d.sync += [qx.eq(qx + 1), ix0.eq(ix0 + d.sw), win.eq(win + d.xstep)]
                with m.Elif(~l_qy):
                    m.d.sync += [qx.eq(0), qy.eq(qy + 1), ix0.eq(ix_t), iy0.eq(iy0 + d.sh),
                                 win.eq(win_q + d.ystep), win_q.eq(win_q + d.ystep)]
                with m.Elif(~l_ox):
                    m.d.sync += [qx.eq(0), qy.eq(0), ox.eq(ox + 1),
                                 ix_t.eq(ix_t + d.tsw), ix0.eq(ix_t + d.tsw), iy0.eq(iy_t),
                                 win_t.eq(win_t + d.txstep), win_q.eq(win_t + d.txstep),
                                 win.eq(win_t + d.txstep)]
                with m.Else():
                    m.d.sync += [qx.eq(0), qy.eq(0), ox.eq(0), oy.eq(oy + 1),
                                 iy_t.eq(iy_t + d.tsh), iy0.eq(iy_t + d.tsh),
                                 ix_t.eq(-d.pw), ix0.eq(-d.pw),
                                 win_row.eq(win_row + d.tystep), win_t.eq(win_row + d.tystep),
                                 win_q.eq(win_row + d.tystep), win.eq(win_row + d.tystep)]
                    with m.If(l_oy):
                        m.d.sync += active.eq(0)
            with m.If(tile_end):
                m.d.sync += opos.eq(opos + d.out_words)
        return m
