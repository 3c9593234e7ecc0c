"""The engine's performance counters and the counter beats READ_COUNTERS sends
(``docs/engine.md`` "Counters")."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from . import isa
from .isa import EngineConfig, Kind

__all__ = ["Counters", "events_layout"]

#: one event bit per counter, in counter index order (``isa.Counter.NAMES``)
events_layout = data.StructLayout({name: 1 for name in isa.Counter.NAMES})


class Counters(wiring.Component):
    """The event counters of ``cfg.counter_set`` (``cfg.counter_names``: the six of
    ``Counter.NAMES`` by default, ``total`` only, or none), ``cfg.counter_bits`` bits each; on
    request, one counter beat per counter, in index order, tagged with its index in
    ``Counter.NAMES`` (with no counters the request completes without a beat). The events of
    counters the configuration does not have go unused.

    A counter narrower than 64 bits saturates at ``2**counter_bits - 1`` (never wraps); the beat
    carries it zero-extended to 64 bits.

    Members
    -------
    events : In(events_layout)
        Count each set bit this cycle.
    clear : In(1)
        Zero every counter (wins over an event in the same cycle).
    req : In(1)
        A READ_COUNTERS command is pending.
    idle : In(1)
        Every earlier command has finished (results drained): the read may begin.
    reading : Out(1)
        The beats are being sent (the engine's ``res`` carries them instead of results).
    done : Out(1)
        The last beat has been taken: the command completes this cycle.
    beats : Out(stream.Signature(cfg.res_width))
        Counter beats, ``isa.result_layout(cfg)`` with kind COUNTER, tag = the counter's index in
        ``Counter.NAMES`` (0..5 with every counter), in index order.

    Latency: the first beat is valid 2 cycles after ``req & idle`` (mode set, beat loaded); one
    beat per cycle while ``beats.ready``; ``done`` (a register) the cycle after the last beat is
    taken.
    """

    def __init__(self, cfg: EngineConfig):
        self.cfg = cfg
        super().__init__({
            "events": In(events_layout),
            "clear": In(1),
            "req": In(1),
            "idle": In(1),
            "reading": Out(1),
            "done": Out(1),
            "beats": Out(stream.Signature(cfg.res_width)),
        })

    def elaborate(self, platform):
        m = Module()
        names = self.cfg.counter_names
        tags = [isa.Counter.NAMES.index(name) for name in names]
        n = len(names)
        bits = self.cfg.counter_bits
        counters = [Signal(bits, name=f"cnt_{name}") for name in names]
        for cnt, name in zip(counters, names):
            room = ~cnt.all() if bits < 64 else 1       # 2^64 cycles never come
            with m.If(self.clear):
                m.d.sync += cnt.eq(0)
            with m.Elif(self.events[name] & room):
                m.d.sync += cnt.eq(cnt + 1)

        # the beat of index ``idx`` (a mux; loaded into ``beats.payload`` when a beat starts),
        # one whole-word assignment per case (isa.pack_value: no partial drivers for Icarus)
        layout = isa.result_layout(self.cfg)
        idx = Signal(range(n + 1))
        beat = Signal(self.cfg.res_width)
        with m.Switch(idx):
            for i in range(n):
                with m.Case(i):
                    m.d.comb += beat.eq(isa.pack_value(layout, kind=Kind.COUNTER.value,
                                                       tag=tags[i], body=counters[i]))
        payload = Signal(self.cfg.res_width)
        m.d.comb += self.beats.payload.eq(payload)
        xfer = self.beats.valid & self.beats.ready
        # ``done`` is a register: it must not depend on ``beats.ready`` in the same cycle, or the
        # consumer's ready would reach the command register's enable through the front-end (the
        # iCEBreaker's critical path: bridge -> res.ready -> done -> cmd.ready, 43.7 ns)
        finished = Signal()
        m.d.sync += finished.eq(0)
        m.d.comb += self.done.eq(finished)
        with m.If(self.req & ~finished):
            with m.If(~self.reading & self.idle):
                m.d.sync += [self.reading.eq(1), idx.eq(0), self.beats.valid.eq(0)]
            with m.If(self.reading & (~self.beats.valid | xfer)):
                with m.If(idx == n):
                    m.d.sync += [self.reading.eq(0), self.beats.valid.eq(0), finished.eq(1)]
                with m.Else():
                    m.d.sync += [payload.eq(beat), self.beats.valid.eq(1), idx.eq(idx + 1)]
        return m
