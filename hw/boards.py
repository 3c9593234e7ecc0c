"""Board tops: an engine behind a UART bridge, with clock, reset and LEDs, per board.

Two designs per board (:data:`MODES`): ``resident`` (the whole network on chip,
:class:`~.resident.system.ResidentSystem`: resident bridge + :class:`~.resident.ResidentEngine`)
and ``streamed`` (:class:`EngineOverUART`: the UART bridge + the host-fed engine of
``docs/engine.md``). :class:`EngineOverUART` is the board-independent part of the streamed design
(two pins); it is what the serial-link simulation drives. :class:`BoardTop` puts either on an
``amaranth_boards`` platform, at the board clock or at a PLL clock chosen for an exact UART
divisor. :data:`BOARDS` names every supported board with the configurations that fit it
(``docs/boards.md`` gives the figures).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from amaranth.hdl import ClockDomain, Elaboratable, Instance, Module, ResetInserter, Signal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import FFSynchronizer, ResetSynchronizer
from amaranth.lib.wiring import In, Out

from .board_names import BOARD_NAMES
from .isa import EngineConfig
from .resident.impl import ResidentImpl
from .resident.layout import ResidentConfig
from .uart import UARTBridge, attach_engine, divisor_for

__all__ = ["EngineOverUART", "BoardSpec", "BOARDS", "MODES", "BoardTop", "board_spec",
           "board_platform", "board_clock_hz", "ecp5_pll_params"]

#: the designs a board top can hold (``pnn build --mode``)
MODES = ("resident", "streamed")


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
        bridge = self.bridge
        attach_engine(m, bridge, self.engine, streams=("cmd", "data"))
        m.d.comb += [
            bridge.rx.eq(self.rx),
            self.tx.eq(bridge.tx),
            self.busy.eq(self.engine.busy),
            self.error.eq(bridge.overrun | bridge.frame_error),
        ]
        return m


@dataclass(frozen=True)
class BoardSpec:
    """One supported board: its amaranth-boards platform and the engines that fit it.

    ``cfg`` is the streamed engine's configuration, ``resident`` the resident engine's (None: no
    resident configuration fits the board). ``clk_hz`` is the design clock made by the board's
    PLL (None: the board clock itself); ``baud`` the UART rate, exact enough at that clock.
    ``mode`` is the design :class:`BoardTop` builds (set by :func:`board_spec`; empty: the
    board's default, resident where it fits). ``default`` overrides that default (e.g. a
    board whose resident configuration does not fit; none now).
    ``resident_impl`` maps the resident engine's memories (:class:`~.resident.impl.ResidentImpl`;
    None: the defaults)."""

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
    resident: ResidentConfig | None = None
    clk_hz: float | None = None
    mode: str = ""
    default: str = ""
    resident_impl: ResidentImpl | None = None

    @property
    def default_mode(self) -> str:
        if self.default:
            return self.default
        return "resident" if self.resident is not None else "streamed"

    @property
    def design_mode(self) -> str:
        """The design this spec builds: ``mode``, else the board's default."""
        return self.mode or self.default_mode


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

#: Resident mode on the ULX3S 85F/45F: the default 8 x 16 configuration (weights 4096 words,
#: tables 256 entries, feature maps 2048 words, tap banks for a one-channel first layer) holds
#: the digits net and the MNIST reference net (``docs/resident.md``); double-buffered input, so
#: the next image's codes are written while the current one computes (``pnn run`` keeps the next
#: image in flight: the link alone bounds images/s, ``docs/boards.md``).
ULX3S_RESIDENT_CFG = ResidentConfig(double_buffer=True)
#: ... and its netlist options (routing, ``docs/boards.md``): every memory written from a register
#: of its own (``write_regs``: no wide command word across the die to 98 block RAMs), no
#: read-old-data emulation on the program, table and feature-map read ports
#: (``collisions_undefined``: Yosys copied every write word into flip-flops and multiplexed them
#: into the read data), the image packer's word kept in the frame payload register
#: (``lean_bridge``: the 550-bit command word comes straight from that register, no multiplexer)
ULX3S_RESIDENT_IMPL = ResidentImpl(write_regs=True, collisions_undefined=True, lean_bridge=True)

