"""The driver's exchanges carried to the generated Verilog under cocotb (Icarus or Verilator).

Python touches the design only per stream beat, never per idle cycle: a producer blocked by a low
``ready`` sleeps until ``ready`` rises, the result collector sleeps until ``valid`` rises, and the
array computes free-running in between. Every beat is driven on the falling clock edge, and the
rising edge performs exactly the transfers that were seen there: one simulator callback per beat.
At a falling edge the design's outputs hold what the rising edge before left (nothing changes on
the falling edge), so the sink reads ``valid`` and the payload right there (a stream's ``valid``
and payload never depend on ``ready``), and a source whose ``ready`` is already high there drives
its beat knowing it is taken (``ready`` never falls because ``valid`` rises); only a source seeing
``ready`` low waits for its own ``valid`` to settle (``ReadOnly``) before it concludes that the
beat must wait (``ready`` may depend on ``valid``).

Pauses, as in cocotbext's sources and sinks, come from two separate *pause generators*: ``idle``
(the sources: an idle cycle before an input beat, ``valid`` low) and ``backpressure`` (the sink:
``ready`` low on a result cycle). Each is an iterator of booleans (True: pause this cycle), e.g.
:func:`random_pauses` or ``itertools.cycle([1, 0, 0])``; a float is a probability. ``stall`` sets
both to the same probability (the older single knob).
"""

from __future__ import annotations

import itertools
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

from ..hw import isa
from .transport import Exchange

__all__ = ["CocotbEngine", "random_pauses", "pauses"]


async def start_and_reset(dut, period_ns: int, idle: dict) -> Clock:
    """Start cocotb's C++ clock on ``dut.clk`` (toggled by the simulator interface, no Python per
    edge; returned: keep it referenced while it runs), set the ``idle`` input values, hold
    ``rst`` for 3 cycles and release it at a falling edge."""
    clock = Clock(dut.clk, period_ns, unit="ns", impl="gpi")
    clock.start()
    for name, value in idle.items():
        getattr(dut, name).value = value
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    return clock


def random_pauses(p: float, seed: int = 0):
    """An endless pause generator: True with probability ``p`` on every cycle."""
    if not 0 <= p < 1:
        raise ValueError(f"a pause probability must be in [0, 1), not {p!r}")
    rng = random.Random(seed)
    while True:
        yield bool(p) and rng.random() < p


def pauses(spec, seed: int = 0):
    """A pause generator from ``spec``: None or 0 (never), a probability, or an iterable of
    booleans (used as given, e.g. ``itertools.cycle([1, 0])``)."""
    if spec is None:
        return itertools.repeat(False)
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return random_pauses(float(spec), seed)
    return iter(spec)


class CocotbEngine:
    """One ``pnn_engine`` instance under cocotb: clock edges, reset, exchanges.

    ``idle`` and ``backpressure`` are the source and sink pause generators (module docstring);
    ``stall`` is the probability used for whichever of them is not given."""

    def __init__(self, dut, *, stall: float = 0.0, seed: int = 0, idle=None, backpressure=None):
        self.dut = dut
        self.clk = dut.clk
        self.stall = stall
        self.idle = pauses(stall if idle is None else idle, seed)
        self.backpressure = pauses(stall if backpressure is None else backpressure, seed + 1)
        self._tasks = []
        self.fault = 0  # > 0: flip a result bit in the fault-th result word (judge self-test)
        self.clock = None  # the cocotb Clock a bench started on ``clk``, kept referenced here

    async def reset(self, cycles: int = 3) -> None:
        dut = self.dut
        await FallingEdge(self.clk)
        for name in ("cmd__valid", "data__valid", "res__ready"):
            if hasattr(dut, name):           # a resident engine has no data stream
                getattr(dut, name).value = 0
        dut.rst.value = 1
        for _ in range(cycles):
            await FallingEdge(self.clk)
        dut.rst.value = 0

    async def _feed(self, prefix: str, words: list[int]) -> None:
        if not words:
            return
        dut = self.dut
        valid = getattr(dut, f"{prefix}__valid")
        ready = getattr(dut, f"{prefix}__ready")
        payload = getattr(dut, f"{prefix}__payload")
        i = 0
        await FallingEdge(self.clk)
        while i < len(words):
            if next(self.idle):  # an idle cycle between beats (valid never drops mid-beat)
                valid.value = 0
                await FallingEdge(self.clk)
                continue
            payload.value = words[i]
            valid.value = 1
            if ready.value != 1:                 # as the last rising edge left it: look again
                await ReadOnly()                 # once valid settled (ready may follow valid)
                while ready.value != 1:
                    await RisingEdge(ready)      # sleep while the engine holds back
                    await FallingEdge(self.clk)  # settled: nothing written since
            await FallingEdge(self.clk)          # the rising edge in between took the beat
            i += 1
        valid.value = 0

    async def _collect(self, n: int, out: list[int]) -> None:
        dut = self.dut
        await FallingEdge(self.clk)
        while len(out) < n:
            ready = not next(self.backpressure)
            dut.res__ready.value = int(ready)
            if dut.res__valid.value != 1:         # as the last rising edge left it
                await RisingEdge(dut.res__valid)  # sleep until a beat is offered
                await FallingEdge(self.clk)
                continue
            if ready:
                word = int(dut.res__payload.value)
                if self.fault:
                    self.fault -= 1
                    if not self.fault:
                        word ^= 1 << isa.BEAT_BODY_LO     # the first value's lowest bit
                out.append(word)
            await FallingEdge(self.clk)
        dut.res__ready.value = 0

    async def exchange(self, ex: Exchange) -> list[int]:
        out: list[int] = []
        self._tasks = [cocotb.start_soon(self._feed("cmd", ex.cmds)),
                       cocotb.start_soon(self._feed("data", ex.data)),
                       cocotb.start_soon(self._collect(ex.n_results, out))]
        for t in self._tasks:
            await t
        self._tasks = []
        return out

    def abort(self) -> None:
        """Stop the stream drivers of an exchange in flight (before a reset in mid-job)."""
        for t in self._tasks:
            t.cancel()
        self._tasks = []

    async def run(self, gen):
        """Drive a driver generator (``sim/driver.py``) to completion; return its value."""
        try:
            ex = next(gen)
            while True:
                ex = gen.send(await self.exchange(ex))
        except StopIteration as stop:
            return stop.value
