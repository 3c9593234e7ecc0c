"""A UART and a bridge that carries the engine's three streams over one serial link.

Framing, version 2 (``docs/uart.md`` has the full description and a worked example). Every frame,
in both directions, is generic -- a type, a sequence number, a length, a payload and a CRC::

    host -> board   frame   = 0xA5  type  seq  len  payload[len]  crc16
                    type    : 0 identify, 1 command word, 2 data beat, 3 engine reset, 4 status
    board -> host   message = 0x5A  tag   seq  len  body[len]     crc16
                    tag     : 0x01 result word (RB bytes, little-endian, RB = ceil(res_width / 8))
                              0x02 credit: the host may send ``credit_unit`` more bytes
                              0x03 identify reply: "PNN", version, data bytes, result bytes,
                                   FIFO depth (2 bytes LE), credit unit, token (the identify's seq)
                              0x04 status: token, expected seq, bad frames, out-of-sequence
                                   frames, flags (overrun, frame error)

``crc16`` is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, most significant byte
first on the line) over type/tag, seq, len and payload/body. The board drops a frame whose CRC is
wrong or whose length is impossible (counted in ``bad_frames``), and a command or data frame whose
``seq`` is not the one it expects (counted in ``seq_errors``): after a lost frame nothing more
reaches the engine until the host resynchronises with an identify. Identify, reset and status
frames are accepted with any ``seq`` (identify and reset set the expected one to ``seq + 1``).
Each board message carries the board's own message counter in ``seq``, so the host sees any lost or
duplicated message. Both parsers hunt for the start byte after garbage.

A frame's payload is zero-extended into the stream payload, so narrow words cost only their own
bytes. There are no flow-control wires: the board buffers received bytes in a FIFO of
``fifo_depth`` bytes and the host keeps at most ``fifo_depth`` bytes in flight, one credit message
returning ``credit_unit`` bytes of allowance (credit-based flow control, lossless at any baud rate
and any engine back-pressure).

Only the ``sync`` clock domain is used; no vendor primitives.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

__all__ = ["UARTRx", "UARTTx", "UARTBridge", "Channel", "Tag", "PROTOCOL_VERSION",
           "IDENT_MAGIC", "FRAME_SYNC", "MESSAGE_SYNC", "STATUS_BYTES", "crc16", "divisor_for"]

#: version byte of the framing, sent in the identify reply
PROTOCOL_VERSION = 2
#: the body of an identify reply starts with these bytes
IDENT_MAGIC = b"PNN"
#: first byte of every host -> board frame / board -> host message
FRAME_SYNC = 0xA5
MESSAGE_SYNC = 0x5A
#: body bytes of a status message
STATUS_BYTES = 5
_CRC_POLY = 0x1021


class Channel:
    """Type byte of a host -> board frame."""
    IDENTIFY = 0
    CMD = 1
    DATA = 2
    RESET = 3
    STATUS = 4


class Tag:
    """Tag byte of a board -> host message."""
    RESULT = 0x01
    CREDIT = 0x02
    IDENTIFY = 0x03
    STATUS = 0x04


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (what the bridge computes in hardware, byte by byte)."""
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ _CRC_POLY if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


def _crc16_step(crc: int, byte: int) -> int:
    return crc16(bytes([byte]), crc)


def _crc16_next(crc, byte):
    """The CRC register after one more byte, as 16 XORs of input bits (one byte step of a CRC is
    linear over GF(2): each output bit is the parity of some of the 16 + 8 input bits)."""
    bits = []
    for i in range(16):
        taps = [crc[j] for j in range(16) if _crc16_step(1 << j, 0) >> i & 1]
        taps += [byte[j] for j in range(8) if _crc16_step(0, 1 << j) >> i & 1]
        bits.append(Cat(*taps).xor())
    return Cat(*bits)


def divisor_for(clk_hz: float, baud: int) -> int:
    """Clock cycles per bit for ``baud`` at ``clk_hz``; refuses a baud rate off by more than 2%."""
    if baud <= 0:
        raise ValueError(f"baud must be positive, not {baud!r}")
    div = round(clk_hz / baud)
    if div < 2:
        raise ValueError(f"baud {baud} is too fast for a {clk_hz / 1e6:g} MHz clock")
    err = abs(clk_hz / div - baud) / baud
    if err > 0.02:
        raise ValueError(f"baud {baud} at {clk_hz / 1e6:g} MHz is off by {100 * err:.1f}% "
                         f"(divisor {div}); choose another baud rate")
    return div


