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

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, Module, Mux, ResetInserter, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

__all__ = ["UARTRx", "UARTTx", "UARTBridge", "attach_engine", "FrameReceiver", "MessageSender", "frame_layout",
           "stream_byte_layout",
           "Channel", "Tag", "PROTOCOL_VERSION", "IDENT_MAGIC", "FRAME_SYNC", "MESSAGE_SYNC",
           "STATUS_BYTES", "ident_head", "crc16", "divisor_for", "saturating_count", "credits_owed",
           "send_first", "body_mux", "status_body"]

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


def ident_head(b1: int, b2: int, fifo_depth: int, credit_unit: int) -> bytes:
    """The start of every identify reply body: "PNN", the framing version, two bytes that depend
    on the bridge (streamed: data bytes, result bytes; resident: mode "R", features), the FIFO
    depth (2 bytes LE), the credit unit (``sim.serial_transport.decode_ident_head`` reads it)."""
    return IDENT_MAGIC + bytes([PROTOCOL_VERSION, b1, b2, fifo_depth & 0xFF, fifo_depth >> 8,
                                credit_unit])


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


def frame_layout(max_payload: int) -> data.StructLayout:
    """A received frame as :class:`FrameReceiver` offers it: type, seq, len and the payload
    zero-extended to ``max_payload`` bytes (byte ``i`` at bits ``[8i+7:8i]``)."""
    return data.StructLayout({"type": 8, "seq": 8, "len": 8, "payload": 8 * max_payload})


def stream_byte_layout() -> data.StructLayout:
    """One payload byte of a stream-type frame (:class:`FrameReceiver` ``stream_types``)."""
    return data.StructLayout({"data": 8, "first": 1, "last": 1})


def _check_link(fifo_depth, credit_unit, timeout):
    if not isinstance(credit_unit, int) or not 1 <= credit_unit <= 255:
        raise ValueError(f"credit_unit must be an integer in [1, 255], not {credit_unit!r}")
    if (not isinstance(fifo_depth, int) or fifo_depth < 2 * credit_unit
            or fifo_depth & (fifo_depth - 1) or fifo_depth > 32768):
        raise ValueError(f"fifo_depth must be a power of two in [2 * credit_unit, 32768], not"
                         f" {fifo_depth!r}")
    if not isinstance(timeout, int) or timeout < 0:
        raise ValueError(f"timeout must be a non-negative integer of cycles, not {timeout!r}")


