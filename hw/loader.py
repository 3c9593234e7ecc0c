"""The data-beat loader shared by the engine and the int8 baseline: LOAD_W / LOAD_A / LOAD_PP write
the next ``count`` data beats into consecutive words of one memory (``docs/engine.md``)."""

from __future__ import annotations

from amaranth.hdl import Module, Signal

from . import isa
from .isa import Op

__all__ = ["DataLoader"]


class DataLoader:
    """Routes the beats of ``data`` (an ``In(stream.Signature(DW))`` member) into memory write
    ports, one beat per cycle while a load is active.

    ``ports`` maps a load op code (``Op.LOAD_W``, ``Op.LOAD_A``, ``Op.LOAD_PP``) to the write port
    of its memory; each gets the low bits of the beat (its word width) and the load's address.

    Signals: ``active`` (a load is taking beats), ``xfer`` (a beat is taken this cycle).
    Latency: a beat is written in the cycle it is accepted; ``start`` takes effect the next cycle.
    """

    def __init__(self, m: Module, data, ports: dict):
        self.active = Signal(name="ld_active")
        self.target = Signal(2, name="ld_target")           # the op code: 1 W, 2 A, 3 PP
        self.addr = Signal(isa.FIELDS["addr"][1] + 1, name="ld_addr")
        self.left = Signal(isa.FIELDS["count"][1], name="ld_left")
        m.d.comb += data.ready.eq(self.active)
        self.xfer = data.valid & data.ready
        for op, port in ports.items():
            m.d.comb += [port.addr.eq(self.addr), port.data.eq(data.payload[:len(port.data)]),
                         port.en.eq(self.xfer & (self.target == op))]
        with m.If(self.xfer):
            m.d.sync += [self.addr.eq(self.addr + 1), self.left.eq(self.left - 1)]
            with m.If(self.left == 1):
                m.d.sync += self.active.eq(0)

    def start(self, target, addr, count) -> list:
        """Statements (for ``m.d.sync``) that begin a load of ``count`` beats at ``addr``."""
        return [self.target.eq(target), self.addr.eq(addr), self.left.eq(count),
                self.active.eq(count != 0)]


assert (Op.LOAD_W, Op.LOAD_A, Op.LOAD_PP) == (1, 2, 3)      # ``target`` holds the op's low bits
