"""Board tops: the engine behind the UART bridge, with clock, reset and LEDs, per board.

:class:`EngineOverUART` is the board-independent part (bridge + engine, two pins); it is what the
serial-link simulation drives. :class:`BoardTop` puts it on an ``amaranth_boards`` platform.
:data:`BOARDS` names every supported board with the engine configuration that fits it
(``docs/boards.md`` gives the figures).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from amaranth.hdl import Elaboratable, Module, ResetInserter, Signal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from .board_names import BOARD_NAMES
from .isa import EngineConfig
from .uart import UARTBridge, divisor_for

__all__ = ["EngineOverUART", "BoardSpec", "BOARDS", "BoardTop", "board_spec", "board_platform"]


class EngineOverUART(wiring.Component):
    """The engine's streams carried over a UART: :class:`~.uart.UARTBridge` + engine.

    Parameters
    ----------
    cfg : EngineConfig
    divisor : int
        Clock cycles per UART bit.
    engine : wiring.Component or None
        The engine (``cmd``/``data``/``res`` streams and ``busy``); default ``Engine(cfg)``. Tests
        pass a stand-in with the same ports.
    fifo_depth, credit_unit, timeout : int
        Passed to the bridge.

    Members
    -------
    rx : In(1)
        Serial line from the host (idle high).
    tx : Out(1)
        Serial line to the host.
    busy : Out(1)
        The engine's ``busy``.
    error : Out(1)
        Sticky: receive overrun or framing error.

    The bridge's channel-3 frame resets the engine (not the bridge).
    """

    def __init__(self, cfg: EngineConfig, *, divisor: int, engine=None, fifo_depth: int = 512,
                 credit_unit: int = 32, timeout: int = 0):
        if not isinstance(cfg, EngineConfig):
            raise TypeError(f"cfg must be an EngineConfig, not {cfg!r}")
        self.cfg = cfg
        self.divisor = divisor
        if engine is None:
            from .engine import Engine
            engine = Engine(cfg)
        self.engine = engine
        self.bridge = UARTBridge(divisor=divisor, data_width=len(engine.data.payload),
                                 res_width=len(engine.res.payload), fifo_depth=fifo_depth,
                                 credit_unit=credit_unit, timeout=timeout)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "busy": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = bridge = self.bridge
        eng_rst = Signal()
        m.d.sync += eng_rst.eq(bridge.engine_rst)
        m.submodules.engine = ResetInserter(eng_rst)(self.engine)
        wiring.connect(m, bridge.cmd, self.engine.cmd)
        wiring.connect(m, bridge.data, self.engine.data)
        wiring.connect(m, self.engine.res, bridge.res)
        m.d.comb += [
            bridge.rx.eq(self.rx),
            self.tx.eq(bridge.tx),
            self.busy.eq(self.engine.busy),
            self.error.eq(bridge.overrun | bridge.frame_error),
        ]
        return m


@dataclass(frozen=True)
class BoardSpec:
    """One supported board: its amaranth-boards platform and the engine that fits it."""

    name: str
    platform: str                 # "module:Class" in amaranth_boards
    family: str                   # "ice40" | "ecp5"
    cfg: EngineConfig
    baud: int = 115200
    reset_button: tuple = ("button", 0)
    note: str = ""
    # Yosys/nextpnr options (the DSP and SPRAM use is part of the board's choice)
    synth_opts: tuple = ()
    nextpnr_opts: tuple = ()
    extra: dict = field(default_factory=dict)


#: Every board shares one post-processing lane over its R rows (``pp_lanes=1``: one AW x MW
#: multiplier, shifter and clamp instead of R, and a data path as narrow as the widest of a weight,
#: activation or single-lane table word); a result then takes R cycles, which the array hides
#: whenever ``k * nchunks >= R`` (``docs/boards.md``).
#: iCE40UP5K (5280 LCs, 30 EBR, 8 MAC16, 4 SPRAM): 4 x 8 (the multiplier takes 4 MAC16, the
#: sequencer 3); wdepth 512 keeps the EBR count at 29 of 30; I_max = 576 covers the digits and MNIST
#: reference networks; 18-bit M like the ECP5 boards (any bundle exported by default runs).
ICEBREAKER_CFG = EngineConfig(rows=4, cols=8, abits=8, nbits=8, max_reduction=576, mbits=18,
                              bbits=40, obits=32, wdepth=512, adepth=128, ppdepth=128,
                              accdepth=32, pp_lanes=1, counter_bits=32)
#: ECP5: the default 8 x 16 array (85F/45F), 8 x 8 for the 25F and 4 x 8 for the 12F; B is 40 bits
#: on the smaller parts (a trained digits bundle needs 33).
ULX3S_BIG_CFG = EngineConfig(rows=8, cols=16, abits=8, nbits=8, max_reduction=4096, mbits=18,
                             bbits=48, obits=32, wdepth=1024, adepth=512, ppdepth=1024,
                             accdepth=256, pp_lanes=1)
ULX3S_SMALL_CFG = EngineConfig(rows=8, cols=8, abits=8, nbits=8, max_reduction=1024, mbits=18,
                               bbits=40, obits=32, wdepth=1024, adepth=256, ppdepth=512,
                               accdepth=128, pp_lanes=1)
ULX3S_12F_CFG = EngineConfig(rows=4, cols=8, abits=8, nbits=8, max_reduction=1024, mbits=18,
                             bbits=40, obits=32, wdepth=1024, adepth=256, ppdepth=256,
                             accdepth=64, pp_lanes=1)

BOARDS: dict[str, BoardSpec] = {
    "icebreaker": BoardSpec(
        "icebreaker", "amaranth_boards.icebreaker:ICEBreakerPlatform", "ice40", ICEBREAKER_CFG,
        note="iCE40UP5K-SG48, 12 MHz", synth_opts=("-dsp",)),
    "ulx3s-85f": BoardSpec(
        "ulx3s-85f", "amaranth_boards.ulx3s:ULX3S_85F_Platform", "ecp5", ULX3S_BIG_CFG,
        note="LFE5U-85F-6BG381C, 25 MHz", reset_button=("button_fire", 0)),
    "ulx3s-45f": BoardSpec(
        "ulx3s-45f", "amaranth_boards.ulx3s:ULX3S_45F_Platform", "ecp5", ULX3S_BIG_CFG,
        note="LFE5U-45F-6BG381C, 25 MHz", reset_button=("button_fire", 0)),
    "ulx3s-25f": BoardSpec(
        "ulx3s-25f", "amaranth_boards.ulx3s:ULX3S_25F_Platform", "ecp5", ULX3S_SMALL_CFG,
        note="LFE5U-25F-6BG381C, 25 MHz", reset_button=("button_fire", 0)),
    "ulx3s-12f": BoardSpec(
        "ulx3s-12f", "amaranth_boards.ulx3s:ULX3S_12F_Platform", "ecp5", ULX3S_12F_CFG,
        note="LFE5U-12F-6BG381C, 25 MHz", reset_button=("button_fire", 0)),
}


assert tuple(BOARDS) == BOARD_NAMES, "hw/board_names.py lists every board of BOARDS, in order"


def board_spec(name: str, *, rows: int | None = None, cols: int | None = None,
               pp_lanes: int | None = None) -> BoardSpec:
    """The spec of board ``name``, with the array size and post-processing lanes overridden if
    asked."""
    if name not in BOARDS:
        raise ValueError(f"unknown board {name!r}; choose one of {', '.join(BOARDS)}")
    spec = BOARDS[name]
    over = {k: v for k, v in (("rows", rows), ("cols", cols), ("pp_lanes", pp_lanes))
            if v is not None}
    if over:
        spec = replace(spec, cfg=replace(spec.cfg, **over))
    return spec


def board_platform(spec: BoardSpec):
    """An instance of the board's amaranth-boards platform."""
    import importlib

    mod, cls = spec.platform.split(":")
    return getattr(importlib.import_module(mod), cls)()


