"""Resident-network engine: the whole network lives on chip; an image goes in, its class comes out.

Network memory (weights of every plane of every layer, per-k post-processing tables, the layer
program) is written once with WRITE_* commands; per image the host writes the image codes
(WRITE_FM) and sends RUN(k); the engine runs every program layer from on-chip feature-map memory
and answers with a SUMMARY (class, k, cycles), the logits and one busy counter per layer.
Word formats: :mod:`.layout`; architecture and cycle model: ``docs/resident.md``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, Cat, Const, Mux, Array, signed
from amaranth.lib import wiring, stream, data
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..pe_array import PEArray
from ..postproc import PostProc
from .layout import (ResidentConfig, Op, Kind, ResKind, SW, desc_layout, cmd_layout, res_layout,
                     summary_layout, counter_layout, tap_layout, addr_width, DIMW)
from .window import WindowGen

__all__ = ["ResidentEngine"]


class ResidentEngine(wiring.Component):
    """Runs a resident layer program on the shared PE array and post-processing unit.

    Parameters
    ----------
    cfg : ResidentConfig

    Members
    -------
    cmd : In(stream.Signature(cmd_layout(cfg)))
        Commands (:class:`.layout.Op`); accepted one per cycle while idle, none while a RUN or a
        READ_FM is being answered.
    res : Out(stream.Signature(res_layout(cfg)))
        Result beats (:class:`.layout.ResKind`).

    Pipeline of a chunk: issue (window generator, memory addresses) -> memory data -> registered
    (padding gated) -> PE array (``PEArray.LATENCY``) -> post-processing (``PostProc.LATENCY``)
    -> feature-map write (convolutions);
    a pool chunk goes from the registered data to a lane-wise running maximum and writes at the
    window's last tap. A layer starts when the previous one has drained (its last write done).

    Cycles of one RUN (ready consumer): per layer its busy cycles
    ``out_h*out_w*ngroups*planes*nchunks`` plus a fixed :attr:`layer_overhead`, then the SUMMARY;
    ``cycles`` in the SUMMARY counts from the image's first WRITE_FM (or the RUN) to the SUMMARY.
    """

    #: cycles between two layers: descriptor fetch (3) + drain of a convolution's pipeline
    #: (memory 2, ``PEArray.LATENCY``, ``PostProc.LATENCY``)
    DESC_CYCLES = 3

    def __init__(self, cfg: ResidentConfig = ResidentConfig()):
        if not isinstance(cfg, ResidentConfig):
            self._MustUse__silence = True
            raise TypeError(f"cfg must be a ResidentConfig, not {cfg!r}")
        self.cfg = cfg
        super().__init__({
            "cmd": In(stream.Signature(cmd_layout(cfg))),
            "res": Out(stream.Signature(res_layout(cfg))),
        })

    @property
    def layer_overhead(self) -> int:
        """Fixed cycles a convolution layer costs on top of its busy cycles."""
        return self.DESC_CYCLES + 2 + PEArray.LATENCY + PostProc.LATENCY

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        R, C, A, N, AW, OW = cfg.rows, cfg.cols, cfg.abits, cfg.nbits, cfg.acc_width, cfg.obits
        GPW = cfg.groups_per_word
        dl = desc_layout(cfg)

        # ---- memories ---------------------------------------------------------------------------
        m.submodules.wmem = wmem = Memory(shape=cfg.w_width, depth=cfg.wdepth, init=[])
        m.submodules.ppmem = ppmem = Memory(shape=cfg.pp_width, depth=cfg.ppdepth, init=[])
        m.submodules.prog = progmem = Memory(shape=dl.size, depth=cfg.max_layers, init=[])
        m.submodules.fmem = fmem = Memory(shape=cfg.fm_width, depth=cfg.fmdepth, init=[])
        w_wr, w_rd = wmem.write_port(), wmem.read_port()
        pp_wr, pp_rd = ppmem.write_port(), ppmem.read_port()
        pg_wr, pg_rd = progmem.write_port(), progmem.read_port()
        fm_wr, fm_rd = fmem.write_port(granularity=A), fmem.read_port()

        # ---- blocks -----------------------------------------------------------------------------
        m.submodules.win = win = WindowGen(cfg)
        tag = data.StructLayout({"emit": 1, "tfirst": 1, "tlast": 1, "o_addr": len(win.o_addr),
                                 "gsub": 8, "g": 12})
        tw = tag.size
        m.submodules.pe = pe = PEArray(rows=R, cols=C, abits=A, acc_width=AW, tag_width=tw)
        m.submodules.pp = pp = PostProc(rows=R, acc_width=AW, mbits=cfg.mbits, bbits=cfg.bbits,
                                        abits=A, obits=OW, shift_width=SW, tag_width=tw)

        desc = Signal(dl)
        k = Signal(5)
        layer = Signal(range(cfg.max_layers + 1))
        pool = desc.kind == Kind.POOL
        m.d.comb += [win.desc.eq(desc), win.planes.eq(Mux(pool, 1, k))]

        # ---- command decode ---------------------------------------------------------------------
        cmd = self.cmd.payload
        accept = self.cmd.valid & self.cmd.ready
        m.d.comb += [
            w_wr.addr.eq(cmd.addr), w_wr.data.eq(cmd.data),
            w_wr.en.eq(accept & (cmd.op == Op.WRITE_W)),
            pp_wr.addr.eq(cmd.addr), pp_wr.data.eq(cmd.data),
            pp_wr.en.eq(accept & (cmd.op == Op.WRITE_PP)),
            pg_wr.addr.eq(cmd.addr), pg_wr.data.eq(cmd.data),
            pg_wr.en.eq(accept & (cmd.op == Op.WRITE_PROG)),
            pg_rd.addr.eq(layer),
        ]

        # ---- chunk pipeline ---------------------------------------------------------------------
        # S1: memories deliver; flags registered alongside
        s1 = {n: Signal(len(getattr(win, n)), name=f"s1_{n}")
              for n in ("inb", "first", "load", "emit", "g", "o_addr", "gsub", "tfirst", "tlast")}
        s1_valid = Signal()
        m.d.sync += s1_valid.eq(win.active)
        m.d.sync += [s.eq(getattr(win, n)) for n, s in s1.items()]
        m.d.comb += w_rd.addr.eq(win.w_addr)
        # S2: memory outputs registered before any logic; padding taps gated to zero
        s2 = {n: Signal(len(s), name=f"s2_{n}") for n, s in s1.items()}
        s2_valid = Signal()
        s2_x = Signal(C * A)
        s2_w = Signal(R * C)
        fm_x = Mux(s1["inb"], fm_rd.data, 0)
        if cfg.taps:
            fm_x = Mux(desc.taps, self._tap_banks(m, win, accept, cmd), fm_x)
        s2_pp = Signal(len(win.pp_addr))
        s1_pp = Signal(len(win.pp_addr))
        m.d.sync += [s1_pp.eq(win.pp_addr), s2_pp.eq(s1_pp)]
        m.d.sync += [s2_valid.eq(s1_valid), s2_w.eq(w_rd.data),
                     s2_x.eq(fm_x)]
        m.d.sync += [s.eq(s1[n]) for n, s in s2.items()]
        # PE array; its post-processing entry is read meanwhile and registered to align
        pp_reg = Signal(cfg.pp_width)
        pp_addr = s2_pp      # read 2 cycles before the chunk leaves the array (PEArray.LATENCY)
        for i in range(PEArray.LATENCY - 2):
            d = Signal(len(s2_pp), name=f"pp_addr_d{i}")
            m.d.sync += d.eq(pp_addr)
            pp_addr = d
        m.d.comb += pp_rd.addr.eq(pp_addr)
        m.d.sync += pp_reg.eq(pp_rd.data)
        tag_in = Cat(s2["emit"], s2["tfirst"], s2["tlast"], s2["o_addr"], s2["gsub"], s2["g"])
        m.d.comb += [
            pe.i_valid.eq(s2_valid & ~pool), pe.i_w.eq(s2_w), pe.i_x.eq(s2_x),
            pe.i_dbl.eq(s2["first"]), pe.i_load.eq(s2["load"]), pe.i_init.eq(0),
            pe.i_tag.eq(tag_in),
            pp.i_valid.eq(pe.o_valid & data.View(tag, pe.o_tag).emit), pp.i_acc.eq(pe.o_acc),
            pp.i_pp.eq(pp_reg), pp.i_relu.eq(desc.relu), pp.i_tag.eq(pe.o_tag),
        ]
        otag = data.View(tag, pp.o_tag)
        o_addr, o_gsub, o_g = otag.o_addr, otag.gsub, otag.g
        ys = [pp.o_y[r * OW:(r + 1) * OW].as_signed() for r in range(R)]
        rows_ok = [Signal(name=f"row_ok{r}") for r in range(R)]
        m.d.comb += [ok.eq((o_g * R + r) < desc.nout) for r, ok in enumerate(rows_ok)]

        # pool: lane-wise running maximum over the window's taps
        lanes = [s2_x[l * A:(l + 1) * A] for l in range(C)]
        mx = Signal(C * A)
        mx_lanes = [mx[l * A:(l + 1) * A] for l in range(C)]
        newmax = Cat(*[Mux(s2["first"] | (x > old), x, old) for x, old in zip(lanes, mx_lanes)])
        with m.If(s2_valid & pool):
            m.d.sync += mx.eq(newmax)

        # ---- feature-map ports: image writes, conv results, pool results; reads ---------------
        conv_wr = pp.o_valid & ~desc.last & otag.tlast
        pool_wr = s2_valid & pool & s2["emit"]
        # a fused pool: running maximum per output group over the tile's positions
        codes = [y[:A] for y in ys]
        if cfg.fuse_groups:
            pmax = Array(Signal(R * A, name=f"pmax{i}") for i in range(cfg.fuse_groups))
            old = Signal(R * A, name="pmax_old")      # one multiplexer, not one per use
            m.d.comb += old.eq(pmax[o_g])
            codes = [Mux(otag.tfirst | (cd > old[r * A:(r + 1) * A]), cd, old[r * A:(r + 1) * A])
                     for r, cd in enumerate(codes)]
            with m.If(pp.o_valid & ~desc.last & ~otag.tlast):
                m.d.sync += pmax[o_g].eq(Cat(*codes))
        codes = Cat(*codes)
        with m.If(pool_wr):
            m.d.comb += [fm_wr.addr.eq(s2["o_addr"]), fm_wr.data.eq(newmax),
                         fm_wr.en.eq((1 << C) - 1)]
        with m.Elif(conv_wr):
            m.d.comb += [fm_wr.addr.eq(o_addr), fm_wr.data.eq(Cat(*[codes] * GPW)),
                         fm_wr.en.eq(Cat(*[(o_gsub == s) & ok for s in range(GPW)
                                           for ok in rows_ok]))]
        with m.Else():
            m.d.comb += [fm_wr.addr.eq(cmd.addr), fm_wr.data.eq(cmd.data),
                         fm_wr.en.eq(Mux(accept & (cmd.op == Op.WRITE_FM), (1 << C) - 1, 0))]

        # ---- logits and argmax ------------------------------------------------------------------
        logits = Array(Signal(R * OW, name=f"logits{i}") for i in range(cfg.logit_groups))
        best_v = Signal(signed(OW))
        best_i = Signal(12)
        have = Signal()
        logit_wr = pp.o_valid & desc.last
        # argmax in two stages (a chain of R compares was the longest path of the ULX3S build:
        # 15.7 MHz): a tree over the group's R rows, pairs in index order, the higher one taken
        # only when strictly greater (the lowest index wins ties, as in golden), registered; then
        # the merge with the running best a cycle later. The SUMMARY state comes two cycles after
        # the last logit write (RUN sees the drained pipeline one cycle after it), so it reads
        # the final best. Every value is a named signal (nested expressions would repeat logic).
        cands = [(rows_ok[r], ys[r], Const(r, range(max(R, 2)))) for r in range(R)]
        level = 0
        while len(cands) > 1:
            nxt = []
            for j in range(0, len(cands) - 1, 2):
                (ha, va, ia), (hb, vb, ib) = cands[j], cands[j + 1]
                take = Signal(name=f"am_take{level}_{j}")
                nh = Signal(name=f"am_h{level}_{j}")
                nv = Signal(signed(OW), name=f"am_v{level}_{j}")
                ni = Signal(range(max(R, 2)), name=f"am_i{level}_{j}")
                m.d.comb += [take.eq(hb & (~ha | (vb > va))), nh.eq(ha | hb),
                             nv.eq(Mux(take, vb, va)), ni.eq(Mux(take, ib, ia))]
                nxt.append((nh, nv, ni))
            if len(cands) % 2:
                nxt.append(cands[-1])
            cands, level = nxt, level + 1
        grp_h, grp_v, grp_i = cands[0]
        g_h = Signal()
        g_v = Signal(signed(OW))
        g_i = Signal(12)
        m.d.sync += [g_h.eq(logit_wr & grp_h), g_v.eq(grp_v), g_i.eq(o_g * R + grp_i)]
        with m.If(g_h & (~have | (g_v > best_v))):
            m.d.sync += [best_v.eq(g_v), best_i.eq(g_i), have.eq(1)]
        with m.If(logit_wr):
            m.d.sync += logits[o_g].eq(pp.o_y)

        # ---- counters ---------------------------------------------------------------------------
        counting = Signal()
        cycles = Signal(32)
        busy = Signal(32)
        busies = Array(Signal(32, name=f"busy{i}") for i in range(cfg.max_layers))
        with m.If(counting):
            m.d.sync += cycles.eq(cycles + 1)
        with m.If(win.active):
            m.d.sync += busy.eq(busy + 1)

        # ---- control ----------------------------------------------------------------------------
        in_flight = win.active | s1_valid | s2_valid | pe.o_active | pp.o_active
        ridx = Signal(12)
        rd_addr = Signal(len(cmd.addr))
        m.d.comb += fm_rd.addr.eq(Mux(win.active, win.fm_addr, rd_addr))
        summ = Signal(summary_layout(cfg))
        m.d.comb += [summ.cls.eq(best_i), summ.k.eq(k), summ.cycles.eq(cycles)]
        cnt = Signal(counter_layout(cfg))
        m.d.comb += cnt.busy.eq(busies[ridx])
        out = self.res.payload

        # ``alive`` rises one cycle after reset: an event for event-driven simulators (Icarus)
        # whose combinational blocks would otherwise never see the initial state
        alive = Signal()
        m.d.sync += alive.eq(1)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(alive)
                with m.If(accept & ((cmd.op == Op.WRITE_FM) | (cmd.op == Op.WRITE_IMG) |
                                    (cmd.op == Op.RUN)) & ~counting):
                    m.d.sync += [counting.eq(1), cycles.eq(1)]
                with m.If(accept & (cmd.op == Op.RUN)):
                    m.d.sync += [k.eq(cmd.data[:5]), layer.eq(0), have.eq(0)]
                    m.next = "DESC_WAIT"
                with m.If(accept & (cmd.op == Op.READ_FM)):
                    m.d.sync += rd_addr.eq(cmd.addr)
                    m.next = "READ_WAIT"
            with m.State("DESC_WAIT"):          # program memory reads descriptor ``layer``
                m.next = "DESC_LATCH"
            with m.State("DESC_LATCH"):
                m.d.sync += desc.eq(pg_rd.data)
                m.next = "START"
            with m.State("START"):
                m.d.comb += win.start.eq(1)
                m.d.sync += busy.eq(0)
                m.next = "RUN"
            with m.State("RUN"):
                with m.If(~in_flight):
                    m.d.sync += busies[layer].eq(busy)
                    with m.If(desc.last):
                        m.d.sync += ridx.eq(0)
                        m.next = "SUMMARY"
                    with m.Else():
                        m.d.sync += layer.eq(layer + 1)
                        m.next = "DESC_WAIT"
            with m.State("SUMMARY"):
                m.d.comb += [self.res.valid.eq(1), out.kind.eq(ResKind.SUMMARY),
                             out.data.eq(summ)]
                with m.If(self.res.ready):
                    m.d.sync += [counting.eq(0), ridx.eq(0)]
                    m.next = "LOGITS"
            with m.State("LOGITS"):
                m.d.comb += [self.res.valid.eq(1), out.kind.eq(ResKind.LOGITS),
                             out.index.eq(ridx), out.data.eq(logits[ridx])]
                with m.If(self.res.ready):
                    with m.If(ridx == desc.ngroups - 1):
                        m.d.sync += ridx.eq(0)
                        m.next = "COUNTERS"
                    with m.Else():
                        m.d.sync += ridx.eq(ridx + 1)
            with m.State("COUNTERS"):
                m.d.comb += [self.res.valid.eq(1), out.kind.eq(ResKind.COUNTER),
                             out.index.eq(ridx), out.data.eq(cnt)]
                with m.If(self.res.ready):
                    m.d.sync += ridx.eq(ridx + 1)
                    with m.If(ridx == layer):
                        m.next = "IDLE"
            with m.State("READ_WAIT"):
                m.next = "READ_OUT"
            with m.State("READ_OUT"):
                m.d.comb += [self.res.valid.eq(1), out.kind.eq(ResKind.FM_WORD),
                             out.index.eq(0), out.data.eq(fm_rd.data)]
                with m.If(self.res.ready):
                    m.next = "IDLE"
        return m

    def _tap_banks(self, m, win, accept, cmd):
        """Tap banks of a one-channel first layer: ``taps`` copies of the image, C pixels a word;
        lane l reads the pixel at its tap (table entry l) of the current window, gated to 0 in
        the padding, so a whole window is one chunk. Returns the lanes of the chunk, one cycle
        after the issue (aligned with the feature-map read data)."""
        cfg = self.cfg
        C, A = cfg.cols, cfg.abits
        lb = (C - 1).bit_length()                      # C is a power of two
        taw = addr_width(cfg.tapdepth)
        tl = tap_layout(cfg)
        # network state, like the memories: kept across a reset
        table = [Signal(tl, name=f"tap{l}", reset_less=True) for l in range(cfg.taps)]
        for l, t in enumerate(table):
            with m.If(accept & (cmd.op == Op.WRITE_TAP) & (cmd.addr == l)):
                m.d.sync += t.eq(cmd.data[:tl.size])
        lanes = []
        for l, t in enumerate(table):
            bank = Memory(shape=C * A, depth=cfg.tap_words, init=[])
            m.submodules[f"tapbank{l}"] = bank
            wr, rd = bank.write_port(), bank.read_port()
            m.d.comb += [wr.addr.eq(cmd.addr), wr.data.eq(cmd.data[:C * A]),
                         wr.en.eq(accept & (cmd.op == Op.WRITE_IMG))]
            addr = Signal(taw, name=f"tapaddr{l}")
            iy = Signal(signed(DIMW + 3), name=f"tapiy{l}")
            ix = Signal(signed(DIMW + 3), name=f"tapix{l}")
            m.d.comb += [addr.eq(win.win + t.off), iy.eq(win.iy0 + t.dy), ix.eq(win.ix0 + t.dx),
                         rd.addr.eq(addr[lb:])]
            sel = Signal(max(lb, 1), name=f"tapsel{l}")
            ok = Signal(name=f"tapok{l}")
            m.d.sync += [sel.eq(addr[:lb] if lb else 0),
                         ok.eq(t.valid & (iy >= 0) & (iy < win.desc.in_h) & (ix >= 0) &
                               (ix < win.desc.in_w))]
            px = Array(rd.data[i * A:(i + 1) * A] for i in range(C))[sel]
            lanes.append(Mux(ok, px, 0))
        lanes += [Const(0, A)] * (C - cfg.taps)
        return Cat(*lanes)