def _check_divisor(divisor):
    if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < 2:
        raise ValueError(f"divisor must be an integer >= 2 (clock cycles per bit), not {divisor!r}")


class UARTRx(wiring.Component):
    """8N1 UART receiver.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (>= 2).

    Members
    -------
    rx : In(1)
        The serial line (idle high); synchronized inside (2 flip-flops).
    o : Out(stream.Signature(8))
        One transfer per received byte. ``valid`` stays high until ``ready``; a byte that
        completes while the previous one is still held overwrites it and sets ``overrun``.
    overrun : Out(1)
        Sticky: a byte was lost because ``o`` was not drained in time.
    frame_error : Out(1)
        Sticky: a stop bit was low (wrong baud rate or a line break).

    Latency: ``o.valid`` rises 2 + 9.5 * divisor cycles (+-1) after the start bit's falling edge.
    """

    def __init__(self, divisor: int):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "overrun": Out(1),
            "frame_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)

        timer = Signal(range(d))
        nbit = Signal(range(8))
        shreg = Signal(8)

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)

        with m.FSM(name="rx_fsm"):
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(d // 2 - 1 if d // 2 > 0 else 0)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    with m.If(rx):                       # a glitch, not a start bit
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [timer.eq(d - 1), nbit.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [shreg.eq(Cat(shreg[1:], rx)), timer.eq(d - 1), nbit.eq(nbit + 1)]
                    with m.If(nbit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(rx):
                        m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                        with m.If(self.o.valid & ~self.o.ready):
                            m.d.sync += self.overrun.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += self.frame_error.eq(1)
                        m.next = "BREAK"
            with m.State("BREAK"):                       # wait for the line to go idle again
                with m.If(rx):
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """8N1 UART transmitter.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (>= 2).

    Members
    -------
    i : In(stream.Signature(8))
        One transfer per byte sent; ``ready`` is high only while the line is idle, so a byte
        takes 10 * divisor cycles.
    tx : Out(1)
        The serial line (idle high), driven straight from a flip-flop.
    """

    def __init__(self, divisor: int):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__({
            "i": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        shreg = Signal(10, init=0x3FF)      # stop, data[7:0], start: shifted out LSB first
        timer = Signal(range(d))
        nbit = Signal(range(11))
        m.d.comb += self.tx.eq(shreg[0])
        with m.If(nbit == 0):
            m.d.comb += self.i.ready.eq(1)
            with m.If(self.i.valid):
                m.d.sync += [shreg.eq(Cat(Const(0, 1), self.i.payload, Const(1, 1))),
                             timer.eq(d - 1), nbit.eq(10)]
        with m.Else():
            with m.If(timer == 0):
                m.d.sync += [shreg.eq(Cat(shreg[1:], Const(1, 1))), timer.eq(d - 1),
                             nbit.eq(nbit - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m


class UARTBridge(wiring.Component):
    """The engine's ``cmd``/``data``/``res`` streams over one UART (framing: module docstring).

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (>= 2); ``divisor_for(clk_hz, baud)`` computes it.
    data_width : int
        Width of the engine's data stream (``EngineConfig.data_width``), at most 2040 bits.
    res_width : int
        Width of the engine's result stream (``EngineConfig.res_width``), at most 2040 bits.
    cmd_width : int
        Width of the command stream (64).
    fifo_depth : int
        Receive FIFO bytes (a power of two >= 2 * credit_unit); the host's initial allowance.
        512 fits one iCE40 EBR / one ECP5 DP16KD.
    credit_unit : int
        Bytes returned by one credit message (1..255).
    timeout : int
        Cycles without a byte in the middle of a frame after which the parser drops the frame and
        hunts for a start byte again (0 disables). Boards use about 0.25 s.

    Members
    -------
    rx : In(1)
        Serial line from the host.
    tx : Out(1)
        Serial line to the host.
    cmd : Out(stream.Signature(cmd_width))
        Command words, one per good, in-sequence type-1 frame.
    data : Out(stream.Signature(data_width))
        Data beats, one per good, in-sequence type-2 frame.
    res : In(stream.Signature(res_width))
        Result words, each sent as one tag-0x01 message; ``ready`` is high for one cycle per
        word, when the transmitter takes it.
    engine_rst : Out(1)
        One-cycle pulse per good type-3 frame: the board top resets the engine with it.
    overrun, frame_error : Out(1)
        Sticky receive errors (a host that ignored the credits; a wrong baud rate).
    bad_frames, seq_errors : Out(8)
        Frames dropped for a wrong CRC or an impossible length, and command/data frames dropped
        out of sequence (saturating counters, also read by a status frame).

    Latency: a frame's word is offered on ``cmd``/``data`` two cycles after its last CRC byte
    leaves the FIFO; the parser takes one FIFO byte per cycle, so it never limits the link.
    """

    def __init__(self, *, divisor: int, data_width: int, res_width: int, cmd_width: int = 64,
                 fifo_depth: int = 512, credit_unit: int = 32, timeout: int = 0):
        _check_divisor(divisor)
        for name, v in (("data_width", data_width), ("res_width", res_width),
                        ("cmd_width", cmd_width)):
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 255 * 8:
                raise ValueError(f"{name} must be an integer in [1, 2040] (at most 255 bytes per"
                                 f" frame), not {v!r}")
        if not isinstance(credit_unit, int) or not 1 <= credit_unit <= 255:
            raise ValueError(f"credit_unit must be an integer in [1, 255], not {credit_unit!r}")
        if (not isinstance(fifo_depth, int) or fifo_depth < 2 * credit_unit
                or fifo_depth & (fifo_depth - 1) or fifo_depth > 32768):
            raise ValueError(f"fifo_depth must be a power of two in [2 * credit_unit, 32768], not"
                             f" {fifo_depth!r}")
        if not isinstance(timeout, int) or timeout < 0:
            raise ValueError(f"timeout must be a non-negative integer of cycles, not {timeout!r}")
        self.divisor = divisor
        self.data_width = data_width
        self.res_width = res_width
        self.cmd_width = cmd_width
        self.fifo_depth = fifo_depth
        self.credit_unit = credit_unit
        self.timeout = timeout
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "cmd": Out(stream.Signature(cmd_width)),
            "data": Out(stream.Signature(data_width)),
            "res": In(stream.Signature(res_width)),
            "engine_rst": Out(1),
            "overrun": Out(1),
            "frame_error": Out(1),
            "bad_frames": Out(8),
            "seq_errors": Out(8),
        })

    @property
    def data_bytes(self) -> int:
        return -(-self.data_width // 8)

    @property
    def res_bytes(self) -> int:
        return -(-self.res_width // 8)

    @property
    def max_payload(self) -> int:
        """Longest frame payload the board accepts (a longer ``len`` is a bad frame)."""
        return max(self.data_bytes, -(-self.cmd_width // 8))

    @property
    def ident(self) -> bytes:
        """The identify reply's body, less its last byte (the token: the identify frame's seq)."""
        return IDENT_MAGIC + bytes([PROTOCOL_VERSION, self.data_bytes, self.res_bytes,
                                    self.fifo_depth & 0xFF, self.fifo_depth >> 8,
                                    self.credit_unit])

    def elaborate(self, platform):
        m = Module()
        m.submodules.urx = urx = UARTRx(self.divisor)
        m.submodules.utx = utx = UARTTx(self.divisor)
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=8, depth=self.fifo_depth)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx),
                     self.frame_error.eq(urx.frame_error)]

        # ---- receive: UART -> FIFO -------------------------------------------------------------
        m.d.comb += [fifo.w_data.eq(urx.o.payload), fifo.w_en.eq(urx.o.valid),
                     urx.o.ready.eq(fifo.w_rdy)]
        m.d.comb += self.overrun.eq(urx.overrun)       # a byte lost: the host ignored credits

        # ---- frame parser: FIFO -> cmd / data ----------------------------------------------------
        nlanes = self.max_payload
        word = Signal(8 * nlanes)
        channel = Signal(8)
        seq = Signal(8)
        expect = Signal(8)                   # seq of the next command/data frame
        nbytes = Signal(8)
        idx = Signal(8)
        rcrc = Signal(16)
        byte = fifo.r_data
        pop = Signal()
        ident_req = Signal()
        ident_take = Signal()
        status_req = Signal()
        status_take = Signal()
        token = Signal(8)
        dispatch_ident = Signal()  # an identify frame restarts the byte count
        bad = Signal()
        seq_bad = Signal()
        m.d.comb += [pop.eq(fifo.r_en & fifo.r_rdy),
                     self.cmd.payload.eq(word[:self.cmd_width]),
                     self.data.payload.eq(word[:self.data_width])]
        with m.If(bad & (self.bad_frames != 0xFF)):
            m.d.sync += self.bad_frames.eq(self.bad_frames + 1)
        with m.If(seq_bad & (self.seq_errors != 0xFF)):
            m.d.sync += self.seq_errors.eq(self.seq_errors + 1)

        # requests taken by the transmitter; a new request in the same cycle wins (written later)
        with m.If(ident_take):
            m.d.sync += ident_req.eq(0)
        with m.If(status_take):
            m.d.sync += status_req.eq(0)

        idle = Signal(range(max(self.timeout, 1) + 1))
        in_frame = Signal()
        if self.timeout:
            with m.If(pop | ~in_frame):
                m.d.sync += idle.eq(0)
            with m.Elif(idle != self.timeout):
                m.d.sync += idle.eq(idle + 1)
        timed_out = Signal()
        m.d.comb += timed_out.eq(idle == self.timeout) if self.timeout else timed_out.eq(0)

        rcrc_next = Signal(16)
        m.d.comb += rcrc_next.eq(_crc16_next(rcrc, byte))

        def header_byte(state_next, target=None):
            """Take one header/payload byte into the CRC (and ``target``); hunt on a timeout."""
            m.d.comb += [fifo.r_en.eq(1), in_frame.eq(1)]
            with m.If(fifo.r_rdy):
                m.d.sync += rcrc.eq(rcrc_next)
                if target is not None:
                    m.d.sync += target.eq(byte)
                if state_next is not None:
                    m.next = state_next
            with m.Elif(timed_out):
                m.next = "HUNT"

        with m.FSM(name="parse"):
            with m.State("HUNT"):                    # skip anything until a start byte
                m.d.comb += fifo.r_en.eq(1)
                with m.If(fifo.r_rdy & (byte == FRAME_SYNC)):
                    m.d.sync += rcrc.eq(0xFFFF)
                    m.next = "TYPE"
            with m.State("TYPE"):
                header_byte("SEQ", channel)
            with m.State("SEQ"):
                header_byte("LEN", seq)
            with m.State("LEN"):
                header_byte(None, nbytes)
                with m.If(fifo.r_rdy):
                    m.d.sync += [idx.eq(0), word.eq(0)]
                    with m.If(byte > nlanes):        # impossible length: garbage, hunt again
                        m.d.comb += bad.eq(1)
                        m.next = "HUNT"
                    with m.Elif(byte == 0):
                        m.next = "CRC_HI"
                    with m.Else():
                        m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                header_byte(None)
                with m.If(fifo.r_rdy):
                    with m.Switch(idx):
                        for lane in range(nlanes):
                            with m.Case(lane):
                                m.d.sync += word[8 * lane:8 * lane + 8].eq(byte)
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx + 1 == nbytes):
                        m.next = "CRC_HI"
            with m.State("CRC_HI"):               # the CRC runs over its own two bytes too:
                header_byte("CRC_LO")                # a good frame leaves the register at 0
            with m.State("CRC_LO"):
                header_byte(None)
                with m.If(fifo.r_rdy):
                    with m.If(rcrc_next == 0):
                        m.next = "DISPATCH"
                    with m.Else():
                        m.d.comb += bad.eq(1)
                        m.next = "HUNT"
            with m.State("DISPATCH"):
                m.next = "HUNT"
                with m.Switch(channel):
                    with m.Case(Channel.CMD, Channel.DATA):
                        with m.If(seq == expect):
                            m.d.sync += expect.eq(expect + 1)
                            with m.If(channel == Channel.CMD):
                                m.next = "CMD"
                            with m.Else():
                                m.next = "DATA"
                        with m.Else():
                            m.d.comb += seq_bad.eq(1)
                    with m.Case(Channel.IDENTIFY):
                        m.d.comb += dispatch_ident.eq(1)
                        m.d.sync += [ident_req.eq(1), expect.eq(seq + 1), token.eq(seq)]
                    with m.Case(Channel.RESET):
                        m.d.comb += self.engine_rst.eq(1)
                        m.d.sync += expect.eq(seq + 1)
                    with m.Case(Channel.STATUS):
                        m.d.sync += [status_req.eq(1), token.eq(seq)]
                    with m.Default():                 # unknown type: dropped and counted
                        m.d.comb += bad.eq(1)
            with m.State("CMD"):
                m.d.comb += self.cmd.valid.eq(1)
                with m.If(self.cmd.ready):
                    m.next = "HUNT"
            with m.State("DATA"):
                m.d.comb += self.data.valid.eq(1)
                with m.If(self.data.ready):
                    m.next = "HUNT"

        # ---- credits: one per credit_unit bytes popped from the FIFO ---------------------------
        popped = Signal(range(self.credit_unit))
        owed = Signal(range(2 * (self.fifo_depth // self.credit_unit) + 4))
        credit_inc = Signal()
        credit_dec = Signal()
        with m.If(pop):
            with m.If(popped == self.credit_unit - 1):
                m.d.sync += popped.eq(0)
                m.d.comb += credit_inc.eq(1)
            with m.Else():
                m.d.sync += popped.eq(popped + 1)
        with m.If(ident_take):
            m.d.sync += owed.eq(0)
        with m.Else():
            m.d.sync += owed.eq(owed + credit_inc - credit_dec)
        with m.If(dispatch_ident):
            m.d.sync += popped.eq(0)

        # ---- transmit: credits, identify replies, status, result words -------------------------
        # No copy of the result word: its bytes are sent straight from ``res.payload`` (held
        # stable by the stream rules while ``valid`` and not ``ready``) and the word is taken
        # (``ready``) with its last byte.
        rbytes = self.res_bytes
        ident = self.ident
        cnt = Signal(range(max(rbytes, len(ident) + 1, STATUS_BYTES) + 1))
        tag = Signal(3)
        mseq = Signal(8)
        tcrc = Signal(16)
        length = Signal(8)
        m.d.comb += length.eq(Mux(tag == Tag.RESULT, rbytes,
                                  Mux(tag == Tag.IDENTIFY, len(ident) + 1,
                                      Mux(tag == Tag.STATUS, STATUS_BYTES, 0))))
        res_word = Cat(self.res.payload, Const(0, 8 * rbytes - self.res_width))
        bodies = {
            Tag.RESULT: [res_word[8 * i:8 * i + 8] for i in range(rbytes)],
            Tag.IDENTIFY: [Const(b, 8) for b in ident] + [token],
            Tag.STATUS: [token, expect, self.bad_frames, self.seq_errors,
                         Cat(self.overrun, self.frame_error, Const(0, 6))],
        }
        assert len(bodies[Tag.STATUS]) == STATUS_BYTES
        body_byte = Signal(8)
        with m.Switch(tag):
            for t, parts in bodies.items():
                with m.Case(t):
                    m.d.comb += body_byte.eq(Array(parts)[cnt])

        tcrc_next = Signal(16)
        m.d.comb += tcrc_next.eq(_crc16_next(tcrc, utx.i.payload))

        def send(value, state_next, *, crc=True):
            m.d.comb += [utx.i.payload.eq(value), utx.i.valid.eq(1)]
            with m.If(utx.i.ready):
                if crc:
                    m.d.sync += tcrc.eq(tcrc_next)
                if state_next is not None:
                    m.next = state_next

        with m.FSM(name="send"):
            with m.State("IDLE"):
                with m.If(owed != 0):
                    m.d.comb += credit_dec.eq(1)
                    m.d.sync += tag.eq(Tag.CREDIT)
                    m.next = "SYNC"
                with m.Elif(ident_req):
                    m.d.comb += ident_take.eq(1)
                    m.d.sync += tag.eq(Tag.IDENTIFY)
                    m.next = "SYNC"
                with m.Elif(status_req):
                    m.d.comb += status_take.eq(1)
                    m.d.sync += tag.eq(Tag.STATUS)
                    m.next = "SYNC"
                with m.Elif(self.res.valid):
                    m.d.sync += tag.eq(Tag.RESULT)
                    m.next = "SYNC"
            with m.State("SYNC"):
                m.d.sync += [tcrc.eq(0xFFFF), cnt.eq(0)]
                send(MESSAGE_SYNC, "TAG", crc=False)
            with m.State("TAG"):
                send(tag, "SEQ")
            with m.State("SEQ"):
                send(mseq, "LEN")
            with m.State("LEN"):
                send(length, None)
                with m.If(utx.i.ready):
                    with m.If(length == 0):
                        m.next = "CRC_HI"
                    with m.Else():
                        m.next = "BODY"
            with m.State("BODY"):
                send(body_byte, None)
                with m.If(utx.i.ready):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt == length - 1):
                        m.d.comb += self.res.ready.eq(tag == Tag.RESULT)
                        m.next = "CRC_HI"
            with m.State("CRC_HI"):
                send(tcrc[8:], "CRC_LO", crc=False)
            with m.State("CRC_LO"):
                send(tcrc[:8], "IDLE", crc=False)
                with m.If(utx.i.ready):
                    m.d.sync += mseq.eq(mseq + 1)
        return m