#: Resident mode on the iCEBreaker (its default; ``--mode streamed``: the 4 x 8 streamed engine;
#: ``docs/boards.md``):
#: 2 x 4, no tap banks, bbits 35 (a 112-bit table entry: 7 EBR; the demo digits bundle needs 34),
#: the digits net in 6464 of 8192 weight words, 232 of 256 table entries, 4 of 4 descriptors; the
#: weights in one SPRAM, the program in block RAM, one post-processing lane, logits and busy
#: counters in two SPRAMs, the image packer in the frame register (:data:`ICEBREAKER_RESIDENT_IMPL`:
#: 5011 of 5280 logic cells, 30 of 30 EBR, 20.09 MHz at the board's 12 MHz).
ICEBREAKER_RESIDENT_CFG = ResidentConfig(rows=2, cols=4, bbits=35, wdepth=8192, ppdepth=256,
                                         fmdepth=512, max_layers=4, max_classes=10, taps=0,
                                         tapdepth=128, pp_shared=True)
ICEBREAKER_RESIDENT_IMPL = ResidentImpl(prog_ram=True, weights_single_port=True,
                                        desc_from_ram=True, pp_read_late=True,
                                        collisions_undefined=True, pp_shared=True,
                                        pp_merge_stages=True, results_ram=True, narrow_tags=True,
                                        lean_bridge=True)

#: ULX3S design clock: 25 MHz in, 30 MHz out of the PLL (25 * 6 / 5), so that 3 Mbaud (the
#: FT231X's fastest rate) is exactly 10 clocks a bit; at 25 MHz the nearest divisor is 4% off.
ULX3S_CLK_HZ = 30e6
#: the fastest rate of the boards' USB-UARTs (FT2232H on the iCEBreaker, FT231X on the ULX3S) with
#: an exact divisor: 4 clocks a bit at 12 MHz, 10 at 30 MHz
FAST_BAUD = 3_000_000

BOARDS: dict[str, BoardSpec] = {
    "icebreaker": BoardSpec(
        "icebreaker", "amaranth_boards.icebreaker:ICEBreakerPlatform", "ice40", ICEBREAKER_CFG,
        baud=FAST_BAUD, note="iCE40UP5K-SG48, 12 MHz", synth_opts=("-dsp",),
        resident=ICEBREAKER_RESIDENT_CFG,
        resident_impl=ICEBREAKER_RESIDENT_IMPL),
    "ulx3s-85f": BoardSpec(
        "ulx3s-85f", "amaranth_boards.ulx3s:ULX3S_85F_Platform", "ecp5", ULX3S_BIG_CFG,
        baud=FAST_BAUD, note="LFE5U-85F-6BG381C, 25 MHz (PLL 30 MHz)",
        reset_button=("button_fire", 0), resident=ULX3S_RESIDENT_CFG,
        resident_impl=ULX3S_RESIDENT_IMPL, clk_hz=ULX3S_CLK_HZ),
    "ulx3s-45f": BoardSpec(
        "ulx3s-45f", "amaranth_boards.ulx3s:ULX3S_45F_Platform", "ecp5", ULX3S_BIG_CFG,
        baud=FAST_BAUD, note="LFE5U-45F-6BG381C, 25 MHz (PLL 30 MHz)",
        reset_button=("button_fire", 0), resident=ULX3S_RESIDENT_CFG,
        resident_impl=ULX3S_RESIDENT_IMPL, clk_hz=ULX3S_CLK_HZ),
    "ulx3s-25f": BoardSpec(
        "ulx3s-25f", "amaranth_boards.ulx3s:ULX3S_25F_Platform", "ecp5", ULX3S_SMALL_CFG,
        baud=FAST_BAUD, note="LFE5U-25F-6BG381C, 25 MHz (PLL 30 MHz)",
        reset_button=("button_fire", 0), clk_hz=ULX3S_CLK_HZ),
    "ulx3s-12f": BoardSpec(
        "ulx3s-12f", "amaranth_boards.ulx3s:ULX3S_12F_Platform", "ecp5", ULX3S_12F_CFG,
        baud=FAST_BAUD, note="LFE5U-12F-6BG381C, 25 MHz (PLL 30 MHz)",
        reset_button=("button_fire", 0), clk_hz=ULX3S_CLK_HZ),
}


