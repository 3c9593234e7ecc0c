"""The resident engine's ``cmd``/``res`` streams over the UART framing of :mod:`..uart` (version 2:
CRC-16, sequence numbers, credits, resync). ``docs/uart.md`` ("Resident messages") has the tables.

Host -> board frames (``0xA5 type seq len payload crc16``):

====  ============  =============================================================================
type  name          payload
====  ============  =============================================================================
0     IDENTIFY      none: answered with an identify reply; expects ``seq + 1`` next
1     CMD           one command beat (``cmd_layout``: op, addr, data), zero-extended: the
                    network load (WRITE_W/PP/PROG/TAP), RUN(k), READ_FM, a policy wrapper's ops
3     RESET         none: resets the engine (not the bridge, not the memories)
4     STATUS        none: answered with a status message
5     IMAGE         the first image codes (one byte each, up to 255), packed on chip into
                    WRITE_IMG/WRITE_FM beats at addresses 0, 1, ...
6     IMAGE_MORE    more codes of the same image
7     SET_NET       network hash (4 bytes LE), flags (bit 0: send COUNTER beats), the image op
                    (WRITE_FM 4 / WRITE_IMG 7), codes per pixel (2 bytes LE), the index of the
                    last LOGITS group and its data bytes (0: all; the classes it holds)
====  ============  =============================================================================

Types 1, 5, 6 and 7 must carry the expected ``seq`` (else dropped and counted). IMAGE codes are
not buffered: the parser hands them to the packer as they arrive (``FrameReceiver``
``stream_types``), the CRC is checked after them, and a damaged frame stops everything sequenced
after it (the RUN included) until the host resynchronises and sends the whole image again. The
packer puts one code in each lane of a word and writes the word when it is full (``cols`` codes),
when a pixel ends (codes per pixel reached) or when the frame ends: the host cuts an image's
frames at word ends. Any CMD frame whose op changes the network (not in ``keep_ops``) clears the hash, so a
half-loaded network never identifies as loaded; the hash and the SET_NET settings survive an
engine reset.

Board -> host messages (``0x5A tag seq len body crc16``): 0x02 credit, 0x04 status (as the
streamed bridge), 0x03 identify reply (:func:`ident_prefix`, then the hash 4 bytes LE, the flags,
the token), and one message per result beat, tag ``0x10 + kind``: body = one header byte (the
expected seq for a SUMMARY, the beat's index otherwise) then the beat's data, trimmed to the
bytes of its kind (:func:`kind_bytes`; the last LOGITS group to the bytes SET_NET gave). A
SUMMARY's header is the expected seq after the last CMD frame (the RUN's seq + 1), so image frames
of the next image may arrive meanwhile (overlap). COUNTER beats are dropped unless the flag asks
for them.
"""

from __future__ import annotations

from dataclasses import fields

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..uart import (FrameReceiver, MessageSender, Channel, Tag, STATUS_BYTES, body_mux,
                    credits_owed, ident_head, saturating_count, send_first, status_body,
                    _check_divisor)
from .layout import (ResidentConfig, Op, ResKind, cmd_layout, res_layout, summary_layout,
                     counter_layout)

__all__ = ["ResidentBridge", "RChannel", "RESULT_TAG", "MODE_RESIDENT", "FLAG_COUNTERS",
           "KEEP_OPS", "FEATURE_POLICY", "kind_bytes", "ident_prefix", "IDENT_TAIL", "SET_NET_BYTES",
           "CREDIT_UNIT", "IMAGE_CHUNK"]


class RChannel(Channel):
    """Type byte of a host -> board frame of the resident bridge (adds to :class:`..uart.Channel`;
    type 2, DATA, is not used)."""
    IMAGE = 5
    IMAGE_MORE = 6
    SET_NET = 7


#: tag of a result message is ``RESULT_TAG + kind``
RESULT_TAG = 0x10
#: mode byte of the identify reply (the streamed bridge has none)
MODE_RESIDENT = ord("R")
#: SET_NET flags
FLAG_COUNTERS = 1
#: payload bytes of SET_NET
SET_NET_BYTES = 10
#: default credit unit (bytes per credit message) and longest IMAGE payload: one credit message
#: per 255 bytes received, IMAGE frames of up to 255 codes (``docs/uart.md``, link budget)
CREDIT_UNIT = 255
IMAGE_CHUNK = 255
#: identify reply bytes after :func:`ident_prefix`: hash (4), flags, token
IDENT_TAIL = 6
#: opcodes that leave the network as it is (any other CMD clears the network hash)
KEEP_OPS = (Op.NOP, Op.RUN, Op.READ_FM, Op.WRITE_FM, Op.WRITE_IMG)


