"""Issue 13, link integrity: faults injected on the serial link (bit flips, dropped, duplicated and
inserted bytes, host -> board and board -> host) around the RTL bridge in the Amaranth simulator.
Every fault is either tolerated (the exchange still returns the right words) or detected
(LinkError); a wrong result never comes back. Plus the host's parser and deadlines against
hostile byte streams (hypothesis), and the bridge recovering after random bytes."""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from progressivenn.hw.boards import EngineOverUART
from progressivenn.hw.uart import Tag, crc16
from progressivenn.sim.serial_transport import (AmaranthSerialPort, FaultyPort, LinkError,
                                                SerialTransport, UpstreamParser)
from progressivenn.sim.transport import Exchange

from test_uart import CFG, EchoEngine, _echo

CYCLE = 1e-8                          # the simulated clock period of AmaranthSerialPort


def _link(seed, *, rate=0.0, down=True, up=True):
    dut = EngineOverUART(CFG, divisor=3, engine=EchoEngine(CFG), fifo_depth=64, credit_unit=8,
                         timeout=400)
    port = AmaranthSerialPort(dut, seed=seed, max_cycles=1500,
                              watch=[dut.bridge.bad_frames, dut.bridge.seq_errors])
    faulty = FaultyPort(port, rate=rate, seed=seed, down=down, up=up)
    tr = SerialTransport(CFG, faulty, timeout=30_000 * CYCLE, probe=2_000 * CYCLE)
    return dut, port, faulty, tr


def _random_exchange(rng):
    cmds = [rng.choice([rng.getrandbits(8), rng.getrandbits(64)]) | 0xF for _ in range(2)]
    data = [rng.getrandbits(CFG.data_width) for _ in range(2)]
    want = [_echo(CFG, c, 1) for c in cmds] + [_echo(CFG, d, 2) for d in data]
    return Exchange(cmds, data, len(want)), want


def run_faults(exchanges: int, *, rate: float, down: bool, up: bool, seed: int) -> dict:
    """Run ``exchanges`` exchanges with faults armed; count what happened."""
    rng = random.Random(seed)
    dut, port, faulty, tr = _link(seed, rate=rate, down=down, up=up)
    n = {"exchanges": 0, "faulted": 0, "injected": 0, "detected": 0, "tolerated": 0, "wrong": 0,
         "clean_ok": 0}
    for _ in range(exchanges):
        faulty.armed = False
        if not tr.connected:
            tr.connect()                      # a clean reconnect after a detected fault
        ex, want = _random_exchange(rng)
        before = faulty.total()
        faulty.armed = True
        try:
            got = tr.exchange(ex)
            err = None
        except LinkError as e:
            got, err = None, e
        faulty.armed = False
        injected = faulty.total() - before
        n["exchanges"] += 1
        n["injected"] += injected
        if injected:
            n["faulted"] += 1
        if err is not None:
            n["detected"] += 1
        elif got != want:
            n["wrong"] += 1
        elif injected:
            n["tolerated"] += 1
        else:
            n["clean_ok"] += 1
    n["board_bad_frames"] = port.peek(dut.bridge.bad_frames)
    n["board_seq_errors"] = port.peek(dut.bridge.seq_errors)
    n["by_kind"] = {k: v for k, v in faulty.injected.items() if v}
    return n


def _check(n):
    print(f"\nlink faults: {n}")
    assert n["wrong"] == 0
    assert n["injected"] > 0 and n["detected"] > 0
    # no error without a fault: every detection has a cause
    assert n["detected"] + n["tolerated"] <= n["faulted"]
    assert n["clean_ok"] + n["faulted"] == n["exchanges"]