class FrameReceiver(wiring.Component):
    """Receive side of the framing: bytes -> FIFO -> checked frames (CRC, length) -> ``frame``.

    Parameters
    ----------
    divisor : int or None
        Clock cycles per UART bit; ``None``: no UART, bytes come on the ``i`` stream (simulation
        of the bridge above the byte level).
    max_payload : int
        Longest payload accepted (1..255 bytes); a longer ``len`` is a bad frame.
    fifo_depth, credit_unit, timeout : int
        As :class:`UARTBridge`.
    stream_types : sequence of int
        Frame types whose payload (up to 255 bytes, whatever ``max_payload``) is not stored but
        offered byte by byte on ``sbyte`` as it is parsed, before its CRC is known; the frame is
        then offered on ``frame`` (header only) if its CRC is good. The consumer must treat what
        it took from ``sbyte`` as unconfirmed until then (none by default: no ``sbyte``).
    store_streamed : bool
        (with ``stream_types``) the consumer may keep a stream byte in the payload register:
        members ``s_store``/``s_at`` (store the byte on ``sbyte`` this cycle, taken or not, as
        payload byte ``s_at``) and ``s_clear`` (payload register to 0, over a store), so that it
        needs no word register of its own.

    Members
    -------
    rx : In(1)  (or ``i : In(stream.Signature(8))`` without a UART)
    frame : Out(stream.Signature(frame_layout(max_payload)))
        One transfer per frame whose CRC is good, in arrival order; the payload is held (and no
        further byte parsed) until ``ready``.
    sbyte : Out(stream.Signature(stream_byte_layout()))  (only with ``stream_types``)
        The payload bytes of a stream-type frame, ``first``/``last`` marking its ends; the
        frame's type, seq and len are on ``frame.payload`` meanwhile. Back-pressure is allowed
        (the parser waits; the timeout counts only while the FIFO is empty).
    bad : Out(1)
        One-cycle pulse per frame dropped for a wrong CRC or an impossible length.
    credit : Out(1)
        One-cycle pulse per ``credit_unit`` bytes taken from the FIFO.
    restart : In(1)
        Restart the byte count of the credits (an identify frame was taken).
    overrun, frame_error : Out(1)
        Sticky UART receive errors (always 0 without a UART).

    Latency: the FIFO's read data goes through a one-byte register before the parser (two cycles
    from a byte's arrival at an empty FIFO to the parser); ``frame.valid`` rises one cycle after
    the parser takes the frame's last CRC byte; the parser takes one byte per cycle. Credits count
    the bytes the parser took.
    """

    def __init__(self, *, divisor, max_payload: int, fifo_depth: int = 512,
                 credit_unit: int = 32, timeout: int = 0, stream_types=(),
                 store_streamed: bool = False):
        if divisor is not None:
            _check_divisor(divisor)
        _check_link(fifo_depth, credit_unit, timeout)
        if not isinstance(max_payload, int) or not 1 <= max_payload <= 255:
            raise ValueError(f"max_payload must be an integer in [1, 255], not {max_payload!r}")
        self.divisor = divisor
        self.max_payload = max_payload
        self.fifo_depth = fifo_depth
        self.credit_unit = credit_unit
        self.timeout = timeout
        self.stream_types = tuple(int(t) for t in stream_types)
        self.store_streamed = bool(store_streamed)
        if self.store_streamed and not self.stream_types:
            raise ValueError("store_streamed needs stream_types")
        ports = {"rx": In(1, init=1)} if divisor is not None else {"i": In(stream.Signature(8))}
        if self.stream_types:
            ports["sbyte"] = Out(stream.Signature(stream_byte_layout()))
        if self.store_streamed:
            ports |= {"s_store": In(1), "s_at": In(8), "s_clear": In(1)}
        super().__init__(ports | {
            "frame": Out(stream.Signature(frame_layout(max_payload))),
            "bad": Out(1),
            "credit": Out(1),
            "restart": In(1),
            "overrun": Out(1),
            "frame_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=8, depth=self.fifo_depth)
        if self.divisor is not None:
            m.submodules.urx = urx = UARTRx(self.divisor)
            m.d.comb += [urx.rx.eq(self.rx), self.frame_error.eq(urx.frame_error),
                         self.overrun.eq(urx.overrun)]     # a byte lost: the host ignored credits
            src = urx.o
        else:
            src = self.i
        m.d.comb += [fifo.w_data.eq(src.payload), fifo.w_en.eq(src.valid),
                     src.ready.eq(fifo.w_rdy)]
        buf = self._out_register(m, fifo)
        pop = Signal()
        m.d.comb += pop.eq(buf.r_en & buf.r_rdy)
        self._parser(m, buf)
        self._credits(m, pop)
        return m

    @staticmethod
    def _out_register(m, fifo):
        """A one-byte register stage after the FIFO: the memory's read data (on ECP5 a
        ``DP16KD`` without output register, ~5.8 ns clock-to-out) reaches only this register,
        not the CRC and parser logic. Full rate (refilled in the cycle its byte is taken), one
        cycle more from a byte's write to the parser; returns an object with the FIFO's read
        members (``r_data``, ``r_rdy``, ``r_en``) for the parser."""
        buf = SimpleNamespace(r_data=Signal(8, name="rx_byte"), r_rdy=Signal(name="rx_byte_valid"),
                              r_en=Signal(name="rx_byte_take"))
        m.d.comb += fifo.r_en.eq(~buf.r_rdy | buf.r_en)
        with m.If(fifo.r_en & fifo.r_rdy):
            m.d.sync += [buf.r_data.eq(fifo.r_data), buf.r_rdy.eq(1)]
        with m.Elif(buf.r_en):
            m.d.sync += buf.r_rdy.eq(0)
        return buf

    def _parser(self, m, fifo):
        nlanes = self.max_payload
        f = self.frame.payload
        byte = fifo.r_data
        idx = Signal(8)
        rcrc = Signal(16)
        rcrc_next = Signal(16)
        m.d.comb += rcrc_next.eq(_crc16_next(rcrc, byte))
        in_frame = Signal()
        timed_out = Signal()
        if self.timeout:
            idle = Signal(range(self.timeout + 1))
            with m.If(fifo.r_rdy | ~in_frame):      # no byte waiting: the host is silent
                m.d.sync += idle.eq(0)
            with m.Elif(idle != self.timeout):
                m.d.sync += idle.eq(idle + 1)
            m.d.comb += timed_out.eq(idle == self.timeout)

        def take(state_next, target=None):
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

        if self.stream_types:
            streamed = Signal()                      # the frame's type is a stream type
            m.d.comb += streamed.eq(Cat(*[f.type == t for t in self.stream_types]).any())

        with m.FSM(name="parse"):
            with m.State("HUNT"):                    # skip anything until a start byte
                m.d.comb += fifo.r_en.eq(1)
                with m.If(fifo.r_rdy & (byte == FRAME_SYNC)):
                    m.d.sync += rcrc.eq(0xFFFF)
                    m.next = "TYPE"
            with m.State("TYPE"):
                take("SEQ", f.type)
            with m.State("SEQ"):
                take("LEN", f.seq)
            with m.State("LEN"):
                take(None, f.len)
                with m.If(fifo.r_rdy):
                    m.d.sync += [idx.eq(0), f.payload.eq(0)]
                    too_long = byte > nlanes
                    if self.stream_types:
                        too_long = too_long & ~streamed
                    with m.If(too_long):             # impossible length: garbage, hunt again
                        m.d.comb += self.bad.eq(1)
                        m.next = "HUNT"
                    with m.Elif(byte == 0):
                        m.next = "CRC_HI"
                    with m.Else():
                        m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                if self.stream_types:
                    with m.If(streamed):
                        self._stream_byte(m, fifo, idx, rcrc, rcrc_next, in_frame, timed_out)
                    with m.Else():
                        self._store_byte(m, fifo, idx, take)
                else:
                    self._store_byte(m, fifo, idx, take)
            with m.State("CRC_HI"):               # the CRC runs over its own two bytes too:
                take("CRC_LO")                       # a good frame leaves the register at 0
            with m.State("CRC_LO"):
                take(None)
                with m.If(fifo.r_rdy):
                    with m.If(rcrc_next == 0):
                        m.next = "OUT"
                    with m.Else():
                        m.d.comb += self.bad.eq(1)
                        m.next = "HUNT"
            with m.State("OUT"):
                m.d.comb += self.frame.valid.eq(1)
                with m.If(self.frame.ready):
                    m.next = "HUNT"

    def _store_byte(self, m, fifo, idx, take):
        """A payload byte into the ``frame`` payload register."""
        f = self.frame.payload
        take(None)
        with m.If(fifo.r_rdy):
            with m.Switch(idx):
                for lane in range(self.max_payload):
                    with m.Case(lane):
                        m.d.sync += f.payload[8 * lane:8 * lane + 8].eq(fifo.r_data)
            m.d.sync += idx.eq(idx + 1)
            with m.If(idx + 1 == f.len):
                m.next = "CRC_HI"

    def _stream_byte(self, m, fifo, idx, rcrc, rcrc_next, in_frame, timed_out):
        """A payload byte of a stream-type frame out on ``sbyte`` (popped when taken)."""
        f, sb = self.frame.payload, self.sbyte
        last = idx + 1 == f.len
        m.d.comb += [in_frame.eq(1), sb.valid.eq(fifo.r_rdy), fifo.r_en.eq(sb.ready),
                     sb.payload.data.eq(fifo.r_data), sb.payload.first.eq(idx == 0),
                     sb.payload.last.eq(last)]
        with m.If(fifo.r_rdy & sb.ready):
            m.d.sync += [rcrc.eq(rcrc_next), idx.eq(idx + 1)]
            with m.If(last):
                m.next = "CRC_HI"
        with m.Elif(~fifo.r_rdy & timed_out):
            m.next = "HUNT"
        if self.store_streamed:      # the byte on ``sbyte`` (taken or not) into the register
            with m.If(fifo.r_rdy & self.s_store):
                with m.Switch(self.s_at):
                    for lane in range(self.max_payload):
                        with m.Case(lane):
                            m.d.sync += f.payload[8 * lane:8 * lane + 8].eq(fifo.r_data)
            with m.If(self.s_clear):
                m.d.sync += f.payload.eq(0)

    def _credits(self, m, pop):
        popped = Signal(range(self.credit_unit))
        with m.If(pop):
            with m.If(popped == self.credit_unit - 1):
                m.d.sync += popped.eq(0)
                m.d.comb += self.credit.eq(1)
            with m.Else():
                m.d.sync += popped.eq(popped + 1)
        with m.If(self.restart):
            m.d.sync += popped.eq(0)


class MessageSender(wiring.Component):
    """Transmit side of the framing: one message at a time, ``0x5A tag seq len body crc16``, with
    the board's message counter as ``seq``.

    Parameters
    ----------
    divisor : int or None
        Clock cycles per UART bit; ``None``: bytes leave on the ``o`` stream.
    max_body : int
        Longest body (bytes).

    Members
    -------
    tx : Out(1)  (or ``o : Out(stream.Signature(8))`` without a UART)
    start, start_tag, start_len : In(1), In(8), In(8)
        While ``idle``, ``start`` begins a message of tag ``start_tag`` and ``start_len`` body
        bytes (both latched).
    idle : Out(1)
    tag : Out(8)
        Tag of the message being sent.
    index : Out(8)
        Body byte to be sent next; ``body`` must give its value (combinationally, from
        registers: the sender registers it before it goes further).
    body : In(8)
    last : Out(1)
        High in the cycle the last body byte is taken (a result word may be released then): a
        flip-flop ANDed with the sender state and the output register's free condition, no
        compare.

    Pipeline (timing, #16): the body byte selected by ``index`` is registered (``bbyte``) before
    the byte multiplexer over the message fields, and every byte is registered once more
    (``obyte``) before the CRC and the UART transmitter, so the byte multiplexers, the CRC and the
    transmitter's shift register are in separate stages. ``index`` moves one cycle ahead of the
    byte it selects; a body byte is loaded one cycle after ``index`` points at it. The CRC is
    updated from ``obyte`` as the transmitter takes it, and the CRC's first byte waits until the
    last body byte has gone. ``obyte`` is loaded only when empty (never in the cycle it is taken),
    so ``last`` depends on registers only. The bytes on the line are the same; a message starts one
    cycle later and, without a UART (``o``), a byte takes two cycles.

    Latency: a message of ``n`` body bytes takes ``n + 6`` byte times from ``start`` (plus a cycle).
    """

    def __init__(self, *, divisor, max_body: int):
        if divisor is not None:
            _check_divisor(divisor)
        self.divisor = divisor
        self.max_body = max_body
        ports = {"tx": Out(1, init=1)} if divisor is not None else {
            "o": Out(stream.Signature(8))}
        super().__init__(ports | {
            "start": In(1), "start_tag": In(8), "start_len": In(8),
            "idle": Out(1), "tag": Out(8), "index": Out(8), "body": In(8), "last": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        if self.divisor is not None:
            m.submodules.utx = utx = UARTTx(self.divisor)
            m.d.comb += self.tx.eq(utx.tx)
            out = utx.i
        else:
            out = self.o
        mseq = Signal(8)
        tcrc = Signal(16)
        length = Signal(8)
        # output register: the byte offered to the transmitter, and whether the CRC covers it
        obyte, ovalid, ocrc = Signal(8), Signal(), Signal()
        ofree = Signal()                  # obyte is empty: loaded only then, so that ``last``
        #                                   (a result FIFO's ``ready``) is not a function of the
        #                                   transmitter's state (#16, the 25F's worst path)
        m.d.comb += [out.payload.eq(obyte), out.valid.eq(ovalid), ofree.eq(~ovalid)]
        with m.If(out.ready & ovalid):
            m.d.sync += ovalid.eq(0)
            with m.If(ocrc):
                m.d.sync += tcrc.eq(_crc16_next(tcrc, obyte))
        # body byte register: body[index] of the previous cycle; fresh unless index just moved
        bbyte, fresh, at_last = Signal(8), Signal(), Signal()
        m.d.sync += [bbyte.eq(self.body), fresh.eq(1)]

        def send(value, state_next, *, crc=True, when=ofree):
            with m.If(when):
                m.d.sync += [obyte.eq(value), ovalid.eq(1), ocrc.eq(crc)]
                if state_next is not None:
                    m.next = state_next

        with m.FSM(name="send"):
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(1)
                with m.If(self.start):
                    m.d.sync += [self.tag.eq(self.start_tag), length.eq(self.start_len),
                                 fresh.eq(0)]
                    m.next = "SYNC"
            with m.State("SYNC"):
                m.d.sync += [tcrc.eq(0xFFFF), self.index.eq(0), fresh.eq(0)]
                send(MESSAGE_SYNC, "TAG", crc=False)
            with m.State("TAG"):
                send(self.tag, "SEQ")
            with m.State("SEQ"):
                send(mseq, "LEN")
            with m.State("LEN"):
                send(length, None)
                with m.If(ofree):
                    m.d.sync += at_last.eq(length == 1)
                    with m.If(length == 0):
                        m.next = "CRC_HI"
                    with m.Else():
                        m.next = "BODY"
            with m.State("BODY"):
                send(bbyte, None, when=ofree & fresh)
                with m.If(ofree & fresh):
                    m.d.sync += [self.index.eq(self.index + 1), fresh.eq(0),
                                 at_last.eq(self.index + 2 == length)]
                    with m.If(at_last):
                        m.d.comb += self.last.eq(1)
                        m.next = "CRC_HI"
            with m.State("CRC_HI"):           # once the CRC holds every byte before it
                send(tcrc[8:], "CRC_LO", crc=False, when=~ovalid)
            with m.State("CRC_LO"):
                send(tcrc[:8], "IDLE", crc=False)
                with m.If(ofree):
                    m.d.sync += mseq.eq(mseq + 1)
        return m


def attach_engine(m, bridge, engine, streams=("cmd",)) -> None:
    """Add ``bridge`` and ``engine`` to ``m`` as a board's bridge + engine pair: the bridge's host
    ``streams`` into the engine, the engine's ``res`` back, and the engine reset one cycle after
    the bridge's ``engine_rst`` (a registered pulse). Shared by the streamed and resident tops."""
    m.submodules.bridge = bridge
    eng_rst = Signal()
    m.d.sync += eng_rst.eq(bridge.engine_rst)
    m.submodules.engine = ResetInserter(eng_rst)(engine)
    for name in streams:
        wiring.connect(m, getattr(bridge, name), getattr(engine, name))
    wiring.connect(m, engine.res, bridge.res)


def saturating_count(m, counter, inc) -> None:
    """``counter += 1`` on ``inc``, stopping at its maximum."""
    with m.If(inc & (counter != (1 << len(counter)) - 1)):
        m.d.sync += counter.eq(counter + 1)


def credits_owed(m, credit, sent, clear, fifo_depth: int, credit_unit: int) -> Signal:
    """Credit messages owed to the host: +1 per ``credit`` pulse, -1 per ``sent``; ``clear``
    (an identify reply went out: the host restarts its allowance) zeroes it."""
    owed = Signal(range(2 * (fifo_depth // credit_unit) + 4))
    with m.If(clear):
        m.d.sync += owed.eq(0)
    with m.Else():
        m.d.sync += owed.eq(owed + credit - sent)
    return owed


def send_first(m, snd: MessageSender, choices) -> None:
    """Start the first message of ``choices`` whose condition holds while ``snd`` is idle.
    ``choices``: ``[(cond, tag, length, taken)]``; ``taken`` (a Signal or None) is driven high in
    the cycle the message is started."""
    with m.If(snd.idle):
        for i, (cond, tag, length, taken) in enumerate(choices):
            with (m.If if i == 0 else m.Elif)(cond):
                m.d.comb += [snd.start.eq(1), snd.start_tag.eq(tag), snd.start_len.eq(length)]
                if taken is not None:
                    m.d.comb += taken.eq(1)


def body_mux(m, snd: MessageSender, bodies: dict) -> None:
    """Drive ``snd.body`` from ``{tag: [byte values]}`` by the message's tag and byte index."""
    with m.Switch(snd.tag):
        for t, parts in bodies.items():
            with m.Case(t):
                m.d.comb += snd.body.eq(Array(parts)[snd.index])


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

    Built from :class:`FrameReceiver` (UART, FIFO, parser, credit count) and
    :class:`MessageSender`; this class only dispatches frames and chooses the next message.

    Latency: a frame's word is offered on ``cmd``/``data`` one cycle after the parser takes its
    last CRC byte (from the register after the FIFO, :class:`FrameReceiver`); the parser takes one
    byte per cycle, so it never limits the link.
    """

    def __init__(self, *, divisor: int, data_width: int, res_width: int, cmd_width: int = 64,
                 fifo_depth: int = 512, credit_unit: int = 32, timeout: int = 0):
        _check_divisor(divisor)
        for name, v in (("data_width", data_width), ("res_width", res_width),
                        ("cmd_width", cmd_width)):
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 255 * 8:
                raise ValueError(f"{name} must be an integer in [1, 2040] (at most 255 bytes per"
                                 f" frame), not {v!r}")
        _check_link(fifo_depth, credit_unit, timeout)
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
        return ident_head(self.data_bytes, self.res_bytes, self.fifo_depth, self.credit_unit)

    def elaborate(self, platform):
        m = Module()
        m.submodules.rxf = rxf = FrameReceiver(
            divisor=self.divisor, max_payload=self.max_payload, fifo_depth=self.fifo_depth,
            credit_unit=self.credit_unit, timeout=self.timeout)
        m.submodules.snd = snd = MessageSender(divisor=self.divisor,
                                               max_body=max(self.res_bytes, len(self.ident) + 1))
        m.d.comb += [rxf.rx.eq(self.rx), self.tx.eq(snd.tx), self.overrun.eq(rxf.overrun),
                     self.frame_error.eq(rxf.frame_error)]
        expect = Signal(8)                   # seq of the next command/data frame
        token = Signal(8)
        seq_bad, unknown = Signal(), Signal()
        saturating_count(m, self.bad_frames, rxf.bad | unknown)
        saturating_count(m, self.seq_errors, seq_bad)
        requests = self._dispatch(m, rxf, expect, token, seq_bad, unknown)
        self._transmit(m, rxf, snd, expect, token, *requests)
        return m

    def _dispatch(self, m, rxf, expect, token, seq_bad, unknown):
        """Good frames -> ``cmd``/``data`` (in sequence) or identify/reset/status requests.

        A command or data frame is checked (type, ``seq == expect``) into flip-flops the cycle
        after it is offered and dispatched from them, so ``cmd.valid``/``data.valid`` are not a
        compare away from the engine's loader (#16: the 85F's worst path after step 6); the
        frame's payload stays in the receiver's register until it is taken."""
        f = rxf.frame.payload
        ident_req, status_req = Signal(), Signal()
        checked, c_cmd, c_data, c_seq_ok = Signal(), Signal(), Signal(), Signal()
        with m.If(rxf.frame.ready):
            m.d.sync += checked.eq(0)
        with m.Elif(rxf.frame.valid):
            m.d.sync += [checked.eq(1), c_cmd.eq(f.type == Channel.CMD),
                         c_data.eq(f.type == Channel.DATA), c_seq_ok.eq(f.seq == expect)]
        m.d.comb += [self.cmd.payload.eq(f.payload[:self.cmd_width]),
                     self.data.payload.eq(f.payload[:self.data_width])]
        with m.If(rxf.frame.valid & checked & (c_cmd | c_data)):
            with m.If(c_seq_ok):
                m.d.comb += [self.cmd.valid.eq(c_cmd), self.data.valid.eq(c_data),
                             rxf.frame.ready.eq(Mux(c_cmd, self.cmd.ready, self.data.ready))]
                with m.If(rxf.frame.ready):
                    m.d.sync += expect.eq(expect + 1)
            with m.Else():
                m.d.comb += [seq_bad.eq(1), rxf.frame.ready.eq(1)]
        with m.Elif(rxf.frame.valid):
            with m.Switch(f.type):
                with m.Case(Channel.CMD, Channel.DATA):
                    pass                                  # checked in this cycle
                with m.Case(Channel.IDENTIFY):
                    m.d.comb += [rxf.frame.ready.eq(1), rxf.restart.eq(1)]
                    m.d.sync += [ident_req.eq(1), expect.eq(f.seq + 1), token.eq(f.seq)]
                with m.Case(Channel.RESET):
                    m.d.comb += [rxf.frame.ready.eq(1), self.engine_rst.eq(1)]
                    m.d.sync += expect.eq(f.seq + 1)
                with m.Case(Channel.STATUS):
                    m.d.comb += rxf.frame.ready.eq(1)
                    m.d.sync += [status_req.eq(1), token.eq(f.seq)]
                with m.Default():                 # unknown type: dropped and counted
                    m.d.comb += [rxf.frame.ready.eq(1), unknown.eq(1)]
        return ident_req, status_req

    def _transmit(self, m, rxf, snd, expect, token, ident_req, status_req):
        """Credits, identify replies, status, result words (in this priority). No copy of the
        result word: its bytes are sent straight from ``res.payload`` (held stable by the stream
        rules while ``valid`` and not ``ready``) and the word is taken with its last byte."""
        ident_take, status_take, credit_sent = Signal(), Signal(), Signal()
        # requests taken by the transmitter; a new request in the same cycle wins (written later)
        with m.If(ident_take):
            m.d.sync += ident_req.eq(0)
        with m.If(status_take):
            m.d.sync += status_req.eq(0)
        owed = credits_owed(m, rxf.credit, credit_sent, ident_take, self.fifo_depth,
                            self.credit_unit)
        rbytes, ident = self.res_bytes, self.ident
        send_first(m, snd, [
            (owed != 0, Tag.CREDIT, 0, credit_sent),
            (ident_req, Tag.IDENTIFY, len(ident) + 1, ident_take),
            (status_req, Tag.STATUS, STATUS_BYTES, status_take),
            (self.res.valid, Tag.RESULT, rbytes, None),
        ])
        res_word = Cat(self.res.payload, Const(0, 8 * rbytes - self.res_width))
        body_mux(m, snd, {
            Tag.RESULT: [res_word[8 * i:8 * i + 8] for i in range(rbytes)],
            Tag.IDENTIFY: [Const(b, 8) for b in ident] + [token],
            Tag.STATUS: status_body(token, expect, self.bad_frames, self.seq_errors,
                                    self.overrun, self.frame_error),
        })
        m.d.comb += self.res.ready.eq(snd.last & (snd.tag == Tag.RESULT))


def status_body(token, expect, bad_frames, seq_errors, overrun, frame_error) -> list:
    """The ``STATUS_BYTES`` body bytes of a status message."""
    body = [token, expect, bad_frames, seq_errors, Cat(overrun, frame_error, Const(0, 6))]
    assert len(body) == STATUS_BYTES
    return body