#: identify ``features`` bit: the policy wrapper (``hw/resident/policy.py``) is behind the bridge
FEATURE_POLICY = 1


def kind_bytes(cfg: ResidentConfig, features: int = 0) -> dict:
    """Data bytes of each result kind on the link: ``{kind value: bytes}`` (with the policy
    wrapper a SUMMARY also carries its ``err`` and ``visited`` fields)."""
    summary = summary_layout(cfg).size
    if features & FEATURE_POLICY:
        from .policy import policy_summary_layout
        summary = policy_summary_layout(cfg).size
    return {ResKind.SUMMARY.value: -(-summary // 8),
            ResKind.LOGITS.value: -(-cfg.rows * cfg.obits // 8),
            ResKind.COUNTER.value: -(-counter_layout(cfg).size // 8),
            ResKind.FM_WORD.value: -(-cfg.fm_width // 8)}


def ident_prefix(cfg: ResidentConfig, *, fifo_depth: int, credit_unit: int, max_payload: int,
                 features: int = 0) -> bytes:
    """Constant part of the identify reply: "PNN", version, mode "R", features, FIFO depth (2 LE),
    credit unit, longest payload, then every ``ResidentConfig`` field (dataclass order) as 4 bytes
    LE -- the host rebuilds the configuration from it."""
    head = ident_head(MODE_RESIDENT, features & 0xFF, fifo_depth, credit_unit) + bytes([max_payload])
    return head + b"".join(int(getattr(cfg, f.name)).to_bytes(4, "little")
                           for f in fields(ResidentConfig))


class ResidentBridge(wiring.Component):
    """Resident messages (module docstring) <-> the ``cmd``/``res`` streams of a resident engine
    (or of a wrapper with the same stream signature and more opcodes).

    Parameters
    ----------
    cfg : ResidentConfig
    divisor : int or None
        Clock cycles per UART bit; ``None``: byte streams ``i``/``o`` instead of the pins (fast
        simulation above the bit level).
    fifo_depth, credit_unit, timeout : int
        As :class:`..uart.UARTBridge` (credit unit default 255: one 6-byte credit message per
        255 bytes received).
    image_chunk : int
        Longest IMAGE payload the identify reply announces (codes per frame, up to 255; the codes
        are streamed, not stored: the payload register holds ``max(command bytes, 10)`` bytes).
    cmd_shape, res_shape : Layout or None
        The wrapped component's stream payloads (default ``cmd_layout(cfg)``/``res_layout(cfg)``);
        they must have the fields op/addr/data and kind/index/data.
    keep_ops : sequence of int
        Opcodes that do not change the network (others clear the hash).
    features : int
        A byte the identify reply carries (``FEATURE_POLICY``: the policy wrapper is behind the
        bridge, its SUMMARY is wider).
    lean : bool
        ``ResidentImpl.lean_bridge``: when the command's data field starts on a byte (op and
        address 8 or 16 bits) the packer keeps its word in the frame payload register (code l
        of a word is stored as the command's data byte l; the register is cleared after each
        beat) and offers the beat one cycle after the word's last code, only the op and
        address come from a multiplexer; else only the op, address and first ``cols * abits``
        data bits do. The data bits above ``cols * abits`` (ignored by WRITE_FM and WRITE_IMG)
        are 0 or what the frame left there.

    Members
    -------
    rx : In(1), tx : Out(1)   (or ``i : In(stream.Signature(8))``, ``o : Out(stream.Signature(8))``)
    cmd : Out(stream.Signature(cmd_shape))
    res : In(stream.Signature(res_shape))
    engine_rst : Out(1)
        One-cycle pulse per RESET frame.
    overrun, frame_error : Out(1)
    bad_frames, seq_errors : Out(8)
    net_hash : Out(32)
        The hash of the loaded network (0: none).

    Latency: a CMD frame's beat is offered one cycle after the parser takes its last CRC byte
    (from the register after the FIFO, :class:`FrameReceiver`); the packer takes one code per
    cycle and offers a beat in the cycle its word's last
    code is there (one per ``cols`` codes, or per pixel).
    """

    def __init__(self, cfg: ResidentConfig, *, divisor=None, fifo_depth: int = 512,
                 credit_unit: int = CREDIT_UNIT, timeout: int = 0, image_chunk: int = IMAGE_CHUNK,
                 cmd_shape=None, res_shape=None, keep_ops=KEEP_OPS, features: int = 0,
                 lean: bool = False):
        if not isinstance(cfg, ResidentConfig):
            raise TypeError(f"cfg must be a ResidentConfig, not {cfg!r}")
        if divisor is not None:
            _check_divisor(divisor)
        if cfg.abits > 8:
            raise ValueError(f"the resident bridge packs one code per byte: abits {cfg.abits} > 8")
        self.cfg = cfg
        self.divisor = divisor
        self.cmd_shape = cmd_shape if cmd_shape is not None else cmd_layout(cfg)
        self.res_shape = res_shape if res_shape is not None else res_layout(cfg)
        for shape, names in ((self.cmd_shape, ("op", "addr", "data")),
                             (self.res_shape, ("kind", "index", "data"))):
            have = {str(n) for n, _ in shape}
            if not set(names) <= have:
                raise ValueError(f"stream layout needs fields {names}, has {sorted(have)}")
        self.cmd_bytes = -(-self.cmd_shape.size // 8)
        if not isinstance(image_chunk, int) or not 1 <= image_chunk <= 255:
            raise ValueError(f"image_chunk must be an integer in [1, 255], not {image_chunk!r}")
        self.reg_payload = max(self.cmd_bytes, SET_NET_BYTES)
        if self.reg_payload > 255:
            raise ValueError(f"a command beat of {self.cmd_bytes} bytes does not fit a frame")
        self.max_payload = max(self.reg_payload, image_chunk)
        self.fifo_depth = fifo_depth
        self.credit_unit = credit_unit
        self.timeout = timeout
        self.keep_ops = tuple(int(getattr(o, "value", o)) for o in keep_ops)
        self.features = features
        self.lean = bool(lean)
        cs = self.cmd_shape
        # lean: the packer keeps its word in the payload register when the data is byte-aligned
        self._aligned = (cs["op"].offset, cs["addr"].offset) == (0, cs["op"].width) and \
            cs["data"].offset % 8 == 0 and cs["addr"].offset + cs["addr"].width == cs["data"].offset
        self.kind_bytes = kind_bytes(cfg, features)
        self.ident = ident_prefix(cfg, fifo_depth=fifo_depth, credit_unit=credit_unit,
                                  max_payload=self.max_payload, features=features)
        pins = ({"rx": In(1, init=1), "tx": Out(1, init=1)} if divisor is not None else
                {"i": In(stream.Signature(8)), "o": Out(stream.Signature(8))})
        super().__init__(pins | {
            "cmd": Out(stream.Signature(self.cmd_shape)),
            "res": In(stream.Signature(self.res_shape)),
            "engine_rst": Out(1),
            "overrun": Out(1),
            "frame_error": Out(1),
            "bad_frames": Out(8),
            "seq_errors": Out(8),
            "net_hash": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.rxf = rxf = FrameReceiver(
            divisor=self.divisor, max_payload=self.reg_payload, fifo_depth=self.fifo_depth,
            credit_unit=self.credit_unit, timeout=self.timeout,
            stream_types=(RChannel.IMAGE, RChannel.IMAGE_MORE),
            store_streamed=self.lean and self._aligned)
        m.submodules.snd = snd = MessageSender(
            divisor=self.divisor,
            max_body=max(len(self.ident) + IDENT_TAIL, 1 + max(self.kind_bytes.values())))
        if self.divisor is not None:
            m.d.comb += [rxf.rx.eq(self.rx), self.tx.eq(snd.tx)]
        else:
            wiring.connect(m, wiring.flipped(self.i), rxf.i)
            wiring.connect(m, snd.o, wiring.flipped(self.o))
        m.d.comb += [self.overrun.eq(rxf.overrun), self.frame_error.eq(rxf.frame_error)]
        st = _State()
        saturating_count(m, self.bad_frames, rxf.bad | st.unknown)
        saturating_count(m, self.seq_errors, st.seq_bad)
        self._dispatch(m, rxf, st)
        self._transmit(m, rxf, snd, st)
        return m

    # ---- host -> board -------------------------------------------------------------------------
    def _dispatch(self, m, rxf, st):
        cs = self.cmd_shape
        f = rxf.frame.payload
        op_f = cs["op"]
        frame_op = f.payload[op_f.offset:op_f.offset + op_f.width]
        m.d.comb += self.net_hash.eq(st.hash)
        in_seq = f.seq == st.expect
        if self.lean and self._aligned:   # the packed word in the payload register
            head, pending = self._lean_packer(m, rxf, st)
            lo = len(head)
            m.d.comb += self.cmd.payload.eq(Cat(Mux(pending, head, f.payload[:lo]),
                                                f.payload[lo:cs.size]))
        elif self.lean:       # above the packed word's data: the payload register's bits
            packed = self._packer(m, rxf, st)
            lo = cs["data"].offset + self.cfg.cols * self.cfg.abits
            m.d.comb += self.cmd.payload.eq(Cat(Mux(rxf.sbyte.valid, packed[:lo], f.payload[:lo]),
                                                f.payload[lo:cs.size]))
        else:
            packed = self._packer(m, rxf, st)
            m.d.comb += self.cmd.payload.eq(Mux(rxf.sbyte.valid, packed, f.payload[:cs.size]))
        with m.If(rxf.frame.valid):
            with m.Switch(f.type):
                with m.Case(RChannel.CMD):
                    with m.If(in_seq):
                        m.d.comb += [self.cmd.valid.eq(1), rxf.frame.ready.eq(self.cmd.ready)]
                        with m.If(self.cmd.ready):
                            m.d.sync += [st.expect.eq(st.expect + 1),
                                         st.cmd_seq.eq(st.expect + 1)]
                            keep = Cat(*[frame_op == o for o in self.keep_ops]).any()
                            with m.If(~keep):
                                m.d.sync += st.hash.eq(0)
                    with m.Else():
                        m.d.comb += [st.seq_bad.eq(1), rxf.frame.ready.eq(1)]
                with m.Case(RChannel.IMAGE, RChannel.IMAGE_MORE):   # its codes are packed
                    m.d.comb += rxf.frame.ready.eq(1)
                    with m.If(in_seq):
                        m.d.sync += st.expect.eq(st.expect + 1)
                    with m.Else():
                        m.d.comb += st.seq_bad.eq(1)
                with m.Case(RChannel.SET_NET):
                    m.d.comb += rxf.frame.ready.eq(1)
                    with m.If(in_seq):
                        p = f.payload
                        m.d.sync += [st.expect.eq(st.expect + 1), st.hash.eq(p[:32]),
                                     st.flags.eq(p[32:40]), st.img_op.eq(p[40:48]),
                                     st.unit.eq(p[48:64]), st.logit_last.eq(p[64:72]),
                                     st.logit_tail.eq(p[72:80])]
                    with m.Else():
                        m.d.comb += st.seq_bad.eq(1)
                with m.Case(RChannel.IDENTIFY):
                    m.d.comb += [rxf.frame.ready.eq(1), rxf.restart.eq(1)]
                    m.d.sync += [st.ident_req.eq(1), st.expect.eq(f.seq + 1),
                                 st.token.eq(f.seq)]
                with m.Case(RChannel.RESET):
                    m.d.comb += [rxf.frame.ready.eq(1), self.engine_rst.eq(1)]
                    m.d.sync += st.expect.eq(f.seq + 1)
                with m.Case(RChannel.STATUS):
                    m.d.comb += rxf.frame.ready.eq(1)
                    m.d.sync += [st.status_req.eq(1), st.token.eq(f.seq)]
                with m.Default():             # unknown type: dropped and counted
                    m.d.comb += [rxf.frame.ready.eq(1), st.unknown.eq(1)]

    def _packer(self, m, rxf, st):
        """The codes of IMAGE / IMAGE_MORE frames, straight from the parser (``rxf.sbyte``, one
        code per cycle), into WRITE_IMG / WRITE_FM beats at addresses 0, 1, ... (an IMAGE
        frame's first code restarts them). Only a frame with the expected ``seq`` is packed; its
        CRC is checked after its codes were written, so a damaged frame may have written codes,
        but the frame is not counted (``expect`` stays) and nothing sequenced after it, the RUN
        included, reaches the engine until the host resynchronises and sends the image again.
        Returns the beat (``cmd`` payload) offered while ``rxf.sbyte`` is valid."""
        C, A = self.cfg.cols, self.cfg.abits
        cs = self.cmd_shape
        op_f, addr_f, data_f = cs["op"], cs["addr"], cs["data"]
        f, sb = rxf.frame.payload, rxf.sbyte
        lane, addr, lane_c, addr_c, flush = self._pack_position(m, rxf, st)
        word = Signal(C * A)
        word_c = Mux(sb.payload.first, 0, word)
        wnext = Signal(C * A)
        m.d.comb += wnext.eq(word_c)
        with m.Switch(lane_c):
            for l in range(C):
                with m.Case(l):
                    m.d.comb += wnext[l * A:(l + 1) * A].eq(sb.payload.data[:A])
        packed = Signal(cs.size)
        m.d.comb += [packed[op_f.offset:op_f.offset + op_f.width].eq(st.img_op),
                     packed[addr_f.offset:addr_f.offset + addr_f.width].eq(addr_c),
                     packed[data_f.offset:data_f.offset + C * A].eq(wnext)]
        with m.If(sb.valid):
            with m.If(f.seq != st.expect):                 # not packed (counted at its end)
                m.d.comb += sb.ready.eq(1)
            with m.Elif(flush):
                m.d.comb += [self.cmd.valid.eq(1), sb.ready.eq(self.cmd.ready)]
                with m.If(self.cmd.ready):
                    m.d.sync += [addr.eq(addr_c + 1), lane.eq(0), word.eq(0)]
            with m.Else():
                m.d.comb += sb.ready.eq(1)
                m.d.sync += [addr.eq(addr_c), lane.eq(lane_c + 1), word.eq(wnext)]
        return packed

    def _pack_position(self, m, rxf, st):
        """Where the packers (:meth:`_packer`, :meth:`_lean_packer`) put the code offered by the
        parser: ``lane`` in the word, ``addr`` of the word (registers the packer updates) and
        their values for this code, ``lane_c`` and ``addr_c`` (every frame's first code starts
        a word, an IMAGE frame's first code restarts the addresses); ``flush``: this code ends
        a word (its last lane, the last code of a credit unit, or of the frame). Counts the
        codes of the unit here, stepping on every code packed."""
        C = self.cfg.cols
        f, sb = rxf.frame.payload, rxf.sbyte
        lane = Signal(range(C))
        ch = Signal(16)
        addr = Signal(self.cmd_shape["addr"].width)
        first, restart = sb.payload.first, sb.payload.first & (f.type == RChannel.IMAGE)
        lane_c = Mux(first, 0, lane)
        addr_c, ch_c = Mux(restart, 0, addr), Mux(restart, 0, ch)
        flush = (lane_c == C - 1) | (ch_c == st.unit - 1) | sb.payload.last
        with m.If(sb.valid & sb.ready & (f.seq == st.expect)):
            m.d.sync += ch.eq(Mux(ch_c == st.unit - 1, 0, ch_c + 1))
        return lane, addr, lane_c, addr_c, flush

    def _lean_packer(self, m, rxf, st):
        """``lean``: :meth:`_packer` with the word kept in the frame payload register (code l
        stored as data byte l; cleared when its beat is taken). A word's last code is stored and
        its beat offered from the next cycle on (``pending``); the code is taken from the parser
        with the beat, so nothing is parsed meanwhile. Returns the beat's op and address bits
        and ``pending``."""
        cs = self.cmd_shape
        op_f, data_f = cs["op"], cs["data"]
        f, sb = rxf.frame.payload, rxf.sbyte
        lane, addr, lane_c, addr_c, flush = self._pack_position(m, rxf, st)
        pending = Signal()
        m.d.comb += rxf.s_at.eq(data_f.offset // 8 + lane_c)
        with m.If(sb.valid):
            with m.If(f.seq != st.expect):                 # not packed (counted at its end)
                m.d.comb += sb.ready.eq(1)
            with m.Elif(flush):
                m.d.comb += rxf.s_store.eq(1)
                with m.If(pending):                        # the word is in the register
                    m.d.comb += self.cmd.valid.eq(1)
                    with m.If(self.cmd.ready):
                        m.d.comb += [sb.ready.eq(1), rxf.s_clear.eq(1)]
                        m.d.sync += [pending.eq(0), addr.eq(addr_c + 1), lane.eq(0)]
                with m.Else():
                    m.d.sync += pending.eq(1)
            with m.Else():
                m.d.comb += [sb.ready.eq(1), rxf.s_store.eq(1)]
                m.d.sync += [addr.eq(addr_c), lane.eq(lane_c + 1)]
        return Cat(st.img_op[:op_f.width], addr), pending

    # ---- board -> host -------------------------------------------------------------------------
    def _transmit(self, m, rxf, snd, st):
        ident_take, status_take, credit_sent = Signal(), Signal(), Signal()
        with m.If(ident_take):
            m.d.sync += st.ident_req.eq(0)
        with m.If(status_take):
            m.d.sync += st.status_req.eq(0)
        owed = credits_owed(m, rxf.credit, credit_sent, ident_take, self.fifo_depth,
                            self.credit_unit)
        rs = self.res_shape
        kind = self.res.payload.as_value()[rs["kind"].offset:rs["kind"].offset + rs["kind"].width]
        index = self.res.payload.as_value()[rs["index"].offset:rs["index"].offset + 8]
        doff, dw = rs["data"].offset, rs["data"].width
        nmax = max(self.kind_bytes.values())
        dbits = Cat(self.res.payload.as_value()[doff:doff + dw], Const(0, max(0, 8 * nmax - dw)))
        dbytes = [dbits[8 * i:8 * i + 8] for i in range(nmax)]
        drop = Signal()                     # a COUNTER beat nobody asked for
        m.d.comb += drop.eq(self.res.valid & (kind == ResKind.COUNTER.value)
                            & ~st.flags[0])
        res_len = Signal(8)
        with m.Switch(kind):
            for kv, n in self.kind_bytes.items():
                with m.Case(kv):
                    m.d.comb += res_len.eq(1 + n)
                    if kv == ResKind.LOGITS.value:      # the last group: its classes only
                        with m.If((index == st.logit_last) & (st.logit_tail != 0)):
                            m.d.comb += res_len.eq(1 + st.logit_tail)
        send_first(m, snd, [
            (owed != 0, Tag.CREDIT, 0, credit_sent),
            (st.ident_req, Tag.IDENTIFY, len(self.ident) + IDENT_TAIL, ident_take),
            (st.status_req, Tag.STATUS, STATUS_BYTES, status_take),
            (self.res.valid & ~drop, RESULT_TAG + kind, res_len, None),
        ])
        hdr = Mux(kind == ResKind.SUMMARY.value, st.cmd_seq, index)
        bodies = {
            Tag.IDENTIFY: ([Const(b, 8) for b in self.ident]
                           + [st.hash[8 * i:8 * i + 8] for i in range(4)]
                           + [st.flags, st.token]),
            Tag.STATUS: status_body(st.token, st.expect, self.bad_frames, self.seq_errors,
                                    self.overrun, self.frame_error),
        }
        for kv, n in self.kind_bytes.items():
            bodies[RESULT_TAG + kv] = [hdr] + dbytes[:n]
        body_mux(m, snd, bodies)
        m.d.comb += self.res.ready.eq(drop | (snd.last & (snd.tag >= RESULT_TAG)))


class _State:
    """Registers and strobes shared by the dispatcher and the transmitter."""

    def __init__(self):
        self.expect = Signal(8)          # seq of the next sequenced frame
        self.cmd_seq = Signal(8)         # expect after the last CMD frame (a SUMMARY's header)
        self.logit_last = Signal(8, init=0xFF)   # SET_NET: index of the last LOGITS group
        self.logit_tail = Signal(8)      # SET_NET: its data bytes (0: all)
        self.token = Signal(8)
        self.hash = Signal(32)
        self.flags = Signal(8)
        self.img_op = Signal(8, init=Op.WRITE_FM.value)
        self.unit = Signal(16, init=1)
        self.ident_req = Signal()
        self.status_req = Signal()
        self.seq_bad = Signal()
        self.unknown = Signal()
