"""The driver's exchanges over a serial link to a board's UART bridge (``docs/uart.md``).

:class:`SerialTransport` speaks the bridge's framing (version 2: every frame and message carries a
sequence number and a CRC-16) over any *byte port*: an object with ``write(bytes)`` and
``read(n) -> bytes`` (``read`` may return fewer bytes, or none on a timeout), like a ``pyserial``
``Serial``. Give it a device name (``"/dev/ttyUSB1"``) and it opens one with pyserial, imported only
then (``pip install pyserial``).

:class:`AmaranthSerialPort` is such a byte port in simulation: it drives the ``rx`` pin and decodes
the ``tx`` pin of a design with the board top's UART pins (:class:`~progressivenn.hw.boards.EngineOverUART`)
in the Amaranth simulator, advancing the simulation only while the host waits for bytes.
:class:`FaultyPort` wraps a byte port and flips, drops, duplicates or inserts bytes in either
direction (fault injection).

Never a wrong result: a damaged frame is dropped by the board (and its loss seen in the status the
host asks for at the end of every exchange); a damaged, lost or duplicated message is seen by the
host (CRC, message sequence numbers). Either way :class:`LinkError` says what happened. Only what is
safe to repeat is retried: the identify when connecting and the status request. An exchange has
one deadline, fixed when it starts, that no received byte extends; credits never raise the
allowance above the board's FIFO depth.
"""

from __future__ import annotations

import random
import time

from ..hw import isa
from ..hw.isa import EngineConfig
from ..hw.uart import (FRAME_SYNC, IDENT_MAGIC, MESSAGE_SYNC, PROTOCOL_VERSION, STATUS_BYTES,
                       Channel, Tag, crc16)
from .transport import Exchange, Transport, drive

__all__ = ["frame", "exchange_frames", "exchange_bytes", "Message", "UpstreamParser",
           "LinkError", "ByteLink", "SerialTransport", "SimBytePort", "AmaranthSerialPort",
           "FaultyPort",
           "decode_ident_head", "decode_stream_ident"]

_LOADS = (isa.Op.LOAD_W, isa.Op.LOAD_A, isa.Op.LOAD_PP)
_IDENT_BYTES = len(IDENT_MAGIC) + 7


class LinkError(RuntimeError):
    """The serial link lost or damaged something the host cannot safely repeat; the engine's
    state is unknown (reconnect: that resets it)."""


def frame(channel: int, value: int = 0, width: int | None = None, seq: int = 0) -> bytes:
    """One host -> board frame: start byte, type, seq, byte count, ``value`` little-endian
    (leading zero bytes dropped: the bridge zero-extends), CRC-16 (high byte first)."""
    value = int(value)
    if value < 0:
        raise ValueError(f"frame payload must be non-negative, not {value}")
    if width is not None and value >> width:
        raise ValueError(f"frame payload {value:#x} does not fit in {width} bits")
    n = (value.bit_length() + 7) // 8
    if n > 255:
        raise ValueError(f"frame payload of {n} bytes exceeds 255")
    body = bytes([channel, seq & 0xFF, n]) + value.to_bytes(n, "little")
    return bytes([FRAME_SYNC]) + body + crc16(body).to_bytes(2, "big")


def exchange_frames(cfg: EngineConfig, ex: Exchange) -> list:
    """``(type, word, width)`` of one exchange, in sending order: each command, then the data beats
    it loads; data beats no command claims go last."""
    out = []
    data = iter(ex.data)
    left = len(ex.data)
    for c in ex.cmds:
        out.append((Channel.CMD, c, isa.CMD_WIDTH))
        f = isa.decode_cmd(c)
        if f["op"] in _LOADS:
            n = min(f["count"], left)
            out += [(Channel.DATA, next(data), cfg.data_width) for _ in range(n)]
            left -= n
    out += [(Channel.DATA, d, cfg.data_width) for d in data]
    return out


def exchange_bytes(cfg: EngineConfig, ex: Exchange, seq: int = 0) -> bytes:
    """The byte stream of one exchange, its frames numbered from ``seq``."""
    return b"".join(frame(t, w, width, seq + i)
                    for i, (t, w, width) in enumerate(exchange_frames(cfg, ex)))


