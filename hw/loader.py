"""The data-beat loader shared by the engine and the int8 baseline: LOAD_W / LOAD_A / LOAD_PP write
the next ``count`` data beats into consecutive words of one memory (``docs/engine.md``)."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out

from . import isa
from .isa import Op

__all__ = ["DataLoader", "LOAD_TARGETS"]

#: member name of the write port each load op fills
LOAD_TARGETS = {Op.LOAD_W: "w", Op.LOAD_A: "a", Op.LOAD_PP: "pp"}


class DataLoader(wiring.Component):
    """Routes the beats of ``data`` into one memory write port, one beat per cycle while a load
    is active.

    Parameters
    ----------
    data_width : int
        Width of a data beat.
    ports : dict
        ``{Op.LOAD_W: (addr_width, word_width), ...}``: the memories a load can fill; each gets
        the low ``word_width`` bits of a beat.

    Members
    -------
    data : In(stream.Signature(data_width))
        Data beats, taken (``ready``) only while a load is active.
    start : In(1)
        Begin a load of ``count`` beats at ``addr`` into ``target`` (an op code); honoured only
        while no load is active.
    target, addr, count : In
        The load (``addr`` already includes the activation bank offset).
    active : Out(1)
        A load is taking beats.
    xfer : Out(1)
        A beat is taken this cycle.
    w, a, pp : In(WritePort.Signature(...))
        Write ports (driven here) of the memories named in ``ports`` (:data:`LOAD_TARGETS`).

    Latency: a beat is written in the cycle it is accepted; ``start`` takes effect the next cycle.
    """

    def __init__(self, data_width: int, ports: dict):
        self.data_width = data_width
        self.ports = dict(ports)
        members = {
            "data": In(stream.Signature(data_width)),
            "start": In(1),
            "target": In(2),                              # the op code: 1 W, 2 A, 3 PP
            "addr": In(isa.FIELDS["addr"][1] + 1),
            "count": In(isa.FIELDS["count"][1]),
            "active": Out(1),
            "xfer": Out(1),
        }
        for op, (aw, width) in self.ports.items():
            members[LOAD_TARGETS[op]] = In(WritePort.Signature(addr_width=aw, shape=width))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        target = Signal(2)
        addr = Signal(len(self.addr))
        left = Signal(len(self.count))
        m.d.comb += [
            self.data.ready.eq(self.active),
            self.xfer.eq(self.data.valid & self.data.ready),
        ]
        for op in self.ports:
            port = getattr(self, LOAD_TARGETS[op])
            m.d.comb += [port.addr.eq(addr), port.data.eq(self.data.payload[:len(port.data)]),
                         port.en.eq(self.xfer & (target == op))]
        with m.If(self.xfer):
            m.d.sync += [addr.eq(addr + 1), left.eq(left - 1)]
            with m.If(left == 1):
                m.d.sync += self.active.eq(0)
        with m.If(self.start):
            m.d.sync += [target.eq(self.target), addr.eq(self.addr), left.eq(self.count),
                         self.active.eq(self.count != 0)]
        return m


assert (Op.LOAD_W, Op.LOAD_A, Op.LOAD_PP) == (1, 2, 3)      # ``target`` holds the op's low bits