@pytest.mark.parametrize("direction", ["down", "up"])
def test_faults_never_give_a_wrong_result(direction):
    n = run_faults(5, rate=0.03, down=direction == "down", up=direction == "up", seed=11)
    _check(n)
    if direction == "down":                  # the board dropped what it could not trust
        assert n["board_bad_frames"] + n["board_seq_errors"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("direction", ["down", "up", "both"])
def test_faults_never_give_a_wrong_result_many(direction):
    n = run_faults(60, rate=0.02, down=direction != "up", up=direction != "down", seed=5)
    _check(n)


# ---- the host against hostile byte streams ----------------------------------------------------

class FakeBoard:
    """A byte port whose 'board' sends ``chunk`` forever (each read advances a fake clock)."""

    baud = 115200.0

    def __init__(self, chunk_fn):
        self.chunk_fn = chunk_fn
        self.t = 0.0
        self.sent = bytearray()

    def clock(self):
        return self.t

    def write(self, data):
        self.sent += data
        return len(data)

    def read(self, n=1):
        self.t += 0.001
        return self.chunk_fn()

    in_waiting = 0


def _msg(tag, seq, body=b""):
    head = bytes([tag, seq & 0xFF, len(body)]) + body
    return b"\x5a" + head + crc16(head).to_bytes(2, "big")


def test_garbage_cannot_hold_connect_forever():
    rng = random.Random(1)
    port = FakeBoard(lambda: bytes(rng.randrange(256) for _ in range(32)))
    tr = SerialTransport(CFG, port, timeout=0.5)
    with pytest.raises(TimeoutError, match="no identify reply"):
        tr.connect()
    assert port.t < 0.5 + 40 / port.baud * 64 * 3 + 0.01      # one deadline, not reset by bytes
    assert tr.link["identify_retries"] == 2


def _connected(port_fn):
    """A transport that believes it is connected to a board sending ``port_fn()`` forever."""
    port = FakeBoard(port_fn)
    tr = SerialTransport(CFG, port, timeout=0.5)
    tr.connected, tr.fifo_depth, tr.credit_unit, tr.allowance = True, 64, 8, 64
    return port, tr


def test_endless_credits_are_bounded_and_the_exchange_has_one_deadline():
    seq = iter(range(10 ** 9))
    port, tr = _connected(lambda: b"".join(_msg(Tag.CREDIT, next(seq)) for _ in range(4)))
    with pytest.raises(LinkError, match="deadline"):
        tr.exchange(Exchange([0xF], [], 1))
    assert tr.allowance <= tr.fifo_depth
    assert port.t < 0.6


def test_duplicated_or_lost_message_is_detected():
    msgs = iter([_msg(Tag.RESULT, 0, bytes(9)), _msg(Tag.RESULT, 0, bytes(9))])
    port, tr = _connected(lambda: next(msgs, b""))
    with pytest.raises(LinkError, match="message #1 lost or damaged"):
        tr.exchange(Exchange([0xF, 0x1F], [], 2))
    assert not tr.connected


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.binary(max_size=40), max_size=30))
def test_parser_on_random_streams(chunks):
    p = UpstreamParser(9)
    for c in chunks:
        p.feed(c)
        assert len(p.buf) < 6 + 255                       # never more than one message held
    for m in p.messages:
        assert m.tag in p.lengths and len(m.body) == p.lengths[m.tag]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=12)), max_size=20))
def test_parser_finds_real_messages_between_garbage(parts):
    """Garbage without a start byte between real messages never hides one."""
    p = UpstreamParser(9)
    want = []
    for i, (real, junk) in enumerate(parts):
        p.feed(junk.replace(b"\x5a", b"\x00"))
        if real:
            want.append(i)
            p.feed(_msg(Tag.RESULT, i, bytes([i]) * 9))
    assert [m.seq for m in p.messages] == want


# ---- the RTL bridge recovers from random bytes -------------------------------------------------

@pytest.fixture(scope="module")
def shared_link():
    dut, port, faulty, tr = _link(3)
    tr.connect()
    return dut, port, tr


def _recovers(shared_link, junk):
    dut, port, tr = shared_link
    port.write(junk)
    port.run_cycles(30 * 3 * len(junk) + 500)
    tr.connected = False
    tr.connect()
    ex, want = _random_exchange(random.Random(len(junk)))
    assert tr.exchange(ex) == want


@settings(max_examples=4, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=1, max_size=48))
def test_bridge_recovers_after_identify(shared_link, junk):
    _recovers(shared_link, junk)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=1, max_size=200))
def test_bridge_recovers_after_identify_many(shared_link, junk):
    _recovers(shared_link, junk)
