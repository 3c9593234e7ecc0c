"""Resident-network engine: the whole network lives on chip; an image goes in, its class comes out.

Network memory (weights of every plane of every layer, per-k post-processing tables, the layer
program) is written once with WRITE_* commands; per image the host writes the image codes
(WRITE_FM) and sends RUN(k); the engine runs every program layer from on-chip feature-map memory
and answers with a SUMMARY (class, k, cycles), the logits and one busy counter per layer.
Word formats: :mod:`.layout`; architecture and cycle model: ``docs/resident.md``.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Module, Signal, Cat, Const, Mux, Array, signed
from amaranth.lib import wiring, stream, data
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .. import isa
from ..pe_array import PEArray
from ..postproc import PostProc
from .impl import ResidentImpl
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
        READ_FM is being answered; with ``cfg.double_buffer`` image writes (WRITE_FM, WRITE_IMG)
        of the next image are also accepted during a RUN (:meth:`_buffers`).
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

    Continuation (``cfg.accdepth`` > 0, :meth:`_continuation`): every RUN saves the accumulators
    of its first convolution (before post-processing) in the continuation memory; a RUN(k') with
    ``data[5]`` set, after a RUN(k < k') on the same image and network, walks only planes
    ``k .. k'-1`` of that layer on top of them (its busy cycles ``P*ngroups*(k'-k)*nchunks``),
    post-processes with the k' table and recomputes every later layer. Without a valid saved
    pass (any write since, or k' <= k) the layer is recomputed.
    """

    #: cycles between two layers: descriptor fetch (3) + drain of a convolution's pipeline
    #: (memory 2, ``PEArray.LATENCY``, ``PostProc.LATENCY``)
    DESC_CYCLES = 3

    def __init__(self, cfg: ResidentConfig = ResidentConfig(), *, impl: ResidentImpl | None = None):
        if not isinstance(cfg, ResidentConfig):
            self._MustUse__silence = True
            raise TypeError(f"cfg must be a ResidentConfig, not {cfg!r}")
        if impl is not None and not isinstance(impl, ResidentImpl):
            self._MustUse__silence = True
            raise TypeError(f"impl must be a ResidentImpl, not {impl!r}")
        self.cfg = cfg
        #: memory mapping (:class:`.impl.ResidentImpl`: netlist only, same behaviour)
        self.impl = impl or ResidentImpl()
        if self.impl.desc_from_ram and cfg.double_buffer:
            self._MustUse__silence = True
            raise ValueError("ResidentImpl(desc_from_ram=True) needs double_buffer off (the "
                             "first descriptor's win0 is adjusted in the descriptor register)")
        if self.impl.pp_shared and (cfg.rows % 2 or cfg.adds):
            self._MustUse__silence = True
            raise ValueError(f"ResidentImpl(pp_shared=True) needs an even number of rows (not "
                             f"{cfg.rows}) and no ADD unit (adds={cfg.adds})")
        if self.impl.pp_shared and not cfg.pp_shared:
            self._MustUse__silence = True
            raise ValueError("ResidentImpl(pp_shared=True) needs ResidentConfig(pp_shared=True) "
                             "(the host then refuses a k that would lose outputs)")
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
        n = SimpleNamespace(cfg=self.cfg)
        self._memories(m, n)
        self._blocks(m, n)
        self._buffers(m, n)
        self._command_writes(m, n)
        self._pipeline(m, n)
        self._pool_max(m, n)
        self._fm_writes(m, n)
        self._logits(m, n)
        self._counters(m, n)
        self._continuation(m, n)
        self._control(m, n)
        return m

    # Each piece below adds its part of the engine to ``m`` and keeps the signals other pieces use
    # in the namespace ``n``; they are called in the order of the pipeline.

    def _memories(self, m, n):
        """Network memories (weights, post-processing tables, program) and the feature map; one
        write and one read port each, read data one cycle after the address."""
        cfg = self.cfg
        n.dl = desc_layout(cfg)
        impl = self.impl
        m.submodules.wmem = wmem = Memory(
            shape=cfg.w_width, depth=cfg.wdepth, init=[],
            attrs={"ram_style": "huge"} if impl.weights_single_port else None)
        m.submodules.ppmem = ppmem = Memory(shape=cfg.pp_width, depth=cfg.ppdepth, init=[])
        m.submodules.prog = progmem = Memory(
            shape=n.dl.size, depth=cfg.max_layers, init=[],
            attrs={"ram_style": "block"} if impl.prog_ram else None)
        m.submodules.fmem = fmem = Memory(shape=cfg.fm_width, depth=cfg.fmdepth, init=[])
        w_wr, w_rd = wmem.write_port(), wmem.read_port()
        pp_wr, pp_rd = ppmem.write_port(), ppmem.read_port()
        pg_wr, pg_rd = progmem.write_port(), progmem.read_port()
        fm_wr, fm_rd = fmem.write_port(granularity=cfg.abits), fmem.read_port()
        n.w_wr, n.w_rd, n.pp_wr, n.pp_rd = w_wr, w_rd, pp_wr, pp_rd
        n.pg_wr, n.pg_rd, n.fm_wr, n.fm_rd = pg_wr, pg_rd, fm_wr, fm_rd
        if impl.results_ram:     # logit halves, then busy counts (ResidentImpl.results_ram)
            depth = 2 * cfg.logit_groups + cfg.max_layers
            m.submodules.resmem = resmem = Memory(shape=cfg.rows // 2 * cfg.obits, depth=depth,
                                                  init=[], attrs={"ram_style": "huge"})
            n.r_wr, n.r_rd = resmem.write_port(), resmem.read_port()
            # one address (single-port RAM): a write's, else the answer's read address
            n.r_addr = Signal(addr_width(depth), name="res_addr")
            n.r_read = Signal(addr_width(depth), name="res_read")
            m.d.comb += [n.r_addr.eq(n.r_read), n.r_wr.addr.eq(n.r_addr),
                         n.r_rd.addr.eq(n.r_addr), n.r_rd.en.eq(~n.r_wr.en)]
        if cfg.accdepth:      # continuation memory: one word of R accumulators per (position, g)
            m.submodules.accmem = accmem = Memory(shape=cfg.rows * cfg.acc_width,
                                                  depth=cfg.accdepth, init=[])
            n.acc_wr, n.acc_rd = accmem.write_port(), accmem.read_port()

    def _blocks(self, m, n):
        """Window generator, PE array, post-processing; the layer state (descriptor, k, layer)."""
        cfg = self.cfg
        R, C, A, AW = cfg.rows, cfg.cols, cfg.abits, cfg.acc_width
        m.submodules.win = n.win = win = WindowGen(cfg)
        gsub_w, g_w = 8, 12
        if self.impl.narrow_tags:      # every output word in the feature map, logits in the file
            gsub_w = addr_width(cfg.groups_per_word)
            g_w = addr_width(max(cfg.fmdepth * cfg.groups_per_word, cfg.logit_groups))
        # pp_shared: ``half`` says which half of the group's rows the post-processing carries
        n.tag = data.StructLayout({"emit": 1, "tfirst": 1, "tlast": 1, "o_addr": len(win.o_addr),
                                   "gsub": gsub_w, "g": g_w,
                                   **({"half": 1} if self.impl.pp_shared else {})})
        tw = n.tag.size
        m.submodules.pe = n.pe = PEArray(rows=R, cols=C, abits=A, acc_width=AW, tag_width=tw)
        shared = self.impl.pp_shared
        m.submodules.pp = n.pp = PostProc(rows=R // 2 if shared else R, acc_width=AW,
                                          mbits=cfg.mbits, bbits=cfg.bbits, abits=A,
                                          obits=cfg.obits, shift_width=SW, tag_width=tw,
                                          register_inputs=not shared,
                                          merge_stages=self.impl.pp_merge_stages)
        n.desc = Signal(n.dl)
        if self.impl.desc_from_ram:      # the program memory's read data is the descriptor
            m.d.comb += n.desc.eq(n.pg_rd.data)
        n.k = Signal(5)
        n.layer = Signal(range(cfg.max_layers + 1))
        n.pool = n.desc.kind == Kind.POOL
        m.d.comb += [win.desc.eq(n.desc), win.planes.eq(Mux(n.pool, 1, n.k))]
        if cfg.accdepth:
            # kc: the RUN continues from kc planes (0: no); saved_k: planes of the saved pass
            # (0: none); first: the first convolution is still to come; save: this layer is it;
            # p0/wskip: planes skipped by this layer and their weight words
            n.kc, n.saved_k, n.p0 = Signal(5), Signal(5), Signal(5)
            n.first, n.save = Signal(), Signal()
            n.wskip = Signal(addr_width(cfg.wdepth))
            m.d.comb += [win.p0.eq(n.p0), win.wskip.eq(n.wskip)]

    def _buffers(self, m, n):
        """Double-buffered input (``cfg.double_buffer``): image writes go to buffer ``wbuf``, a
        RUN computes buffer ``rbuf``; RUN sets ``rbuf = wbuf`` and flips ``wbuf``. Buffer 1 of the
        feature map lies ``img_off`` words after buffer 0 (the first descriptor's ``img_words``,
        latched at every RUN's first descriptor); tap banks hold both buffers."""
        n.wbuf = n.rbuf = n.img_off = None
        if self.cfg.double_buffer:
            n.wbuf, n.rbuf = Signal(), Signal()
            n.img_off = Signal(addr_width(self.cfg.fmdepth))

    def _command_writes(self, m, n):
        """Command decode: WRITE_W / WRITE_PP / WRITE_PROG go straight to their memory's write
        port in the cycle they are accepted (``ResidentImpl.write_regs``: through a register
        per memory, one cycle later); the program memory reads descriptor ``layer``."""
        n.cmd = cmd = self.cmd.payload
        n.accept = accept = self.cmd.valid & self.cmd.ready
        n.w_cmd_addr = cmd.addr          # the weight write address (the register's: write_regs)
        if self.impl.write_regs:
            for name, port, op in (("w", n.w_wr, Op.WRITE_W), ("pp", n.pp_wr, Op.WRITE_PP),
                                   ("pg", n.pg_wr, Op.WRITE_PROG)):
                regs = self._write_reg(m, name, accept & (cmd.op == op), cmd.addr, cmd.data,
                                       port)
                m.d.comb += [port.addr.eq(regs[0]), port.data.eq(regs[1]), port.en.eq(regs[2])]
                if name == "w":
                    n.w_cmd_addr = regs[0]
            m.d.comb += n.pg_rd.addr.eq(n.layer)
        else:
            m.d.comb += [
                n.w_wr.addr.eq(cmd.addr), n.w_wr.data.eq(cmd.data),
                n.w_wr.en.eq(accept & (cmd.op == Op.WRITE_W)),
                n.pp_wr.addr.eq(cmd.addr), n.pp_wr.data.eq(cmd.data),
                n.pp_wr.en.eq(accept & (cmd.op == Op.WRITE_PP)),
                n.pg_wr.addr.eq(cmd.addr), n.pg_wr.data.eq(cmd.data),
                n.pg_wr.en.eq(accept & (cmd.op == Op.WRITE_PROG)),
                n.pg_rd.addr.eq(n.layer),
            ]
        if self.impl.weights_single_port:
            # one address for both ports (single-port RAM): the command's while it writes
            n.w_addr = Signal(len(n.w_wr.addr))
            m.d.comb += [n.w_wr.addr.eq(n.w_addr), n.w_rd.addr.eq(n.w_addr),
                         n.w_rd.en.eq(~n.w_wr.en)]

    @staticmethod
    def _write_reg(m, name, take, addr, word, port):
        """``ResidentImpl.write_regs``: address, data and enable registers of one memory's write
        port (as wide as ``port``'s), loaded with ``addr``/``word`` when ``take``; returns them
        (the write lands one cycle after the command). Not reset: the memories are kept across
        an engine reset, and so is a write in flight."""
        regs = (Signal(len(port.addr), name=f"{name}_wr_addr", reset_less=True),
                Signal(len(port.data), name=f"{name}_wr_data", reset_less=True),
                Signal(name=f"{name}_wr_en", reset_less=True))
        m.d.sync += regs[2].eq(take)
        with m.If(take):
            m.d.sync += [regs[0].eq(addr), regs[1].eq(word)]
        return regs

    def _pipeline(self, m, n):
        """Chunk pipeline: S1 (memories deliver, flags registered alongside), S2 (memory outputs
        registered, padding taps gated to zero), PE array, post-processing (its table entry read
        meanwhile and registered to align). Leaves the post-processed rows ``n.ys``, their tag
        ``n.otag`` and ``n.rows_ok`` (row is a real output channel)."""
        cfg, win, pe, pp, desc = self.cfg, n.win, n.pe, n.pp, n.desc
        R, C, A, OW = cfg.rows, cfg.cols, cfg.abits, cfg.obits
        width = {k: len(getattr(win, k))
                 for k in ("inb", "first", "load", "emit", "g", "o_addr", "gsub", "tfirst", "tlast")}
        width.update(g=n.tag["g"].width, gsub=n.tag["gsub"].width)
        s1 = {k: Signal(w, name=f"s1_{k}") for k, w in width.items()}
        n.s1_valid = s1_valid = Signal()
        m.d.sync += s1_valid.eq(win.active)
        m.d.sync += [s.eq(getattr(win, k)) for k, s in s1.items()]
        if self.impl.weights_single_port:
            m.d.comb += n.w_addr.eq(Mux(n.w_wr.en, n.w_cmd_addr, win.w_addr))
        else:
            m.d.comb += n.w_rd.addr.eq(win.w_addr)
        n.s2 = s2 = {k: Signal(len(s), name=f"s2_{k}") for k, s in s1.items()}
        n.s2_valid = s2_valid = Signal()
        n.s2_x = s2_x = Signal(C * A)
        s2_w = Signal(R * C)
        fm_x = Mux(s1["inb"], n.fm_rd.data, 0)
        if cfg.taps:
            fm_x = Mux(desc.taps, self._tap_banks(m, win, n.accept, n.cmd, n.wbuf, n.rbuf),
                       fm_x)
        s2_pp = Signal(len(win.pp_addr))
        s1_pp = Signal(len(win.pp_addr))
        m.d.sync += [s1_pp.eq(win.pp_addr), s2_pp.eq(s1_pp)]
        m.d.sync += [s2_valid.eq(s1_valid), s2_w.eq(n.w_rd.data),
                     s2_x.eq(fm_x)]
        m.d.sync += [s.eq(s1[k]) for k, s in s2.items()]
        pp_reg = Signal(cfg.pp_width)
        pp_addr = s2_pp      # read 2 cycles before the chunk leaves the array (PEArray.LATENCY)
        late = self.impl.pp_read_late    # one cycle later, the read data is the register
        for i in range(PEArray.LATENCY - 2 + late):
            d = Signal(len(s2_pp), name=f"pp_addr_d{i}")
            m.d.sync += d.eq(pp_addr)
            pp_addr = d
        if self.impl.pp_shared:
            pp_addr = self._pp_read_again(m, n, pp_addr)
        m.d.comb += n.pp_rd.addr.eq(pp_addr)
        if late:
            m.d.comb += pp_reg.eq(n.pp_rd.data)
        else:
            m.d.sync += pp_reg.eq(n.pp_rd.data)
        tag_in = Cat(s2["emit"], s2["tfirst"], s2["tlast"], s2["o_addr"], s2["gsub"], s2["g"])
        # post-processing input: the PE array's accumulators, or (an ADD layer) the ADD unit's
        pp_in = (pe.o_valid & data.View(n.tag, pe.o_tag).emit, pe.o_acc, pp_reg, pe.o_tag)
        n.add_busy = None
        if cfg.adds:
            pp_in = self._add_unit(m, n, pp_in)
        if self.impl.pp_shared:
            pp_in = self._pp_halves(m, n, pp_in)
        m.d.comb += [
            pe.i_valid.eq(s2_valid & ~n.pool), pe.i_w.eq(s2_w), pe.i_x.eq(s2_x),
            pe.i_dbl.eq(s2["first"]), pe.i_load.eq(s2["load"]),
            pe.i_init.eq(Mux(n.p0 != 0, n.acc_rd.data, 0) if cfg.accdepth else 0),
            pe.i_tag.eq(tag_in),
            pp.i_valid.eq(pp_in[0]), pp.i_acc.eq(pp_in[1]),
            pp.i_pp.eq(pp_in[2]), pp.i_relu.eq(desc.relu), pp.i_tag.eq(pp_in[3]),
        ]
        n.otag = otag = data.View(n.tag, pp.o_tag)
        L = pp.lanes                 # R, or R/2 with pp_shared (rows L*half + i)
        n.ys = [pp.o_y[r * OW:(r + 1) * OW].as_signed() for r in range(L)]
        n.rows_ok = [Signal(name=f"row_ok{r}") for r in range(L)]
        base = otag.g * R + otag.half * L if self.impl.pp_shared else otag.g * R
        m.d.comb += [ok.eq((base + r) < desc.nout) for r, ok in enumerate(n.rows_ok)]

    def _pp_read_again(self, m, n, addr):
        """pp_shared: in the cycle a group leaves the PE array (its table entry is the read
        data) the table reads the same entry again, for the group's second half the cycle
        after. Returns the address the table reads."""
        again = Signal(len(addr), name="pp_addr_again")
        rd = Signal(len(addr), name="pp_addr_rd")
        emit = n.pe.o_valid & data.View(n.tag, n.pe.o_tag).emit
        m.d.comb += rd.eq(Mux(emit, again, addr))
        m.d.sync += again.eq(rd)
        return rd

    def _pp_halves(self, m, n, pp_in):
        """pp_shared: the post-processing inputs ``(valid, acc, table word, tag)`` of R rows
        -> those of R/2 lanes: rows ``0 .. R/2-1`` in the cycle they come, rows ``R/2 ..`` the
        cycle after (accumulators and tag held, the table entry read again), ``half`` set."""
        cfg = self.cfg
        H, AW = cfg.rows // 2, cfg.acc_width
        valid, acc, word, tag = pp_in
        full = data.View(isa.pp_word_layout(cfg.rows, cfg.mbits, cfg.bbits, SW), word)
        second = Signal(name="pp_second")
        hold_acc = Signal(H * AW, name="pp_hold_acc")
        hold_tag = Signal(n.tag, name="pp_hold_tag")
        m.d.sync += second.eq(valid)
        with m.If(valid):
            m.d.sync += [hold_acc.eq(acc[H * AW:]), hold_tag.eq(tag)]
        lanes = Signal(isa.pp_word_layout(H, cfg.mbits, cfg.bbits, SW), name="pp_lanes_word")
        m.d.comb += lanes.shift.eq(full.shift)
        for i in range(H):
            lo, hi = full.lanes[i], full.lanes[H + i]
            m.d.comb += [lanes.lanes[i].m.eq(Mux(second, hi.m, lo.m)),
                         lanes.lanes[i].b.eq(Mux(second, hi.b, lo.b))]
        out_tag = Signal(n.tag, name="pp_lanes_tag")
        m.d.comb += [out_tag.eq(Mux(second, hold_tag.as_value(), tag)), out_tag.half.eq(second)]
        return (valid | second, Mux(second, hold_acc, acc[:H * AW]), lanes.as_value(),
                out_tag.as_value())

    def _add_unit(self, m, n, pe_in):
        """ADD unit (``cfg.adds``): a residual add ``clamp((xa*Ma + xb*Mb + 2^(S-1)) >> S, 0,
        2^A-1)`` on the post-processing unit. The window generator walks the layer as a pool of
        ``max(2, C/R)`` taps per word: tap 0 delivers word a (kept in ``add_a``), tap 1 word b.
        From tap 1 on, one output group of R lanes per cycle for C/R cycles (word b's later
        groups from ``add_b``; both shift down by R lanes a cycle): ``xb*Mb`` (R multipliers of
        A x mbits bits) registered, then the post-processing unit with ``acc = xa``, ``M = Ma``,
        ``B = xb*Mb``, ``S``, ReLU clamp; its result is written as a convolution's (R-lane slice
        ``gsub`` of the word, rows past ``nout`` not written). Returns the post-processing inputs
        ``(valid, acc, table word, tag)``: the ADD unit's in an ADD layer, else ``pe_in``.

        Latency: tap 1 -> product register (1) -> post-processing (``PostProc.LATENCY``) ->
        write; ``n.add_busy`` is high while groups are pending or in the product register."""
        cfg, desc, s2 = self.cfg, n.desc, n.s2
        R, C, A, GPW, AW = cfg.rows, cfg.cols, cfg.abits, cfg.groups_per_word, cfg.acc_width
        RA = R * A
        at0 = n.s2_valid & desc.add & s2["first"]
        at1 = Signal(name="add_at1")      # the walk never stalls: tap 1 follows tap 0
        m.d.sync += at1.eq(at0)
        xa_w, xb_w = Signal(C * A, name="add_a"), Signal(C * A, name="add_b")
        jr = Signal(range(max(GPW, 2)), name="add_j")     # group of the word (0 at tap 1)
        w_addr = Signal(len(s2["o_addr"]), name="add_waddr")
        w_g = Signal(len(s2["g"]), name="add_wg")
        proc = Signal(name="add_proc")
        m.d.comb += proc.eq(at1 | (jr != 0))
        with m.If(at0):
            m.d.sync += xa_w.eq(n.s2_x)
        with m.Elif(proc):
            m.d.sync += xa_w.eq(xa_w >> RA)
        with m.If(at1):
            m.d.sync += [xb_w.eq(n.s2_x >> RA), w_addr.eq(s2["o_addr"]), w_g.eq(s2["g"])]
            if GPW > 1:
                m.d.sync += jr.eq(1)
        with m.Elif(proc):
            m.d.sync += [xb_w.eq(xb_w >> RA), jr.eq(Mux(jr == GPW - 1, 0, jr + 1))]
        xb = Mux(at1, n.s2_x[:RA], xb_w[:RA])
        # product register (multiplier output registered: DSP-friendly)
        a1_valid = Signal(name="add_valid")
        a1_xa = Signal(RA, name="add_xa")
        a1_prod = [Signal(signed(A + cfg.mbits + 1), name=f"add_prod{r}") for r in range(R)]
        a1_tag = Signal(n.tag, name="add_tag")
        m.d.sync += [a1_valid.eq(proc), a1_xa.eq(xa_w[:RA]),
                     a1_tag.emit.eq(1), a1_tag.tfirst.eq(1), a1_tag.tlast.eq(1),
                     a1_tag.o_addr.eq(Mux(at1, s2["o_addr"], w_addr)), a1_tag.gsub.eq(jr),
                     a1_tag.g.eq(Mux(at1, s2["g"], w_g) * GPW + jr)]
        m.d.sync += [p.eq(xb[r * A:(r + 1) * A] * desc.add_mb) for r, p in enumerate(a1_prod)]
        word = Signal(isa.pp_word_layout(R, cfg.mbits, cfg.bbits, SW), name="add_pp")
        m.d.comb += word.shift.eq(desc.add_s)
        for r in range(R):
            m.d.comb += [word.lanes[r].m.eq(desc.add_ma), word.lanes[r].b.eq(a1_prod[r])]
        acc = Cat(*[Cat(a1_xa[r * A:(r + 1) * A], Const(0, AW - A)) for r in range(R)])
        n.add_busy = (jr != 0) | a1_valid
        add = desc.add
        return (Mux(add, a1_valid, pe_in[0]), Mux(add, acc, pe_in[1]),
                Mux(add, word.as_value(), pe_in[2]), Mux(add, a1_tag.as_value(), pe_in[3]))

    def _pool_max(self, m, n):
        """Pool layer: lane-wise running maximum over the window's taps (``n.newmax``)."""
        C, A = self.cfg.cols, self.cfg.abits
        lanes = [n.s2_x[l * A:(l + 1) * A] for l in range(C)]
        mx = Signal(C * A)
        mx_lanes = [mx[l * A:(l + 1) * A] for l in range(C)]
        n.newmax = Cat(*[Mux(n.s2["first"] | (x > old), x, old) for x, old in zip(lanes, mx_lanes)])
        with m.If(n.s2_valid & n.pool):
            m.d.sync += mx.eq(n.newmax)

    def _fm_writes(self, m, n):
        """Feature-map write port: a pool result, else a convolution result (a fused pool keeps a
        running maximum per output group over the tile's positions and writes at its last), else
        an image word (WRITE_FM)."""
        cfg, desc, otag, pp, cmd = self.cfg, n.desc, n.otag, n.pp, n.cmd
        R, C, A, GPW = cfg.rows, cfg.cols, cfg.abits, cfg.groups_per_word
        fm_wr, s2 = n.fm_wr, n.s2
        conv_wr = pp.o_valid & ~desc.last & otag.tlast
        pool_wr = n.s2_valid & n.pool & s2["emit"]
        if cfg.adds:                 # an ADD layer walks like a pool, writes like a convolution
            pool_wr = pool_wr & ~desc.add
        codes = [y[:A] for y in n.ys]
        shared = self.impl.pp_shared        # the lanes carry half ``otag.half`` of the rows
        L = len(codes)
        if cfg.fuse_groups:
            if shared:                        # one bank of maxima per half
                banks = [Array(Signal(L * A, name=f"pmax{h}_{i}") for i in range(cfg.fuse_groups))
                         for h in range(2)]
                pmax = None
            else:
                pmax = Array(Signal(R * A, name=f"pmax{i}") for i in range(cfg.fuse_groups))
            old = Signal(L * A, name="pmax_old")      # one multiplexer, not one per use
            m.d.comb += old.eq(pmax[otag.g] if pmax is not None else
                               Mux(otag.half, banks[1][otag.g], banks[0][otag.g]))
            codes = [Mux(otag.tfirst | (cd > old[r * A:(r + 1) * A]), cd, old[r * A:(r + 1) * A])
                     for r, cd in enumerate(codes)]
            with m.If(pp.o_valid & ~desc.last & ~otag.tlast):
                if pmax is not None:
                    m.d.sync += pmax[otag.g].eq(Cat(*codes))
                else:
                    with m.If(otag.half):
                        m.d.sync += banks[1][otag.g].eq(Cat(*codes))
                    with m.Else():
                        m.d.sync += banks[0][otag.g].eq(Cat(*codes))
        codes = Cat(*codes)
        n.fm_busy = pool_wr | conv_wr
        img_addr = cmd.addr if n.wbuf is None else cmd.addr + Mux(n.wbuf, n.img_off, 0)
        img_en = n.accept & (cmd.op == Op.WRITE_FM)
        img_data = cmd.data
        if self.impl.write_regs:     # the image word waits in its register for a free port
            take, img_en = img_en, Signal(name="fm_wr_pend", reset_less=True)
            img_addr_r = Signal(len(fm_wr.addr), name="fm_wr_addr", reset_less=True)
            img_data = Signal(len(fm_wr.data), name="fm_wr_data", reset_less=True)
            m.d.sync += img_en.eq(take | (img_en & n.fm_busy))
            with m.If(take):       # only while the port is free: the pending word is written
                m.d.sync += [img_addr_r.eq(img_addr), img_data.eq(cmd.data)]
            img_addr = img_addr_r
        with m.If(pool_wr):
            m.d.comb += [fm_wr.addr.eq(s2["o_addr"]), fm_wr.data.eq(n.newmax),
                         fm_wr.en.eq((1 << C) - 1)]
        with m.Elif(conv_wr):
            if shared:                        # lane slot gsub*R + half*L + i
                en = Cat(*[(otag.gsub == s) & (otag.half == h) & ok for s in range(GPW)
                           for h in range(2) for ok in n.rows_ok])
            else:
                en = Cat(*[(otag.gsub == s) & ok for s in range(GPW) for ok in n.rows_ok])
            m.d.comb += [fm_wr.addr.eq(otag.o_addr), fm_wr.data.eq(Cat(*[codes] * (C // L))),
                         fm_wr.en.eq(en)]
        with m.Else():
            m.d.comb += [fm_wr.addr.eq(img_addr), fm_wr.data.eq(img_data),
                         fm_wr.en.eq(Mux(img_en, (1 << C) - 1, 0))]

    def _logits(self, m, n):
        """Logit register file and the running argmax (``n.best_i``; ``n.have`` cleared by RUN).

        Argmax in two stages (a chain of R compares was the longest path of the ULX3S build:
        15.7 MHz): a tree over the group's R rows, pairs in index order, the higher one taken only
        when strictly greater (the lowest index wins ties, as in golden), registered; then the
        merge with the running best a cycle later. The SUMMARY state comes two cycles after the
        last logit write (RUN sees the drained pipeline one cycle after it), so it reads the final
        best. Every value is a named signal (nested expressions would repeat logic)."""
        cfg, pp, o_g = self.cfg, n.pp, n.otag.g
        R, OW = cfg.rows, cfg.obits
        shared = self.impl.pp_shared        # one file per half of the rows: logits[h][g]
        if self.impl.results_ram:           # word 2g + h of the results memory
            n.logits = None
        elif shared:
            n.logits = [Array(Signal(R // 2 * OW, name=f"logits{h}_{i}")
                              for i in range(cfg.logit_groups)) for h in range(2)]
        else:
            n.logits = logits = Array(Signal(R * OW, name=f"logits{i}")
                                      for i in range(cfg.logit_groups))
        best_v = Signal(signed(OW))
        n.best_i = best_i = Signal(12)
        n.have = have = Signal()
        logit_wr = pp.o_valid & n.desc.last
        grp_h, grp_v, grp_i = self._argmax_tree(m, n)
        g_h = Signal()
        g_v = Signal(signed(OW))
        g_i = Signal(12)
        row0 = o_g * R + n.otag.half * (R // 2) if shared else o_g * R
        m.d.sync += [g_h.eq(logit_wr & grp_h), g_v.eq(grp_v), g_i.eq(row0 + grp_i)]
        with m.If(g_h & (~have | (g_v > best_v))):
            m.d.sync += [best_v.eq(g_v), best_i.eq(g_i), have.eq(1)]
        with m.If(logit_wr):
            if self.impl.results_ram:
                m.d.comb += [n.r_addr.eq(Cat(n.otag.half, o_g)), n.r_wr.data.eq(pp.o_y),
                             n.r_wr.en.eq(1)]
            elif shared:
                with m.If(n.otag.half):
                    m.d.sync += n.logits[1][o_g].eq(pp.o_y)
                with m.Else():
                    m.d.sync += n.logits[0][o_g].eq(pp.o_y)
            else:
                m.d.sync += logits[o_g].eq(pp.o_y)

    def _argmax_tree(self, m, n):
        """Combinational argmax over one group's R rows: ``(any valid, value, row)``."""
        R, OW = self.cfg.rows, self.cfg.obits
        cands = [(n.rows_ok[r], n.ys[r], Const(r, range(max(R, 2)))) for r in range(len(n.ys))]
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
        return cands[0]

    def _counters(self, m, n):
        """Cycle counter (runs while ``n.counting``), busy counter of the current layer and the
        per-layer busy register file."""
        n.counting = Signal()
        n.cycles = cycles = Signal(32)
        n.busy = busy = Signal(32)
        n.busies = (None if self.impl.results_ram else   # words 2*logit_groups + i
                    Array(Signal(32, name=f"busy{i}") for i in range(self.cfg.max_layers)))
        with m.If(n.counting):
            m.d.sync += cycles.eq(cycles + 1)
        with m.If(n.win.active):
            m.d.sync += busy.eq(busy + 1)

    def _continuation(self, m, n):
        """Continuation memory (``cfg.accdepth``): a continued layer reads word j for its j-th
        accumulator load (address 2 cycles after the chunk enters the PE array, data in its
        accumulate stage, ``PEArray.i_init``); the first convolution writes its j-th finished
        accumulators (``emit``, before post-processing) to word j. The read of word j comes
        before its write (a plane later at least). ``saved_k`` is dropped by any write command."""
        cfg = self.cfg
        if not cfg.accdepth:
            return
        aw = addr_width(cfg.accdepth)
        rd_n, wr_n = Signal(aw, name="acc_rd_n"), Signal(aw, name="acc_wr_n")
        ld1, ld2 = Signal(name="acc_ld1"), Signal(name="acc_ld2")
        m.d.sync += [ld1.eq(n.s2_valid & n.s2["load"] & (n.p0 != 0)), ld2.eq(ld1)]
        wr = n.save & n.pe.o_valid & data.View(n.tag, n.pe.o_tag).emit
        m.d.comb += [n.acc_rd.addr.eq(rd_n), n.acc_wr.addr.eq(wr_n),
                     n.acc_wr.data.eq(n.pe.o_acc), n.acc_wr.en.eq(wr)]
        with m.If(n.win.start):
            m.d.sync += [rd_n.eq(0), wr_n.eq(0)]
        with m.Else():
            with m.If(ld2):
                m.d.sync += rd_n.eq(rd_n + 1)
            with m.If(wr):
                m.d.sync += wr_n.eq(wr_n + 1)
        op = n.cmd.op
        writes = ((op == Op.WRITE_W) | (op == Op.WRITE_PP) | (op == Op.WRITE_PROG) |
                  (op == Op.WRITE_FM) | (op == Op.WRITE_IMG) | (op == Op.WRITE_TAP))
        with m.If(n.accept & writes):
            m.d.sync += n.saved_k.eq(0)

    def _control(self, m, n):
        """Control: command dispatch while idle, the layer loop of a RUN, then the answer
        (SUMMARY, LOGITS, COUNTERS); READ_FM answers one FM_WORD."""
        cfg, win, cmd, accept = self.cfg, n.win, n.cmd, n.accept
        in_flight = win.active | n.s1_valid | n.s2_valid | n.pe.o_active | n.pp.o_active
        if n.add_busy is not None:
            in_flight = in_flight | n.add_busy
        # a shorter post-processing (ResidentImpl): the drain lasts as long as with the default
        lag = PostProc.LATENCY - n.pp.latency - self.impl.pp_shared
        for i in range(lag):
            late = Signal(name=f"pp_drain{i}")
            m.d.sync += late.eq(n.pp.o_active if i == 0 else prev)
            in_flight, prev = in_flight | late, late
        n.ridx = Signal(12)
        n.rd_addr = Signal(len(cmd.addr))
        m.d.comb += n.fm_rd.addr.eq(Mux(win.active, win.fm_addr, n.rd_addr))
        n.summ = Signal(summary_layout(cfg))
        m.d.comb += [n.summ.cls.eq(n.best_i), n.summ.k.eq(n.k), n.summ.cycles.eq(n.cycles)]
        n.cnt = Signal(counter_layout(cfg))
        m.d.comb += n.cnt.busy.eq(n.r_rd.data if n.busies is None else n.busies[n.ridx])

        # ``alive`` rises one cycle after reset: an event for event-driven simulators (Icarus)
        # whose combinational blocks would otherwise never see the initial state
        alive = Signal()
        m.d.sync += alive.eq(1)
        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(alive)
                with m.If(accept & ((cmd.op == Op.WRITE_FM) | (cmd.op == Op.WRITE_IMG) |
                                    (cmd.op == Op.RUN)) & ~n.counting):
                    m.d.sync += [n.counting.eq(1), n.cycles.eq(1)]
                with m.If(accept & (cmd.op == Op.RUN)):
                    m.d.sync += [n.k.eq(cmd.data[:5]), n.layer.eq(0), n.have.eq(0)]
                    if cfg.accdepth:
                        sk = n.saved_k
                        m.d.sync += [n.first.eq(1), n.kc.eq(Mux(
                            cmd.data[5] & (sk != 0) & (sk < cmd.data[:5]), sk, 0))]
                    if n.wbuf is not None:
                        m.d.sync += [n.rbuf.eq(n.wbuf), n.wbuf.eq(~n.wbuf)]
                    m.next = "DESC_WAIT"
                with m.If(accept & (cmd.op == Op.READ_FM)):
                    m.d.sync += n.rd_addr.eq(cmd.addr)
                    m.next = "READ_WAIT"
            self._layer_states(m, n, in_flight)
            self._answer_states(m, n)
        if n.wbuf is not None:
            # image writes of the next image while this one runs (not before its first
            # descriptor has set ``img_off``), when the feature-map write port is free
            running = (fsm.ongoing("START") | fsm.ongoing("RUN") | fsm.ongoing("SUMMARY") |
                       fsm.ongoing("LOGITS") | fsm.ongoing("COUNTERS"))
            img = (cmd.op == Op.WRITE_FM) | (cmd.op == Op.WRITE_IMG)
            with m.If(running):
                m.d.comb += self.cmd.ready.eq(img & ~n.fm_busy)

    def _layer_states(self, m, n, in_flight):
        """RUN's layer loop: fetch descriptor ``layer`` (3 cycles), start the window generator,
        wait until the layer has drained, store its busy count, next layer or the SUMMARY."""
        with m.State("DESC_WAIT"):          # program memory reads descriptor ``layer``
            m.next = "DESC_LATCH"
        with m.State("DESC_LATCH"):
            if not self.impl.desc_from_ram:
                m.d.sync += n.desc.eq(n.pg_rd.data)
            if n.wbuf is not None:
                new = data.View(n.dl, n.pg_rd.data)
                with m.If(n.layer == 0):
                    m.d.sync += n.img_off.eq(new.img_words)
                    with m.If(n.rbuf):
                        m.d.sync += n.desc.win0.eq(new.win0 + new.img_words)
            if self.cfg.accdepth:     # the first convolution: saved, continued from kc planes
                new = data.View(n.dl, n.pg_rd.data)
                is_first = n.first & (new.kind == Kind.CONV)
                m.d.sync += [n.save.eq(is_first), n.p0.eq(Mux(is_first, n.kc, 0)),
                             n.wskip.eq(Mux(is_first, n.kc * new.nchunks, 0))]
            m.next = "START"
        with m.State("START"):
            m.d.comb += n.win.start.eq(1)
            m.d.sync += n.busy.eq(0)
            m.next = "RUN"
        with m.State("RUN"):
            with m.If(~in_flight):
                if n.busies is None:
                    m.d.comb += [n.r_addr.eq(2 * self.cfg.logit_groups + n.layer),
                                 n.r_wr.data.eq(n.busy), n.r_wr.en.eq(1)]
                else:
                    m.d.sync += n.busies[n.layer].eq(n.busy)
                if self.cfg.accdepth:
                    with m.If(n.save):
                        m.d.sync += [n.first.eq(0), n.saved_k.eq(n.k)]
                with m.If(n.desc.last):
                    m.d.sync += n.ridx.eq(0)
                    m.next = "SUMMARY"
                with m.Else():
                    m.d.sync += n.layer.eq(n.layer + 1)
                    m.next = "DESC_WAIT"

    def _answer_states(self, m, n):
        """Result beats: SUMMARY, one LOGITS beat per group, one COUNTER beat per layer; the
        FM_WORD of a READ_FM (read data one cycle after the address)."""
        out, ridx = self.res.payload, n.ridx
        with m.State("SUMMARY"):
            m.d.comb += [self.res.valid.eq(1), out.kind.eq(ResKind.SUMMARY),
                         out.data.eq(n.summ)]
            with m.If(self.res.ready):
                m.d.sync += [n.counting.eq(0), ridx.eq(0)]
                m.next = "LOGIT_LO" if self.impl.results_ram else "LOGITS"
        if self.impl.results_ram:
            self._answer_from_ram(m, n)
            return self._read_states(m, n)
        with m.State("LOGITS"):
            m.d.comb += [self.res.valid.eq(1), out.kind.eq(ResKind.LOGITS),
                         out.index.eq(ridx),
                         out.data.eq(Cat(n.logits[0][ridx], n.logits[1][ridx])
                                     if self.impl.pp_shared else n.logits[ridx])]
            with m.If(self.res.ready):
                with m.If(ridx == n.desc.ngroups - 1):
                    m.d.sync += ridx.eq(0)
                    m.next = "COUNTERS"
                with m.Else():
                    m.d.sync += ridx.eq(ridx + 1)
        with m.State("COUNTERS"):
            m.d.comb += [self.res.valid.eq(1), out.kind.eq(ResKind.COUNTER),
                         out.index.eq(ridx), out.data.eq(n.cnt)]
            with m.If(self.res.ready):
                m.d.sync += ridx.eq(ridx + 1)
                with m.If(ridx == n.layer):
                    m.next = "IDLE"
        self._read_states(m, n)

    def _read_states(self, m, n):
        """READ_FM's answer: the FM_WORD (read data one cycle after the address)."""
        out = self.res.payload
        with m.State("READ_WAIT"):
            m.next = "READ_OUT"
        with m.State("READ_OUT"):
            m.d.comb += [self.res.valid.eq(1), out.kind.eq(ResKind.FM_WORD),
                         out.index.eq(0), out.data.eq(n.fm_rd.data)]
            with m.If(self.res.ready):
                m.next = "IDLE"

    def _answer_from_ram(self, m, n):
        """``ResidentImpl.results_ram``: LOGITS beat g reads words 2g (kept) and 2g+1 of the
        results memory, COUNTER beat i word ``2*logit_groups + i``; a beat is offered once its
        words are read (its address held while it waits)."""
        out, ridx, res = self.res.payload, n.ridx, self.res
        lo = Signal(len(n.r_rd.data), name="logit_lo")
        hi = Cat(Const(1, 1), ridx)
        cnt = 2 * self.cfg.logit_groups + ridx
        with m.State("LOGIT_LO"):
            m.d.comb += n.r_read.eq(Cat(Const(0, 1), ridx))
            m.next = "LOGIT_HI"
        with m.State("LOGIT_HI"):
            m.d.comb += n.r_read.eq(hi)
            m.d.sync += lo.eq(n.r_rd.data)
            m.next = "LOGITS"
        with m.State("LOGITS"):
            m.d.comb += [n.r_read.eq(hi), res.valid.eq(1), out.kind.eq(ResKind.LOGITS),
                         out.index.eq(ridx), out.data.eq(Cat(lo, n.r_rd.data))]
            with m.If(res.ready):
                with m.If(ridx == n.desc.ngroups - 1):
                    m.d.sync += ridx.eq(0)
                    m.next = "COUNTER_RD"
                with m.Else():
                    m.d.sync += ridx.eq(ridx + 1)
                    m.next = "LOGIT_LO"
        with m.State("COUNTER_RD"):
            m.d.comb += n.r_read.eq(cnt)
            m.next = "COUNTERS"
        with m.State("COUNTERS"):
            m.d.comb += [n.r_read.eq(cnt), res.valid.eq(1), out.kind.eq(ResKind.COUNTER),
                         out.index.eq(ridx), out.data.eq(n.cnt)]
            with m.If(res.ready):
                m.d.sync += ridx.eq(ridx + 1)
                with m.If(ridx == n.layer):
                    m.next = "IDLE"
                with m.Else():
                    m.next = "COUNTER_RD"

    def _tap_banks(self, m, win, accept, cmd, wbuf=None, rbuf=None):
        """Tap banks of a one-channel first layer: ``taps`` copies of the image, C pixels a word;
        lane l reads the pixel at its tap (table entry l) of the current window, gated to 0 in
        the padding, so a whole window is one chunk. Returns the lanes of the chunk, one cycle
        after the issue (aligned with the feature-map read data). With ``wbuf``/``rbuf`` (double
        buffer) every bank holds two images: writes go to ``wbuf``'s half, reads to ``rbuf``'s."""
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
            bank = Memory(shape=C * A, depth=cfg.tap_words * (1 if wbuf is None else 2),
                          init=[])
            m.submodules[f"tapbank{l}"] = bank
            wr, rd = bank.write_port(), bank.read_port()
            wr_addr = cmd.addr if wbuf is None else cmd.addr + Mux(wbuf, cfg.tap_words, 0)
            if self.impl.write_regs:      # one set of registers for the banks (the same word)
                if l == 0:
                    tw = self._write_reg(m, "tap", accept & (cmd.op == Op.WRITE_IMG), wr_addr,
                                         cmd.data[:C * A], wr)
                m.d.comb += [wr.addr.eq(tw[0]), wr.data.eq(tw[1]), wr.en.eq(tw[2])]
            else:
                m.d.comb += [wr.addr.eq(wr_addr), wr.data.eq(cmd.data[:C * A]),
                             wr.en.eq(accept & (cmd.op == Op.WRITE_IMG))]
            addr = Signal(taw, name=f"tapaddr{l}")
            iy = Signal(signed(DIMW + 3), name=f"tapiy{l}")
            ix = Signal(signed(DIMW + 3), name=f"tapix{l}")
            m.d.comb += [addr.eq(win.win + t.off), iy.eq(win.iy0 + t.dy), ix.eq(win.ix0 + t.dx),
                         rd.addr.eq(addr[lb:] if rbuf is None else
                                    addr[lb:] + Mux(rbuf, cfg.tap_words, 0))]
            sel = Signal(max(lb, 1), name=f"tapsel{l}")
            ok = Signal(name=f"tapok{l}")
            m.d.sync += [sel.eq(addr[:lb] if lb else 0),
                         ok.eq(t.valid & (iy >= 0) & (iy < win.desc.in_h) & (ix >= 0) &
                               (ix < win.desc.in_w))]
            px = Array(rd.data[i * A:(i + 1) * A] for i in range(C))[sel]
            lanes.append(Mux(ok, px, 0))
        lanes += [Const(0, A)] * (C - cfg.taps)
        return Cat(*lanes)