class BoardTop(Elaboratable):
    """The engine over UART on a board: default clock, a reset button, UART 0, LEDs 0 and 1.

    LED 0 shows ``busy``; LED 1 a sticky link error (overrun or framing). The reset button resets
    everything (bridge and engine) through a reset synchronizer; the FPGA's configuration sets every
    register to its initial value at power-up.

    Parameters
    ----------
    spec : BoardSpec
    engine : wiring.Component or None
        Engine override (default ``Engine(spec.cfg)``); the baseline build passes its MAC array.
    """

    def __init__(self, spec: BoardSpec, *, engine=None):
        self.spec = spec
        self.engine = engine

    def elaborate(self, platform):
        m = Module()
        clk_hz = platform.default_clk_frequency
        div = divisor_for(clk_hz, self.spec.baud)
        core = EngineOverUART(self.spec.cfg, divisor=div, engine=self.engine,
                              timeout=int(clk_hz // 4))
        def buffer(direction, name, number):
            buf = io.Buffer(direction, platform.request(name, number, dir="-"))
            m.submodules[f"{name}_{number}"] = buf
            return buf

        rst = Signal()
        m.submodules.rst_sync = FFSynchronizer(buffer("i", *self.spec.reset_button).i, rst)
        m.submodules.core = ResetInserter(rst)(core)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(rx.i), tx.o.eq(core.tx),
                     buffer("o", "led", 0).o.eq(core.busy),
                     buffer("o", "led", 1).o.eq(core.error)]
        return m
