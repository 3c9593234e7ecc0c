"""The driver's exchanges over a serial link to a board's UART bridge (``docs/uart.md``).

:class:`SerialTransport` speaks the bridge's framing over any *byte port*: an object with
``write(bytes)`` and ``read(n) -> bytes`` (``read`` may return fewer bytes, or none on a timeout),
like a ``pyserial`` ``Serial``. Give it a device name (``"/dev/ttyUSB1"``) and it opens one with
pyserial, imported only then (``pip install pyserial``).

:class:`AmaranthSerialPort` is such a byte port in simulation: it drives the ``rx`` pin and decodes
the ``tx`` pin of a design with the board top's UART pins (:class:`~progressivenn.hw.boards.EngineOverUART`)
in the Amaranth simulator, advancing the simulation only while the host waits for bytes.

Flow control is by credits: after ``connect()`` the host may have at most ``fifo_depth`` bytes in
flight; every credit message returns ``credit_unit`` bytes. Commands go out in order, each followed
by the data beats its LOAD asks for, which is the order the engine consumes them in.
"""

from __future__ import annotations

import time

from ..hw import isa
from ..hw.isa import EngineConfig
from ..hw.uart import IDENT_MAGIC, PROTOCOL_VERSION, Channel, Tag
from .transport import Exchange, Transport, drive

__all__ = ["frame", "exchange_bytes", "UpstreamParser", "SerialTransport", "AmaranthSerialPort"]

_LOADS = (isa.Op.LOAD_W, isa.Op.LOAD_A, isa.Op.LOAD_PP)


def frame(channel: int, value: int = 0, width: int | None = None) -> bytes:
    """One host -> board frame: channel, byte count, ``value`` little-endian (leading zero bytes
    dropped: the bridge zero-extends)."""
    value = int(value)
    if value < 0:
        raise ValueError(f"frame payload must be non-negative, not {value}")
    if width is not None and value >> width:
        raise ValueError(f"frame payload {value:#x} does not fit in {width} bits")
    n = (value.bit_length() + 7) // 8
    if n > 255:
        raise ValueError(f"frame payload of {n} bytes exceeds 255")
    return bytes([channel, n]) + value.to_bytes(n, "little")


def exchange_bytes(cfg: EngineConfig, ex: Exchange) -> bytes:
    """The byte stream of one exchange: each command, then the data beats it loads; data beats no
    command claims go last."""
    out = bytearray()
    data = iter(ex.data)
    left = len(ex.data)
    for c in ex.cmds:
        out += frame(Channel.CMD, c, isa.CMD_WIDTH)
        f = isa.decode_cmd(c)
        if f["op"] in _LOADS:
            n = min(f["count"], left)
            for _ in range(n):
                out += frame(Channel.DATA, next(data), cfg.data_width)
            left -= n
    for d in data:
        out += frame(Channel.DATA, d, cfg.data_width)
    return bytes(out)


class UpstreamParser:
    """Incremental decoder of board -> host messages."""

    def __init__(self, res_bytes: int):
        self.res_bytes = res_bytes
        self.buf = bytearray()
        self.results: list[int] = []
        self.credits = 0

    def feed(self, data: bytes) -> None:
        self.buf += data
        buf = self.buf
        i = 0
        while i < len(buf):
            tag = buf[i]
            if tag == Tag.CREDIT:
                self.credits += 1
                i += 1
            elif tag == Tag.RESULT:
                if len(buf) - i < 1 + self.res_bytes:
                    break
                self.results.append(int.from_bytes(buf[i + 1:i + 1 + self.res_bytes], "little"))
                i += 1 + self.res_bytes
            else:
                raise RuntimeError(f"serial link out of step: unexpected message tag {tag:#04x}"
                                   f" (reset the board and reconnect)")
        del buf[:i]


