"""Build the resident engine's Verilog with Icarus or Verilator and run the cocotb regression of
``sim/resident_cocotb.py`` on a bundle. One build directory per (simulator, configuration), reused;
every run writes its configuration, log and report into a fresh folder of its own."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

from ..hw.resident.layout import ResidentConfig
from .runner import VERILATOR_ARGS, find_simulator, new_run_dir, _build_lock, _failed_tests

__all__ = ["build_resident", "run_resident_cocotb"]


def _build_dir(cfg: ResidentConfig, simulator: str, root) -> Path:
    key = hashlib.sha1(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:10]
    return (Path(root) / f"resident-{simulator}-{key}").resolve()


def build_resident(cfg: ResidentConfig, simulator: str, root) -> Path:
    """Generate ``pnn_resident.v`` for ``cfg`` and build it (once per configuration)."""
    from cocotb_tools.runner import get_runner

    from ..hw.resident.generate import TOP, generate_resident_verilog

    find_simulator(simulator)
    build_dir = _build_dir(cfg, simulator, root)
    with _build_lock(build_dir) as lock:
        lock(True)
        verilog = build_dir / "rtl" / f"{TOP}.v"
        if not verilog.exists():
            generate_resident_verilog(cfg, build_dir / "rtl")
        get_runner(simulator).build(
            sources=[verilog], hdl_toplevel=TOP, build_dir=build_dir, timescale=("1ns", "1ps"),
            build_args=VERILATOR_ARGS if simulator == "verilator" else [],
            log_file=build_dir / "build.log")
    return build_dir


def run_resident_cocotb(bundle_path, cfg: ResidentConfig, *, simulator: str = "icarus",
                        images: int = 2, bits=tuple(range(1, 9)), tables: str = "retrained",
                        fuse: bool = True, stall: float = 0.1, seed: int = 0,
                        build_root="build/sim") -> dict:
    """Run the resident regression; return its report (per k: whole-image cycles per image, busy
    cycles per program layer, values compared, mismatches; the first mismatch)."""
    from cocotb_tools.runner import get_runner

    from ..hw.resident.generate import TOP

    t0 = time.perf_counter()
    build_dir = build_resident(cfg, simulator, build_root)
    build_s = time.perf_counter() - t0
    test_dir = new_run_dir(build_root, "resident")
    out = test_dir / "report.json"
    conf = {"bundle": str(Path(bundle_path).resolve()), "config": {
        k: v for k, v in cfg.to_dict().items() if k in ResidentConfig.__dataclass_fields__},
        "images": images, "bits": list(bits), "tables": tables, "fuse": fuse, "stall": stall,
        "seed": seed, "out": str(out)}
    conf_path = test_dir / "config.json"
    conf_path.write_text(json.dumps(conf, indent=1))
    results_xml = test_dir / "results.xml"
    t1 = time.perf_counter()
    with _build_lock(build_dir) as lock:
        lock(False)
        try:
            get_runner(simulator).test(
                test_module="progressivenn.sim.resident_cocotb", hdl_toplevel=TOP,
                hdl_toplevel_lang="verilog", build_dir=build_dir, test_dir=test_dir,
                results_xml=str(results_xml),
                extra_env={"PNN_RESIDENT_CONFIG": str(conf_path),
                           "PYTHONPATH": os.pathsep.join(sys.path)},
                timescale=("1ns", "1ps"), log_file=test_dir / "sim.log")
        except SystemExit:
            pass
    sim_s = time.perf_counter() - t1
    if not out.exists():
        raise RuntimeError(f"the resident cocotb run wrote no report; see {test_dir / 'sim.log'}")
    report = json.loads(out.read_text())
    report["failed_tests"] = _failed_tests(results_xml) if results_xml.exists() else ["resident"]
    report.update(simulator=simulator, build_seconds=round(build_s, 2),
                  sim_seconds=round(sim_s, 2), build_dir=str(build_dir), run_dir=str(test_dir),
                  sim_log=str(test_dir / "sim.log"))
    return report
