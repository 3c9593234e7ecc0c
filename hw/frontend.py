"""The engine's command front-end: one command register in front of the dispatch."""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import isa

__all__ = ["CommandFrontEnd"]


class CommandFrontEnd(wiring.Component):
    """Holds the command being executed; accepts the next one in the cycle it completes, so
    commands that need not wait execute one per cycle.

    Members
    -------
    cmd : In(stream.Signature(isa.CMD_WIDTH))
        Command words (``isa.Command``).
    cur : Out(isa.Command)
        The command being executed (valid while ``pending``).
    pending : Out(1)
        A command is held.
    done : In(1)
        The held command completes this cycle.

    Latency (:attr:`latency`): 1 (a command accepted in one cycle is executed from the next).
    """

    def __init__(self):
        super().__init__({
            "cmd": In(stream.Signature(isa.CMD_WIDTH)),
            "cur": Out(isa.Command),
            "pending": Out(1),
            "done": In(1),
        })

    #: a command accepted in one cycle is executed from the next
    LATENCY = 1

    @property
    def latency(self) -> int:
        return self.LATENCY

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.cmd.ready.eq(~self.pending | self.done)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [self.pending.eq(1), self.cur.eq(self.cmd.payload)]
        with m.Elif(self.done):
            m.d.sync += self.pending.eq(0)
        return m