assert tuple(BOARDS) == BOARD_NAMES, "hw/board_names.py lists every board of BOARDS, in order"


def board_spec(name: str, *, rows: int | None = None, cols: int | None = None,
               pp_lanes: int | None = None, mode: str | None = None,
               baud: int | None = None) -> BoardSpec:
    """The spec of board ``name`` for design ``mode`` (default: the board's; resident where it
    fits), with the array size, post-processing lanes (streamed only) and baud rate overridden
    if asked. Raises ValueError naming the problem (unknown board or mode, a board without a
    resident configuration, ``pp_lanes`` in resident mode)."""
    if name not in BOARDS:
        raise ValueError(f"unknown board {name!r}; choose one of {', '.join(BOARDS)}")
    spec = BOARDS[name]
    mode = mode or spec.default_mode
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "resident" and spec.resident is None:
        raise ValueError(f"{name} has no resident configuration (docs/boards.md); use"
                         f" --mode streamed")
    spec = replace(spec, mode=mode, baud=spec.baud if baud is None else baud)
    over = {k: v for k, v in (("rows", rows), ("cols", cols)) if v is not None}
    if mode == "resident":
        if pp_lanes is not None:
            raise ValueError("--pp-lanes is a streamed-engine option (the resident engine's "
                             "post-processing lanes follow its rows)")
        if over:
            spec = replace(spec, resident=replace(spec.resident, **over))
        impl = spec.resident_impl
        if impl is not None and impl.pp_shared and spec.resident.rows % 2:
            raise ValueError(f"{name}'s resident engine shares a post-processing lane between two "
                             f"rows: --rows must be even, not {spec.resident.rows}")
        return spec
    if pp_lanes is not None:
        over["pp_lanes"] = pp_lanes
    if over:
        spec = replace(spec, cfg=replace(spec.cfg, **over))
    return spec


def board_platform(spec: BoardSpec):
    """An instance of the board's amaranth-boards platform."""
    import importlib

    mod, cls = spec.platform.split(":")
    return getattr(importlib.import_module(mod), cls)()


def board_clock_hz(spec: BoardSpec, platform=None) -> float:
    """The design clock of a board top: the PLL output if the board has one, else the board
    clock."""
    if spec.clk_hz:
        return float(spec.clk_hz)
    return float((platform or board_platform(spec)).default_clk_frequency)


def ecp5_pll_params(fin: float, fout: float) -> dict:
    """Dividers of an ECP5 ``EHXPLLL`` (feedback from CLKOP) making exactly ``fout`` from ``fin``:
    ``fout = fin * CLKFB_DIV / CLKI_DIV``, phase detector ``fin / CLKI_DIV`` in [3.125, 400] MHz,
    VCO ``fout * CLKOP_DIV`` in [400, 800] MHz (the one nearest 600 MHz is taken). Raises
    ValueError when no divider set is exact."""
    best = None
    for ci in range(1, 129):
        pfd = fin / ci
        if not 3.125e6 <= pfd <= 400e6:
            continue
        fb = round(fout / pfd)
        if not 1 <= fb <= 80 or abs(pfd * fb - fout) > 1e-3:
            continue
        for op in range(1, 129):
            vco = fout * op
            if 400e6 <= vco <= 800e6 and (best is None or abs(vco - 600e6) < abs(best[3] - 600e6)):
                best = (ci, fb, op, vco)
    if best is None:
        raise ValueError(f"no exact ECP5 PLL setting makes {fout / 1e6:g} MHz from"
                         f" {fin / 1e6:g} MHz")
    ci, fb, op, vco = best
    return {"CLKI_DIV": ci, "CLKFB_DIV": fb, "CLKOP_DIV": op, "CLKOP_CPHASE": op // 2,
            "vco_hz": vco}


