"""How the host driver talks to an engine: exchanges of command words, data beats and results.

The driver (``sim/driver.py``) is written "sans I/O": it is a generator that yields an
:class:`Exchange` per step and is sent back the result words of that step. A transport carries the
exchanges to an engine, wherever it runs:

- :class:`AmaranthTransport` — the Amaranth simulator, in this process (tests, no Verilog needed);
- ``sim/cocotb_transport.py`` — the generated Verilog under cocotb (Icarus or Verilator);
- ``sim/serial_transport.py`` — a board's UART bridge (or its simulation).

Every transport feeds the command and data streams concurrently (the engine takes data beats in the
order its LOAD commands ask for them) and collects exactly ``n_results`` result words.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Generator, TypeVar

from ..hw.isa import EngineConfig

__all__ = ["Exchange", "Transport", "AmaranthTransport", "drive"]

R = TypeVar("R")


@dataclass
class Exchange:
    """One step of the driver: send ``cmds`` and ``data``, then return ``n_results`` result words."""

    cmds: list[int] = field(default_factory=list)
    data: list[int] = field(default_factory=list)
    n_results: int = 0


def drive(gen: Generator[Exchange, list[int], R], exchange) -> R:
    """Run driver generator ``gen`` to completion with ``exchange(ex) -> list[int]``."""
    try:
        ex = next(gen)
        while True:
            ex = gen.send(exchange(ex))
    except StopIteration as stop:
        return stop.value


class Transport(ABC):
    """Carries exchanges to one engine of configuration ``cfg``."""

    cfg: EngineConfig

    @abstractmethod
    def run(self, gen: Generator[Exchange, list[int], R]) -> R:
        """Drive the generator to completion; return its value."""


class AmaranthTransport(Transport):
    """The engine in the Amaranth simulator (pure Python; for tests and small networks).

    Parameters
    ----------
    cfg : EngineConfig
    stall : float
        Probability of holding ``valid`` (inputs) or ``ready`` (results) low on a cycle: random
        back-pressure on every stream.
    seed : int
    max_cycles : int
        Upper bound on the cycles of one exchange; a hang raises ``TimeoutError``.
    vcd : str or None
        Write a waveform file.
    component : callable or None
        ``component(cfg)`` builds the design to simulate (its ``cmd``/``data``/``res`` streams as
        the engine's); default ``hw.engine.Engine``. E.g. ``hw.baseline.MACArray`` for the
        bit-parallel baseline (drive it with ``infer(..., baseline=True)``).

    ``cycles`` counts the clock cycles of every exchange run so far (all of them, counters or not).
    """

    def __init__(self, cfg: EngineConfig, *, stall: float = 0.0, seed: int = 0,
                 max_cycles: int = 2_000_000, vcd: str | None = None, component=None):
        self.cfg = cfg
        self.component = component
        self.stall = stall
        self.seed = seed
        self.max_cycles = max_cycles
        self.vcd = vcd
        self.cycles = 0

    def run(self, gen):
        from amaranth.sim import Simulator

        from ..hw.engine import Engine

        dut = (self.component or Engine)(self.cfg)
        rng = random.Random(self.seed)
        box = {}
        sim = Simulator(dut)
        sim.add_clock(1e-8)

        async def bench(ctx):
            try:
                ex = next(gen)
                while True:
                    ex = gen.send(await self._exchange(ctx, dut, ex, rng))
            except StopIteration as stop:
                box["value"] = stop.value

        sim.add_testbench(bench)
        if self.vcd:
            with sim.write_vcd(self.vcd):
                sim.run()
        else:
            sim.run()
        return box["value"]

    async def _exchange(self, ctx, dut, ex: Exchange, rng) -> list[int]:
        """Feed ``ex.cmds`` and ``ex.data`` concurrently and collect ``ex.n_results`` words."""
        cmds, data = list(ex.cmds), list(ex.data)
        ci = di = 0
        out: list[int] = []
        stall = self.stall
        for _ in range(self.max_cycles):
            if ci >= len(cmds) and di >= len(data) and len(out) >= ex.n_results:
                break
            cv = ci < len(cmds) and not (stall and rng.random() < stall)
            dv = di < len(data) and not (stall and rng.random() < stall)
            rr = len(out) < ex.n_results and not (stall and rng.random() < stall)
            ctx.set(dut.cmd.valid, cv)
            if cv:
                ctx.set(dut.cmd.payload, cmds[ci])
            ctx.set(dut.data.valid, dv)
            if dv:
                ctx.set(dut.data.payload, data[di])
            ctx.set(dut.res.ready, rr)
            _, _, c_rdy, d_rdy, r_vld, r_pay = await ctx.tick().sample(
                dut.cmd.ready, dut.data.ready, dut.res.valid, dut.res.payload)
            self.cycles += 1
            if cv and c_rdy:
                ci += 1
            if dv and d_rdy:
                di += 1
            if rr and r_vld:
                out.append(r_pay)
        else:
            raise TimeoutError(
                f"engine did not finish the exchange in {self.max_cycles} cycles: sent"
                f" {ci}/{len(cmds)} commands, {di}/{len(data)} data beats, got"
                f" {len(out)}/{ex.n_results} results")
        ctx.set(dut.cmd.valid, 0)
        ctx.set(dut.data.valid, 0)
        ctx.set(dut.res.ready, 0)
        return out
