"""The engine's command front-end: one command register in front of the dispatch, and a skid
register so that ``cmd.ready`` is a flip-flop (no combinational path from the dispatch's hazard
logic back to the command source)."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import isa

__all__ = ["CommandFrontEnd"]


class CommandFrontEnd(wiring.Component):
    """Holds the command being executed (``cur``) and at most one more (the skid register);
    commands that need not wait execute one per cycle.

    ``cmd.ready`` is a register (high while the skid register is empty), so the dispatch's
    ``done`` -- a function of the loader, sequencer, result stage and counters -- never reaches
    the command source (the UART bridge's parser) in the same cycle (ULX3S-85F worst path before
    this: front-end ``cur`` -> hazards -> ``done`` -> ``cmd.ready`` -> bridge ``expect`` enable,
    12.25 ns). A command accepted while ``cur`` is busy waits in the skid register and moves to
    ``cur`` in the cycle ``done`` frees it, i.e. in the same cycle as it would have been accepted
    without the skid register: the sequence of commands in ``cur`` and its timing are those of a
    single register whose ``ready`` is ``~pending | done``.

    Members
    -------
    cmd : In(stream.Signature(isa.CMD_WIDTH))
        Command words (``isa.Command``).
    cur : Out(isa.Command)
        The command being executed (valid while ``pending``).
    pending : Out(1)
        A command is held in ``cur``.
    queued : Out(1)
        A further command waits in the skid register.
    done : In(1)
        The held command completes this cycle.

    Latency (:attr:`latency`): 1 (a command accepted in a cycle where ``cur`` is free or
    completes is executed from the next; one accepted while ``cur`` waits, from the cycle after
    ``cur`` completes).
    """

    def __init__(self):
        super().__init__({
            "cmd": In(stream.Signature(isa.CMD_WIDTH)),
            "cur": Out(isa.Command),
            "pending": Out(1),
            "queued": Out(1),
            "done": In(1),
        })

    #: a command accepted in one cycle is executed from the next
    LATENCY = 1

    @property
    def latency(self) -> int:
        return self.LATENCY

    def elaborate(self, platform):
        m = Module()
        skid = Signal(isa.CMD_WIDTH)
        free = ~self.pending | self.done            # ``cur`` takes a command this cycle
        m.d.comb += self.cmd.ready.eq(~self.queued)
        with m.If(self.queued):
            with m.If(free):
                m.d.sync += [self.cur.eq(skid), self.pending.eq(1), self.queued.eq(0)]
        with m.Elif(self.cmd.valid):
            with m.If(free):
                m.d.sync += [self.cur.eq(self.cmd.payload), self.pending.eq(1)]
            with m.Else():
                m.d.sync += [skid.eq(self.cmd.payload), self.queued.eq(1)]
        with m.Elif(self.done):
            m.d.sync += self.pending.eq(0)
        return m