class _ECP5PLL(Elaboratable):
    """An ECP5 PLL fed by the board clock driving ``clk`` at ``fout`` (exact dividers from
    :func:`ecp5_pll_params`); ``locked`` is its lock output."""

    def __init__(self, fout: float, clk):
        self.fout = fout
        self.clk = clk
        self.locked = Signal()

    def elaborate(self, platform):
        m = Module()
        if not hasattr(platform, "family") or platform.family != "ecp5":
            raise ValueError(f"a PLL clock is built for ECP5 boards only, not {platform!r}")
        clk_in = io.Buffer("i", platform.request(platform.default_clk, dir="-"))
        m.submodules.clk_in = clk_in
        prm = ecp5_pll_params(platform.default_clk_frequency, self.fout)
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=str(platform.default_clk_frequency / 1e6),
            a_FREQUENCY_PIN_CLKOP=str(self.fout / 1e6),
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=prm["CLKI_DIV"], p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=prm["CLKOP_DIV"],
            p_CLKOP_CPHASE=prm["CLKOP_CPHASE"], p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
            p_CLKFB_DIV=prm["CLKFB_DIV"],
            i_RST=0, i_STDBY=0, i_CLKI=clk_in.i, o_CLKOP=self.clk, i_CLKFB=self.clk,
            i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
            i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=self.locked)
        platform.add_clock_constraint(self.clk, self.fout)
        return m


class BoardTop(Elaboratable):
    """The board's design over UART: clock (board or PLL), a reset button, UART 0, LEDs 0 and 1.

    Resident mode (:class:`~.resident.system.ResidentSystem`): LED 0 lit once the clock runs
    (PLL locked, reset released), LED 1 a sticky link error. Streamed mode
    (:class:`EngineOverUART`): LED 0 shows ``busy``, LED 1 the link error. The reset button
    resets everything (bridge and engine) through a reset synchronizer; the FPGA's configuration
    sets every register to its initial value at power-up.

    Parameters
    ----------
    spec : BoardSpec
        From :func:`board_spec` (its ``design_mode``, ``baud``, ``clk_hz``).
    engine : wiring.Component or None
        Engine override (streamed: default ``Engine(spec.cfg)``, the baseline build passes its
        MAC array; resident: default ``ResidentEngine(spec.resident)``).
    core : wiring.Component or None
        The whole UART core override (``rx``/``tx``/``error`` and, optionally, ``busy``); the
        constraint files are generated with a stand-in.
    """

    def __init__(self, spec: BoardSpec, *, engine=None, core=None):
        self.spec = spec
        self.engine = engine
        self.core = core

    def make_core(self, clk_hz: float):
        """The UART core of the spec's mode at clock ``clk_hz``."""
        if self.spec.design_mode == "resident":
            from .resident.system import ResidentSystem
            return ResidentSystem(self.spec.resident, clk_hz, self.spec.baud, engine=self.engine,
                                  impl=self.spec.resident_impl)
        div = divisor_for(clk_hz, self.spec.baud)
        return EngineOverUART(self.spec.cfg, divisor=div, engine=self.engine,
                              timeout=int(clk_hz // 4))

    def elaborate(self, platform):
        m = Module()
        clk_hz = board_clock_hz(self.spec, platform)
        core = self.core if self.core is not None else self.make_core(clk_hz)

        def buffer(direction, name, number):
            buf = io.Buffer(direction, platform.request(name, number, dir="-"))
            m.submodules[f"{name}_{number}"] = buf
            return buf

        button = buffer("i", *self.spec.reset_button).i
        rst = Signal()
        if self.spec.clk_hz:
            # the PLL clock's domain, reset by the button or an unlocked PLL (synchronized)
            m.domains.sync = cd = ClockDomain("sync")
            pll_clk = Signal()          # named here: the LPF's FREQUENCY NET "pll_clk"
            m.submodules.pll = pll = _ECP5PLL(clk_hz, pll_clk)
            m.d.comb += cd.clk.eq(pll_clk)
            m.submodules.rst_sync = ResetSynchronizer(~pll.locked | button, domain="sync")
            m.submodules.core = core
        else:
            m.submodules.rst_sync = FFSynchronizer(button, rst)
            m.submodules.core = ResetInserter(rst)(core)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
        alive = Signal()
        m.d.sync += alive.eq(1)
        busy = getattr(core, "busy", None)
        m.d.comb += [core.rx.eq(rx.i), tx.o.eq(core.tx),
                     buffer("o", "led", 0).o.eq(busy if busy is not None else alive),
                     buffer("o", "led", 1).o.eq(core.error)]
        return m
