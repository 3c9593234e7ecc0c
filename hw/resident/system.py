"""What a board top instantiates for resident mode: the resident UART bridge in front of the engine
(later the engine inside the policy wrapper), with the two UART pins."""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..uart import attach_engine, divisor_for
from .bridge import ResidentBridge, CREDIT_UNIT, IMAGE_CHUNK
from .layout import ResidentConfig

__all__ = ["ResidentSystem"]


class ResidentSystem(wiring.Component):
    """:class:`.bridge.ResidentBridge` + a resident engine, reached through ``rx``/``tx``.

    Parameters
    ----------
    cfg : ResidentConfig
    clk_freq : float
        Clock frequency in Hz (sets the UART divisor and the parser's 0.25 s timeout).
    baud : int or None
        UART baud rate (refused if the divisor is off by more than 2%). ``None``: no UART, the
        byte streams ``i``/``o`` instead of the pins (simulation above the bit level).
    engine : wiring.Component or None
        The component behind the bridge: ``cmd``/``res`` streams of ``cmd_layout(cfg)`` /
        ``res_layout(cfg)``; default ``ResidentEngine(cfg)``. ``engine="policy"`` puts the policy
        wrapper (``hw/resident/policy.py``: same streams, more opcodes) there and tells the host
        so in the identify reply.
    fifo_depth, credit_unit, image_chunk, features : int
        Passed to the bridge.
    impl : ResidentImpl or None
        Netlist options (:class:`.impl.ResidentImpl`): the default engine is built with them,
        the bridge takes ``lean_bridge``.

    Members
    -------
    rx : In(1), tx : Out(1)
        The serial lines (idle high); or ``i``/``o`` byte streams when ``baud`` is None.
    error : Out(1)
        Sticky receive overrun or framing error (an LED on a board).

    The bridge's RESET frame resets the engine one cycle later (not the bridge; the engine's
    memories, i.e. the loaded network, are kept).
    """

    def __init__(self, cfg: ResidentConfig, clk_freq: float, baud: int | None = 115200, *,
                 engine=None, fifo_depth: int = 512, credit_unit: int = CREDIT_UNIT,
                 image_chunk: int = IMAGE_CHUNK, features: int = 0, impl=None):
        if not isinstance(cfg, ResidentConfig):
            raise TypeError(f"cfg must be a ResidentConfig, not {cfg!r}")
        self.cfg = cfg
        self.clk_freq = clk_freq
        self.baud = baud
        self.divisor = divisor_for(clk_freq, baud) if baud is not None else None
        if engine == "policy":
            from .bridge import FEATURE_POLICY
            from .policy import PolicyEngine
            engine = PolicyEngine(cfg) if impl is None else PolicyEngine(cfg, impl=impl)
            features |= FEATURE_POLICY
        elif engine is None:
            from .engine import ResidentEngine
            engine = ResidentEngine(cfg) if impl is None else ResidentEngine(cfg, impl=impl)
        self.engine = engine
        self.bridge = ResidentBridge(
            cfg, divisor=self.divisor, fifo_depth=fifo_depth, credit_unit=credit_unit,
            timeout=int(clk_freq * 0.25) if baud is not None else 0, image_chunk=image_chunk,
            cmd_shape=engine.cmd.payload.shape(), res_shape=engine.res.payload.shape(),
            features=features, lean=impl is not None and impl.lean_bridge)
        pins = ({"rx": In(1, init=1), "tx": Out(1, init=1)} if baud is not None else
                {"i": In(stream.Signature(8)), "o": Out(stream.Signature(8))})
        super().__init__(pins | {"error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        bridge = self.bridge
        attach_engine(m, bridge, self.engine)
        if self.baud is not None:
            m.d.comb += [bridge.rx.eq(self.rx), self.tx.eq(bridge.tx)]
        else:
            wiring.connect(m, wiring.flipped(self.i), bridge.i)
            wiring.connect(m, bridge.o, wiring.flipped(self.o))
        m.d.comb += self.error.eq(bridge.overrun | bridge.frame_error)
        return m