class Message:
    """One board -> host message: ``tag``, the board's message counter ``seq``, ``body``."""

    __slots__ = ("tag", "seq", "body")

    def __init__(self, tag: int, seq: int, body: bytes):
        self.tag, self.seq, self.body = tag, seq, body

    def __repr__(self):
        return f"Message(tag={self.tag:#x}, seq={self.seq}, body={self.body.hex()})"


class UpstreamParser:
    """Incremental decoder of board -> host messages; hunts for the start byte after garbage.

    ``lengths``: body bytes of each tag (an int, or a tuple of the lengths allowed). A candidate
    whose length is impossible for its tag or whose CRC is wrong is counted in
    ``bad`` and only its start byte skipped, so a real message behind garbage is still found;
    bytes skipped while hunting are counted in ``garbage``. The buffer never holds more than one
    message. ``messages`` collects the good ones in order."""

    def __init__(self, res_bytes: int):
        self.res_bytes = res_bytes
        self.lengths = {Tag.RESULT: res_bytes, Tag.CREDIT: 0, Tag.IDENTIFY: _IDENT_BYTES,
                        Tag.STATUS: STATUS_BYTES}
        self.buf = bytearray()
        self.messages: list = []
        self.bad = 0
        self.garbage = 0

    def feed(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while buf:
            i = buf.find(MESSAGE_SYNC)
            if i < 0:
                self.garbage += len(buf)
                buf.clear()
                break
            if i:
                self.garbage += i
                del buf[:i]
            if len(buf) < 4:
                break
            tag, seq, n = buf[1], buf[2], buf[3]
            want = self.lengths.get(tag)
            if n != want and not (isinstance(want, tuple) and n in want):
                self.bad += 1
                del buf[:1]
                continue
            if len(buf) < 6 + n:
                break
            if crc16(bytes(buf[1:4 + n])) != int.from_bytes(buf[4 + n:6 + n], "big"):
                self.bad += 1
                del buf[:1]
                continue
            self.messages.append(Message(tag, seq, bytes(buf[4:4 + n])))
            del buf[:6 + n]


def decode_ident_head(body: bytes) -> tuple:
    """The fields every identify reply starts with, after "PNN" (``hw.uart.ident_head``): the
    framing version, two bytes that depend on the bridge, the FIFO depth (2 LE), the credit
    unit. Returns (version, b1, b2, fifo_depth, credit_unit)."""
    v, b1, b2, flo, fhi, cu = body[len(IDENT_MAGIC):_IDENT_BYTES - 1]
    return v, b1, b2, flo | fhi << 8, cu


def decode_stream_ident(body: bytes) -> dict:
    """Fields of the streamed bridge's identify reply (``UARTBridge.ident`` + the token)."""
    v, data_bytes, res_bytes, depth, cu = decode_ident_head(body)
    return {"version": v, "data_bytes": data_bytes, "res_bytes": res_bytes, "fifo_depth": depth,
            "credit_unit": cu}


def _status(body: bytes) -> dict:
    return {"token": body[0], "expect": body[1], "bad_frames": body[2], "seq_errors": body[3],
            "overrun": bool(body[4] & 1), "frame_error": bool(body[4] & 2)}


class ByteLink:
    """What every host of the framing does over a byte port, whatever the engine behind the
    bridge: open the port, count bytes, decode messages, identify (a fresh token, stale replies
    skipped, ``retries`` tries within one deadline), the credit allowance (never above the FIFO
    depth), the board's message counter, status requests and probes, and the send/collect loop of
    one operation with one deadline. :class:`SerialTransport` (the streamed engine) and
    ``sim.resident_link.ResidentLink`` (resident mode) add their frames and replies.

    Subclasses provide ``_lost()`` (forget the connection: the next operation reconnects) and
    ``_result(msg)`` (take a result message; False: not one, an unexpected message)."""

    #: appended to the LinkError messages (what the caller should do)
    HINT = ""

    def __init__(self, port, *, baud: int, timeout: float, probe: float, retries: int,
                 pyserial_hint: str = "pip install pyserial"):
        if isinstance(port, str):
            try:
                import serial  # pyserial, only for a real port
            except ImportError as e:
                raise RuntimeError(f"a serial port needs pyserial: {pyserial_hint}") from e
            port = serial.Serial(port, baud, timeout=0.05)
        self.port = port
        # a simulated port keeps its own time (simulated seconds): deadlines follow it
        self.clock = getattr(port, "clock", time.monotonic)
        self.baud = getattr(port, "baud", baud)
        self.timeout = timeout
        self.probe = probe
        self.retries = retries
        self.fifo_depth = 0
        self.credit_unit = 0
        self.allowance = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.parser = None
        self.seq = 0              # seq of the next sequenced frame
        self.mseq = 0             # seq of the next board message
        self.token = 0            # of the last identify / status request
        self.results: list = []
        self.status = None
        self.link = {"sent": 0, "received": 0, "messages": 0, "bad": 0, "garbage": 0,
                     "probes": 0, "identify_retries": 0}

    # ---- bytes ----------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        self.port.write(data)
        self.bytes_sent += len(data)
        self.link["sent"] = self.bytes_sent

    def _drain(self) -> list:
        """Read what the port has; return the good messages decoded so far."""
        n = max(1, int(getattr(self.port, "in_waiting", 0) or 0))
        data = self.port.read(n)
        self.bytes_received += len(data)
        self.link["received"] = self.bytes_received
        if data:
            self.parser.feed(data)
        self.link["bad"], self.link["garbage"] = self.parser.bad, self.parser.garbage
        msgs, self.parser.messages = self.parser.messages, []
        self.link["messages"] += len(msgs)
        return msgs

    def _deadline(self, nbytes: int) -> float:
        return self.clock() + self.timeout + 40.0 / self.baud * nbytes

    def _fail(self, text: str) -> LinkError:
        self._lost()
        return LinkError(f"serial link: {text}{self.HINT}")

    # ---- identify -------------------------------------------------------------------------------
    def _identify(self, reset_frame, nbytes: int, what: str):
        """Send ``reset_frame(token)`` (may be empty) and an identify with a fresh token until a reply
        with that token comes (``retries`` tries within one deadline of ``nbytes`` per try).
        Returns (reply, the messages after it); TimeoutError naming ``what`` when none came."""
        deadline = self._deadline(nbytes * self.retries)
        for attempt in range(self.retries):
            if attempt:
                self.link["identify_retries"] += 1
            self.token = (self.token + 1) & 0xFF
            self._write(reset_frame(self.token) + frame(Channel.IDENTIFY, seq=self.token))
            wait = self.clock() + (deadline - self.clock()) / (self.retries - attempt)
            while self.clock() < wait:
                msgs = self._drain()
                for i, msg in enumerate(msgs):   # anything before our identify reply is stale
                    if (msg.tag == Tag.IDENTIFY and msg.body.startswith(IDENT_MAGIC)
                            and msg.body[-1:] == bytes([self.token])):
                        return msg, msgs[i + 1:]
        raise TimeoutError(f"no identify reply from the board: check the port, the baud rate"
                           f" and that {what} is loaded")

    def _start(self, reply, rest, fifo_depth: int, credit_unit: int) -> None:
        """After the identify ``reply``: the allowance restarts at the FIFO depth, frames are
        numbered from the token + 1, messages from the reply's + 1; ``rest`` taken."""
        self.fifo_depth, self.credit_unit = fifo_depth, credit_unit
        self.allowance = fifo_depth
        self.seq = (self.token + 1) & 0xFF
        self.mseq = (reply.seq + 1) & 0xFF
        self.results, self.status = [], None
        for msg in rest:                     # credits sent right after the reply
            self._take(msg)

    # ---- messages -------------------------------------------------------------------------------
    def _take(self, msg) -> None:
        """Account one message; a lost or duplicated one is a LinkError."""
        if msg.seq != self.mseq:
            raise self._fail(f"board message #{self.mseq} lost or damaged (got #{msg.seq} next)")
        self.mseq = (self.mseq + 1) & 0xFF
        if msg.tag == Tag.CREDIT:
            self.allowance = min(self.fifo_depth, self.allowance + self.credit_unit)
        elif msg.tag == Tag.STATUS:
            st = _status(msg.body)
            if st["token"] == self.token:
                self.status = st
        elif not self._result(msg):
            raise self._fail(f"unexpected {msg!r}")

    def _status_request(self) -> bytes:
        self.token = (self.token + 1) & 0xFF
        self.status = None
        return frame(Channel.STATUS, seq=self.token)

    def _transact(self, out: bytes, nframes: int, n_results, *, status: bool,
                  carry: bool = False, result_bytes: int = 48) -> list:
        """Send ``out`` (``nframes`` sequenced frames; credits respected) and collect
        ``n_results`` results (or ``n_results(results so far)``); with ``status``, a status
        request goes last and its reply must confirm that the board took every frame. With
        ``carry`` (another operation is in flight) results beyond ``n_results`` are kept for the
        next call instead of being an error. A status request is repeated after ``probe`` seconds
        of silence once all is sent; one deadline, ``result_bytes`` allowed per result."""
        count = n_results if callable(n_results) else (lambda got: n_results)
        self.status = None
        if status:
            out += self._status_request()
        self.seq = (self.seq + nframes) & 0xFF
        pos = 0
        deadline = self._deadline(len(out) + result_bytes * count([]))
        quiet = self.clock()
        while True:
            if pos < len(out) and self.allowance > 0:
                n = min(self.allowance, len(out) - pos)
                self._write(out[pos:pos + n])
                pos += n
                self.allowance -= n
                continue
            msgs = self._drain()
            for msg in msgs:
                self._take(msg)
            st = self.status
            if st is not None and st["expect"] != self.seq:
                raise self._fail(f"the board dropped host frames (expects frame #{st['expect']},"
                                 f" {self.seq} sent; {st['bad_frames']} bad, {st['seq_errors']}"
                                 f" out of sequence so far)")
            want = count(self.results)
            if len(self.results) > want and not carry:
                raise self._fail(f"{len(self.results)} results, {want} expected")
            if pos == len(out) and len(self.results) >= want and (st or not status):
                break
            now = self.clock()
            if msgs:
                quiet = now
            elif pos == len(out) and now - quiet > self.probe and self.allowance >= 8:
                probe = self._status_request()        # safe to repeat: it only reads counters
                self._write(probe)
                self.allowance -= len(probe)
                self.link["probes"] += 1
                quiet = now
            if now > deadline:
                raise self._fail(f"not finished by the deadline: sent {pos}/{len(out)} bytes, got"
                                 f" {len(self.results)}/{want} results"
                                 f"{'' if st or not status else ', no status reply'}")
        res, self.results = self.results[:want], self.results[want:]
        return res

    def close(self) -> None:
        close = getattr(self.port, "close", None)
        if close:
            close()


class SerialTransport(ByteLink, Transport):
    """The engine on a board, through its UART bridge.

    Parameters
    ----------
    cfg : EngineConfig
        The configuration the board was built with (checked against the identify reply).
    port : str or byte port
        A device name (opened with pyserial at ``baud``) or an object with ``write``/``read``.
    baud : int
        The line rate of a real port (default 3 Mbaud, what `pnn build` gives every board).
        Also sets the deadline's allowance per byte (10 bits each, times 4). A port with a
        ``baud`` attribute and a ``clock()`` (a simulated port) gives both: then all times below
        are the port's (simulated) seconds.
    timeout : float
        Base of every deadline, in seconds: an exchange must finish within
        ``timeout + 4 * 10 / baud * bytes``, counted from its start; no byte received extends it.
    reset : bool
        Reset the engine when connecting (type 3), so no stale results are pending.
    probe : float
        Seconds of silence, once everything is sent, before the host asks for the status again
        (the only request it repeats within an exchange).
    retries : int
        Identify requests sent before ``connect()`` gives up.

    ``link`` counts what the link went through: bytes each way, messages received, bad
    candidates and garbage bytes skipped by the parser, status probes repeated, identify retries.
    The send loop, credits and identify are :class:`ByteLink`'s.
    """

    HINT = "; the engine state is unknown: reconnect and run again"

    def __init__(self, cfg: EngineConfig, port, *, baud: int = 3_000_000, timeout: float = 10.0,
                 reset: bool = True, probe: float = 0.5, retries: int = 3):
        super().__init__(port, baud=baud, timeout=timeout, probe=probe, retries=retries)
        self.cfg = cfg
        self.reset = reset
        self.connected = False
        self.res_bytes = -(-cfg.res_width // 8)
        self.parser = UpstreamParser(self.res_bytes)

    def _lost(self) -> None:
        self.connected = False

    def _result(self, msg) -> bool:
        if msg.tag != Tag.RESULT:
            return False
        self.results.append(int.from_bytes(msg.body, "little"))
        return True

    def connect(self) -> dict:
        """Reset the engine (if asked), identify the bridge and start the credit count.

        The identify is safe to repeat and is, up to ``retries`` times. Returns the identify
        reply's fields."""
        self.parser = UpstreamParser(self.res_bytes)
        reply, rest = self._identify(
            lambda tok: frame(Channel.RESET, seq=tok) if self.reset else b"", 64, "the bitstream")
        info = decode_stream_ident(reply.body)
        if info["version"] != PROTOCOL_VERSION:
            raise RuntimeError(f"board speaks framing version {info['version']}, this host"
                               f" {PROTOCOL_VERSION}")
        want = (-(-self.cfg.data_width // 8), self.res_bytes)
        if (info["data_bytes"], info["res_bytes"]) != want:
            raise RuntimeError(f"the board's engine has {info['data_bytes']} data bytes and"
                               f" {info['res_bytes']} result bytes, the configuration given"
                               f" {want[0]} and {want[1]}: the bitstream was built for another"
                               f" EngineConfig")
        self._start(reply, rest, info["fifo_depth"], info["credit_unit"])
        self.connected = True
        return info

    def exchange(self, ex: Exchange) -> list[int]:
        """Send one exchange and return its ``n_results`` result words (or raise LinkError)."""
        if not self.connected:
            self.connect()
        nframes = len(exchange_frames(self.cfg, ex))
        return self._transact(exchange_bytes(self.cfg, ex, self.seq), nframes, ex.n_results,
                              status=True, result_bytes=6 + self.res_bytes)

    def run(self, gen):
        return drive(gen, self.exchange)


class FaultyPort:
    """A byte port that damages the traffic of ``port`` (fault injection).

    Each byte written (host -> board, ``down``) or read (board -> host, ``up``) is, with
    probability ``rate``, flipped in one bit, dropped, duplicated or preceded by a random byte
    (``kinds``). ``injected`` counts the faults by direction and kind. ``armed`` switches the
    injection on and off (e.g. only while an exchange runs)."""

    KINDS = ("flip", "drop", "duplicate", "insert")

    def __init__(self, port, *, rate: float, seed: int = 0, down: bool = True, up: bool = True,
                 kinds=KINDS):
        self.port = port
        self.rate = rate
        self.rng = random.Random(seed)
        self.dirs = {"down": down, "up": up}
        self.kinds = tuple(kinds)
        self.armed = True
        self.injected = {f"{d}.{k}": 0 for d in ("down", "up") for k in self.KINDS}

    def total(self) -> int:
        return sum(self.injected.values())

    def _damage(self, data: bytes, direction: str) -> bytes:
        if not (self.armed and self.dirs[direction]):
            return data
        out = bytearray()
        for b in data:
            if self.rng.random() >= self.rate:
                out.append(b)
                continue
            kind = self.rng.choice(self.kinds)
            self.injected[f"{direction}.{kind}"] += 1
            if kind == "flip":
                out.append(b ^ (1 << self.rng.randrange(8)))
            elif kind == "duplicate":
                out += bytes([b, b])
            elif kind == "insert":
                out += bytes([self.rng.randrange(256), b])
        return bytes(out)

    @property
    def in_waiting(self) -> int:
        return self.port.in_waiting

    def write(self, data: bytes) -> int:
        self.port.write(self._damage(data, "down"))
        return len(data)

    def read(self, n: int = 1) -> bytes:
        return self._damage(self.port.read(n), "up")

    def __getattr__(self, name):
        return getattr(self.port, name)


class SimBytePort:
    """What every simulated board's byte port shares: bytes written queue up in ``tx_queue`` for
    the simulation to send, bytes the board sent collect in ``rx_buf``, ``clock()`` is the
    simulated time (``cycles`` of ``period`` seconds), ``baud`` one byte per cycle unless a
    subclass says otherwise. ``read`` runs the simulation (:meth:`_advance`) only while no byte is
    there. Subclasses: :class:`AmaranthSerialPort`, ``sim.resident_link.AmaranthBytePort``,
    ``sim.resident_link_cocotb.CocotbBytePort``."""

    period = 1e-8

    def _queues(self, max_cycles: int, step: int) -> None:
        self.max_cycles = max_cycles
        self.step = step          # cycles run per slice while waiting
        self.cycles = 0
        self.tx_queue = bytearray()
        self.rx_buf = bytearray()

    def _advance(self) -> None:
        """Run the Amaranth simulator ``self.sim`` slice by slice until a byte arrived or
        ``max_cycles`` passed."""
        waited = 0
        while not self.rx_buf and waited < self.max_cycles:
            self.cycles += self.step
            waited += self.step
            self.sim.run_until(self.cycles * self.period)

    def clock(self) -> float:
        """Simulated seconds so far."""
        return self.cycles * self.period

    @property
    def baud(self) -> float:
        return 10.0 / self.period

    @property
    def in_waiting(self) -> int:
        return len(self.rx_buf)

    def write(self, data: bytes) -> int:
        self.tx_queue += data
        return len(data)

    def read(self, n: int = 1) -> bytes:
        if not self.rx_buf:
            self._advance()
        data = bytes(self.rx_buf[:n])
        del self.rx_buf[:n]
        return data


class AmaranthSerialPort(SimBytePort):
    """A byte port whose other end is the UART pins of ``dut`` in the Amaranth simulator.

    Parameters
    ----------
    dut : Elaboratable
        Has 1-bit ``rx`` (input, idle high) and ``tx`` (output) and the attribute ``divisor``
        (clock cycles per bit), e.g. :class:`~progressivenn.hw.boards.EngineOverUART`.
    gap : float
        Probability of an idle bit time between two bytes sent (the host's random stalls).
    seed : int
    max_cycles : int
        ``read`` gives up (returns ``b""``) after this many cycles without a byte (the port's
        read timeout; the host's deadlines are in the simulated time of :meth:`clock`).
    vcd : str or None
        Waveform file.
    watch : sequence of Signal
        Signals that :meth:`peek` may read (default: ``dut.error`` and ``dut.busy`` where present).
    """

    def __init__(self, dut, *, gap: float = 0.0, seed: int = 0, max_cycles: int = 20_000,
                 vcd: str | None = None, watch=None):
        import random

        from amaranth.sim import Simulator

        self.dut = dut
        self.div = int(dut.divisor)
        self.gap = gap
        self.rng = random.Random(seed)
        self._queues(max_cycles, 20 * self.div)      # about two byte times per slice
        self.sim = Simulator(dut)
        self.sim.add_clock(self.period)
        self.sim.add_testbench(self._line_out, background=True)
        self.sim.add_testbench(self._line_in, background=True)
        if watch is None:
            watch = [getattr(dut, n) for n in ("error", "busy") if hasattr(dut, n)]
        self.watch = list(watch)
        self.values: dict = {}
        if self.watch:
            self.sim.add_testbench(self._sample, background=True)
        self._vcd = None
        if vcd:
            self._vcd = self.sim.write_vcd(vcd)
            self._vcd.__enter__()

    async def _line_out(self, ctx):
        """host -> board: shift queued bytes onto ``rx``, 8N1. Python wakes once per bit, half a
        clock period off the clock edges."""
        dut, bit_t = self.dut, self.period * self.div
        ctx.set(dut.rx, 1)
        await ctx.delay(self.period / 2)
        while True:
            if not self.tx_queue:
                await ctx.delay(bit_t)
                continue
            byte = self.tx_queue.pop(0)
            for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                ctx.set(dut.rx, bit)
                await ctx.delay(bit_t)
            if self.gap and self.rng.random() < self.gap:
                await ctx.delay(bit_t * self.rng.randint(1, 3))

    async def _line_in(self, ctx):
        """board -> host: decode ``tx`` (sampled at mid-bit)."""
        dut, div = self.dut, self.div
        while True:
            await ctx.negedge(dut.tx)
            await ctx.delay(self.period * (div / 2 + 0.25))   # mid-bit, off the clock edge
            if ctx.get(dut.tx):
                continue                                  # glitch
            byte = 0
            for i in range(8):
                await ctx.delay(self.period * div)
                byte |= ctx.get(dut.tx) << i
            await ctx.delay(self.period * div)
            if ctx.get(dut.tx):
                self.rx_buf.append(byte)

    async def _sample(self, ctx):
        while True:
            for s in self.watch:
                self.values[id(s)] = ctx.get(s)
            await ctx.delay(16 * self.period)

    def peek(self, signal) -> int:
        """The value of a watched signal, sampled within the last 16 cycles."""
        self.run_cycles(17)
        return self.values[id(signal)]

    @property
    def baud(self) -> float:
        return 1.0 / (self.period * self.div)

    def run_cycles(self, n: int) -> None:
        self.cycles += n
        self.sim.run_until(self.cycles * self.period)

    def close(self) -> None:
        if self._vcd is not None:
            self._vcd.__exit__(None, None, None)
            self._vcd = None
