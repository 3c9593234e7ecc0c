"""UART, bridge framing and the serial transport, in the Amaranth simulator.

The bridge is checked around a stand-in engine that echoes every command and data beat as a result
word (with random back-pressure on all three streams) and, when the engine exists, around the real
engine with the host driver, bit-exact against the golden model.
"""

import random

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from progressivenn.hw.boards import EngineOverUART
from progressivenn.hw.isa import EngineConfig
from progressivenn.hw.uart import UARTBridge, UARTRx, UARTTx, divisor_for
from progressivenn.sim.serial_transport import (AmaranthSerialPort, SerialTransport,
                                                UpstreamParser, exchange_bytes, frame)
from progressivenn.sim.transport import Exchange

# A small engine configuration: narrow words keep the serial simulation short.
# One post-processing lane shared over the 2 rows, as on the boards.
CFG = EngineConfig(rows=2, cols=4, abits=8, nbits=4, max_reduction=64, mbits=16, bbits=24,
                   obits=20, wdepth=64, adepth=32, ppdepth=16, accdepth=16, pp_lanes=1)


class EchoEngine(wiring.Component):
    """Stand-in with the engine's ports: every cmd word c comes back as ``c << 8 | 1``, every data
    beat d as ``d << 8 | 2`` (truncated to the result width), in arrival order. An LFSR holds
    ``ready`` low on the inputs and delays results at random."""

    def __init__(self, cfg: EngineConfig):
        self.cfg = cfg
        super().__init__({
            "cmd": In(stream.Signature(64)),
            "data": In(stream.Signature(cfg.data_width)),
            "res": Out(stream.Signature(cfg.res_width)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        lfsr = Signal(16, init=0xACE1)
        m.d.sync += lfsr.eq((lfsr << 1) | (lfsr[15] ^ lfsr[13] ^ lfsr[12] ^ lfsr[10]))
        full = Signal()
        hold = Signal(4)
        accept = Signal()
        m.d.comb += [accept.eq(~full & (lfsr[:2] != 0)), self.busy.eq(full)]
        with m.If(full & (hold != 0)):
            m.d.sync += hold.eq(hold - 1)
        m.d.comb += self.res.valid.eq(full & (hold == 0))
        with m.If(self.res.valid & self.res.ready):
            m.d.sync += full.eq(0)
        m.d.comb += self.cmd.ready.eq(accept)
        m.d.comb += self.data.ready.eq(accept & ~self.cmd.valid)
        with m.If(self.cmd.valid & accept):
            m.d.sync += [self.res.payload.eq((self.cmd.payload << 8) | 1), full.eq(1),
                         hold.eq(lfsr[4:8])]
        with m.Elif(self.data.valid & accept):
            m.d.sync += [self.res.payload.eq((self.data.payload << 8) | 2), full.eq(1),
                         hold.eq(lfsr[4:8])]
        return m


def _echo(cfg, word, tag):
    return ((word << 8) | tag) & ((1 << cfg.res_width) - 1)


# ---- UART alone -----------------------------------------------------------------------------------

@pytest.mark.parametrize("divisor", [2, 3, 7])
def test_uart_loopback(divisor):
    m = Module()
    m.submodules.tx = tx = UARTTx(divisor)
    m.submodules.rx = rx = UARTRx(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    data = [random.Random(divisor).randrange(256) for _ in range(40)]
    got = []
    sim = Simulator(m)
    sim.add_clock(1e-8)

    async def send(ctx):
        for b in data:
            ctx.set(tx.i.payload, b)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
            ctx.set(tx.i.valid, 0)

    async def recv(ctx):
        ctx.set(rx.o.ready, 1)
        while len(got) < len(data):
            _, _, valid, payload = await ctx.tick().sample(rx.o.valid, rx.o.payload)
            if valid:
                got.append(payload)
        assert not ctx.get(rx.overrun) and not ctx.get(rx.frame_error)

    sim.add_testbench(send)
    sim.add_testbench(recv)
    sim.run()
    assert got == data


def test_divisor_and_bad_parameters():
    import gc
    import warnings

    assert divisor_for(12e6, 115200) == 104
    assert divisor_for(25e6, 115200) == 217
    with pytest.raises(ValueError, match="off by"):
        divisor_for(1e6, 300000)
    with warnings.catch_warnings():     # the refused components are never elaborated
        warnings.filterwarnings("ignore", message=".*created but never used")
        with pytest.raises(ValueError, match="divisor"):
            UARTRx(1)
        with pytest.raises(ValueError, match="fifo_depth"):
            UARTBridge(divisor=4, data_width=8, res_width=8, fifo_depth=100)
        with pytest.raises(ValueError, match="data_width"):
            UARTBridge(divisor=4, data_width=3000, res_width=8)
        gc.collect()


# ---- host-side framing ----------------------------------------------------------------------------

def test_frames_and_exchange_order():
    from progressivenn.hw.uart import crc16
    assert crc16(b"123456789") == 0x29B1                 # the CRC-16/CCITT-FALSE check value
    assert frame(1, 0) == b"\xa5\x01\x00\x00" + crc16(b"\x01\x00\x00").to_bytes(2, "big")
    assert frame(2, 0x1234, seq=7)[:7] == b"\xa5\x02\x07\x02\x34\x12" + bytes([
        crc16(b"\x02\x07\x02\x34\x12") >> 8])
    with pytest.raises(ValueError):
        frame(2, 1 << 9, width=8)
    from progressivenn.hw import isa
    cmds = [isa.cmd_load_w(0, 2), isa.cmd_run(bank=0, relu=True, k_start=0, k_end=1, wplanes=1,
                                              ngroups=1, nchunks=1, npos=1),
            isa.cmd_load_a(1, 0, 1)]
    got = exchange_bytes(CFG, Exchange(cmds, [5, 6, 7, 8], 0), seq=250)
    want = (frame(1, cmds[0], seq=250) + frame(2, 5, seq=251) + frame(2, 6, seq=252)
            + frame(1, cmds[1], seq=253) + frame(1, cmds[2], seq=254) + frame(2, 7, seq=255)
            + frame(2, 8, seq=0))
    assert got == want


def _msg(tag, seq, body=b""):
    from progressivenn.hw.uart import crc16
    head = bytes([tag, seq, len(body)]) + body
    return b"\x5a" + head + crc16(head).to_bytes(2, "big")


def test_upstream_parser_resynchronises():
    p = UpstreamParser(3)
    good = _msg(1, 0, b"\x01\x02\x03") + _msg(2, 1)
    p.feed(b"\x00\xff" + good[:5])
    p.feed(good[5:] + b"\x5a\x01\x01\x03zzzzz" + _msg(2, 2))   # a damaged candidate, then one more
    assert [(m.tag, m.seq, m.body) for m in p.messages] == [(1, 0, b"\x01\x02\x03"), (2, 1, b""),
                                                            (2, 2, b"")]
    assert p.bad == 1 and p.garbage >= 2


# ---- bridge round trip through the serial transport ----------------------------------------------

def _echo_transport(*, fifo_depth, credit_unit, gap, seed, timeout=0):
    dut = EngineOverUART(CFG, divisor=3, engine=EchoEngine(CFG), fifo_depth=fifo_depth,
                         credit_unit=credit_unit, timeout=timeout)
    port = AmaranthSerialPort(dut, gap=gap, seed=seed, max_cycles=200_000)
    return dut, port, SerialTransport(CFG, port, timeout=30.0)


@pytest.mark.parametrize("fifo_depth,credit_unit,gap", [(16, 4, 0.3), (512, 32, 0.0)])
def test_bridge_round_trip_with_stalls(fifo_depth, credit_unit, gap):
    rng = random.Random(fifo_depth)
    _, port, tr = _echo_transport(fifo_depth=fifo_depth, credit_unit=credit_unit, gap=gap,
                                  seed=fifo_depth)
    info = tr.connect()
    assert info == {"version": 2, "data_bytes": -(-CFG.data_width // 8),
                    "res_bytes": -(-CFG.res_width // 8), "fifo_depth": fifo_depth,
                    "credit_unit": credit_unit}

    def gen():
        for _ in range(3):
            # random widths: zero words, one-byte words, full-width words
            cmds = [rng.choice([0, rng.getrandbits(8), rng.getrandbits(64)]) | 0xF  # op 15: no data
                    for _ in range(6)]
            data = [rng.choice([0, rng.getrandbits(5), rng.getrandbits(CFG.data_width)])
                    for _ in range(10)]
            got = yield Exchange(cmds, data, len(cmds) + len(data))
            want = [_echo(CFG, c, 1) for c in cmds] + [_echo(CFG, d, 2) for d in data]
            assert got == want
        return "done"

    assert tr.run(gen()) == "done"
    port.run_cycles(40 * 3 * (fifo_depth // credit_unit + 2))   # the last credits come home
    if port.in_waiting:
        for msg in tr._drain():
            tr._take(msg)
    # every byte sent is credited back once popped (less the partial unit), nothing was lost
    assert fifo_depth - credit_unit < tr.allowance <= fifo_depth
    assert port.peek(port.dut.error) == 0


def test_bridge_never_overruns_and_resyncs_after_a_torn_frame():
    dut, port, tr = _echo_transport(fifo_depth=16, credit_unit=4, gap=0.0, seed=3, timeout=400)
    tr.connect()
    port.write(frame(2, 0x1122334455, seq=tr.seq)[:6])   # a torn data frame: the rest never comes
    port.run_cycles(2000)                    # > timeout: the parser drops it
    tr.connected = False                     # reconnect: reset + identify
    assert tr.connect()["fifo_depth"] == 16
    assert tr.exchange(Exchange([0xABF], [], 1)) == [_echo(CFG, 0xABF, 1)]
    assert port.peek(dut.error) == 0


# ---- the real engine over the serial link, bit-exact with the golden model ------------------------

def test_engine_over_uart_matches_golden_at_two_k():
    from bundles import random_bundle
    from progressivenn.sim.compare import compare_outputs, golden_outputs
    from progressivenn.sim.driver import check_fits, infer

    b = random_bundle(seed=5, nbits=4, input_shape=(1, 4, 4), channels=(3, 2), classes=3)
    check_fits(b, CFG)
    dut = EngineOverUART(CFG, divisor=2)
    port = AmaranthSerialPort(dut, gap=0.1, seed=1)
    tr = SerialTransport(CFG, port)
    for k in (1, 3):
        gold = golden_outputs(b, b.test_x[:1], k)
        res = tr.run(infer(b, CFG, b.test_x[0], k))
        cmp = compare_outputs(b, res.outputs, [g[0] for g in gold], k=k, image=0)
        assert cmp.mismatches == 0, cmp.first
        assert cmp.compared == sum(g[0].size for g in gold)
        assert res.counters["busy"] == res.ideal_cycles
    assert port.peek(dut.error) == 0


class StuckEngine(EchoEngine):
    """Never takes a command: the bridge's FIFO fills up."""

    def elaborate(self, platform):
        return Module()


def test_host_ignoring_credits_is_flagged_as_overrun():
    dut = EngineOverUART(CFG, divisor=2, engine=StuckEngine(CFG), fifo_depth=16, credit_unit=4)
    port = AmaranthSerialPort(dut)
    port.write(frame(1, 0x5) * 4)           # 28 bytes > 16 + 1 held: the host ignored credits
    port.run_cycles(28 * 10 * 2 + 100)
    assert port.peek(dut.error) == 1


@pytest.mark.slow
def test_trained_digits_over_uart_on_the_icebreaker_engine(tmp_path):
    """A trained digits network (3 epochs: bit-exactness, not accuracy, is the point), exported
    as usual (18-bit M), on the iCEBreaker's engine (4 x 8, one shared post-processing lane), one
    test image at k = 2 and k = 8 through the UART
    bridge in simulation, bit-exact with the golden model (about 2.5 min per k)."""
    from progressivenn.cli import main
    from progressivenn.hw.boards import ICEBREAKER_CFG
    from progressivenn.model.bundle import load_bundle
    from progressivenn.sim.compare import compare_outputs, golden_outputs
    from progressivenn.sim.driver import check_fits, infer

    run, bundle = tmp_path / "run", tmp_path / "bundle"
    assert main(["train", "--epochs", "3", "--threads", "1", "--quiet", "--out", str(run)]) == 0
    assert main(["retrain-bn", str(run), "--threads", "1", "--quiet"]) == 0
    assert main(["export", str(run), "--out", str(bundle)]) == 0
    b = load_bundle(bundle)
    cfg = ICEBREAKER_CFG
    check_fits(b, cfg)
    dut = EngineOverUART(cfg, divisor=2)
    tr = SerialTransport(cfg, AmaranthSerialPort(dut))
    for k in (2, 8):
        gold = golden_outputs(b, b.test_x[:1], k)
        res = tr.run(infer(b, cfg, b.test_x[0], k))
        cmp = compare_outputs(b, res.outputs, [g[0] for g in gold], k=k, image=0)
        assert cmp.mismatches == 0, cmp.first
        assert res.counters["busy"] == res.ideal_cycles