class SerialTransport(Transport):
    """The engine on a board, through its UART bridge.

    Parameters
    ----------
    cfg : EngineConfig
        The configuration the board was built with (checked against the identify reply).
    port : str or byte port
        A device name (opened with pyserial at ``baud``) or an object with ``write``/``read``.
    baud : int
    timeout : float
        Seconds without any byte from the board, while one is expected, before ``TimeoutError``.
    reset : bool
        Reset the engine when connecting (channel 3), so no stale results are pending.
    """

    def __init__(self, cfg: EngineConfig, port, *, baud: int = 115200, timeout: float = 10.0,
                 reset: bool = True):
        self.cfg = cfg
        if isinstance(port, str):
            try:
                import serial  # pyserial, only for a real port
            except ImportError as e:
                raise RuntimeError("a serial port needs pyserial: pip install pyserial") from e
            port = serial.Serial(port, baud, timeout=0.05)
        self.port = port
        self.timeout = timeout
        self.reset = reset
        self.connected = False
        self.fifo_depth = 0
        self.credit_unit = 0
        self.allowance = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.res_bytes = -(-cfg.res_width // 8)
        self.parser = UpstreamParser(self.res_bytes)

    # ---- byte level -----------------------------------------------------------------------------
    def _read_some(self) -> bytes:
        n = max(1, int(getattr(self.port, "in_waiting", 0) or 0))
        data = self.port.read(n)
        self.bytes_received += len(data)
        return data

    def _write(self, data: bytes) -> None:
        self.port.write(data)
        self.bytes_sent += len(data)

    def connect(self) -> dict:
        """Reset the engine (if asked), identify the bridge and start the credit count.

        Returns the identify reply's fields."""
        self._write((frame(Channel.RESET) if self.reset else b"") + frame(Channel.IDENTIFY))
        buf = bytearray()
        deadline = time.monotonic() + self.timeout
        while True:
            j = buf.find(IDENT_MAGIC)
            if j >= 0 and len(buf) >= j + len(IDENT_MAGIC) + 6:
                break
            data = self._read_some()
            if data:
                buf += data
                deadline = time.monotonic() + self.timeout
            elif time.monotonic() > deadline:
                raise TimeoutError("no identify reply from the board: check the port, the baud"
                                   " rate and that the bitstream is loaded")
        f = buf[j + len(IDENT_MAGIC):j + len(IDENT_MAGIC) + 6]
        info = {"version": f[0], "data_bytes": f[1], "res_bytes": f[2],
                "fifo_depth": f[3] | f[4] << 8, "credit_unit": f[5]}
        if info["version"] != PROTOCOL_VERSION:
            raise RuntimeError(f"board speaks framing version {info['version']}, this host"
                               f" {PROTOCOL_VERSION}")
        want = (-(-self.cfg.data_width // 8), self.res_bytes)
        if (info["data_bytes"], info["res_bytes"]) != want:
            raise RuntimeError(f"the board's engine has {info['data_bytes']} data bytes and"
                               f" {info['res_bytes']} result bytes, the configuration given"
                               f" {want[0]} and {want[1]}: the bitstream was built for another"
                               f" EngineConfig")
        self.fifo_depth, self.credit_unit = info["fifo_depth"], info["credit_unit"]
        self.allowance = self.fifo_depth
        self.parser = UpstreamParser(self.res_bytes)
        self.parser.feed(bytes(buf[j + len(IDENT_MAGIC) + 6:]))
        self.connected = True
        return info

    def _absorb(self, data: bytes) -> None:
        self.parser.feed(data)
        self.allowance += self.parser.credits * self.credit_unit
        self.parser.credits = 0

    def exchange(self, ex: Exchange) -> list[int]:
        """Send one exchange and return its ``n_results`` result words."""
        if not self.connected:
            self.connect()
        out = exchange_bytes(self.cfg, ex)
        pos = 0
        deadline = time.monotonic() + self.timeout
        while pos < len(out) or len(self.parser.results) < ex.n_results:
            if pos < len(out) and self.allowance > 0:
                n = min(self.allowance, len(out) - pos)
                self._write(out[pos:pos + n])
                pos += n
                self.allowance -= n
                continue
            data = self._read_some()
            if data:
                self._absorb(data)
                deadline = time.monotonic() + self.timeout
            elif time.monotonic() > deadline:
                raise TimeoutError(
                    f"board silent for {self.timeout} s: sent {pos}/{len(out)} bytes, got"
                    f" {len(self.parser.results)}/{ex.n_results} results")
        res = self.parser.results[:ex.n_results]
        del self.parser.results[:ex.n_results]
        return res

    def run(self, gen):
        return drive(gen, self.exchange)

    def close(self) -> None:
        close = getattr(self.port, "close", None)
        if close:
            close()


class AmaranthSerialPort:
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
        ``read`` gives up (returns ``b""``) after this many cycles without a byte.
    vcd : str or None
        Waveform file.
    watch : sequence of Signal
        Signals that :meth:`peek` may read (default: ``dut.error`` and ``dut.busy`` where present).
    """

    def __init__(self, dut, *, gap: float = 0.0, seed: int = 0, max_cycles: int = 2_000_000,
                 vcd: str | None = None, watch=None):
        import random

        from amaranth.sim import Simulator

        self.dut = dut
        self.div = int(dut.divisor)
        self.gap = gap
        self.rng = random.Random(seed)
        self.max_cycles = max_cycles
        self.period = 1e-8
        self.cycles = 0
        self.tx_queue = bytearray()
        self.rx_buf = bytearray()
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

    # ---- byte-port interface ----------------------------------------------------------------
    @property
    def in_waiting(self) -> int:
        return len(self.rx_buf)

    def write(self, data: bytes) -> int:
        self.tx_queue += data
        return len(data)

    def read(self, n: int = 1) -> bytes:
        step = 20 * self.div       # about two byte times per slice
        waited = 0
        while not self.rx_buf and waited < self.max_cycles:
            self.cycles += step
            waited += step
            self.sim.run_until(self.cycles * self.period)
        data = bytes(self.rx_buf[:n])
        del self.rx_buf[:n]
        return data

    def run_cycles(self, n: int) -> None:
        self.cycles += n
        self.sim.run_until(self.cycles * self.period)

    def close(self) -> None:
        if self._vcd is not None:
            self._vcd.__exit__(None, None, None)
            self._vcd = None
