"""Gate-level regression: the sky130 netlist of ``pnn asic`` under the engine's cocotb regression.

The netlist (``netlist.v``: ``sky130_fd_sc_hd`` cell instances; in ``"macro"`` memory mode plus
``memories.v``, the memories' behaviour written by Yosys) is simulated with the package's own
functional Verilog models of the cells (:func:`hw.sky130.write_cell_models`, zero delay) by the
same cocotb bench as the RTL (:mod:`.cocotb_bench`: whole networks from a bundle at every k,
random valid/ready stalls, every layer compared with the golden model). Its ports are the RTL's,
so nothing in the bench knows it is gates.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from ..hw import sky130
from ..hw.generate import TOP
from ..hw.isa import EngineConfig
from . import runner

__all__ = ["gate_sources", "run_gate_regression"]


def gate_sources(netlist_dir) -> list[Path]:
    """The Verilog files of a ``pnn asic`` output folder that make up the gate-level design."""
    d = Path(netlist_dir)
    net = d / "netlist.v"
    if not net.is_file():
        raise FileNotFoundError(f"no gate-level netlist {net}: run pnn asic first")
    models = sky130.write_cell_models(d / "sky130_cell_models.v")
    return [net] + ([d / "memories.v"] if (d / "memories.v").is_file() else []) + [models]


def run_gate_regression(bundle_path, cfg: EngineConfig, netlist_dir, *, simulator: str = "icarus",
                        images: int = 2, bits=tuple(range(1, 9)), tables: str = "retrained",
                        stall: float = 0.1, seed: int = 0, build_root=None) -> dict:
    """Build the gate-level design of ``netlist_dir`` (made for ``cfg``) and run the cocotb
    regression on it; returns the bench's report (``mismatches``, ``compared_values``, per k)
    with ``failed_tests``, ``simulator``, ``build_seconds``, ``sim_seconds``, ``run_dir``."""
    from cocotb_tools.runner import get_runner

    runner.find_simulator(simulator)
    sources = gate_sources(netlist_dir)
    root = Path(build_root) if build_root else Path(netlist_dir) / "gate_sim"
    build_dir = (root / f"{simulator}-build").resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    get_runner(simulator).build(
        sources=sources, hdl_toplevel=TOP, build_dir=build_dir, timescale=("1ns", "1ps"),
        build_args=runner.VERILATOR_ARGS if simulator == "verilator" else [],
        log_file=build_dir / "build.log")
    build_s = time.perf_counter() - t0
    test_dir = runner.new_run_dir(root, "gate")
    out = test_dir / "report.json"
    conf = {"bundle": str(Path(bundle_path).resolve()), "images": images, "bits": list(bits),
            "tables": tables, "stall": stall, "seed": seed, "reset_test": False,
            "inject_fault": False, "out": str(out),
            "engine": {k: v for k, v in cfg.to_dict().items()
                       if k in EngineConfig.__dataclass_fields__}}
    conf_path = test_dir / "config.json"
    conf_path.write_text(json.dumps(conf, indent=1))
    results_xml = test_dir / "results.xml"
    t1 = time.perf_counter()
    try:
        get_runner(simulator).test(
            test_module="progressivenn.sim.cocotb_bench", hdl_toplevel=TOP,
            hdl_toplevel_lang="verilog", build_dir=build_dir, test_dir=test_dir,
            results_xml=str(results_xml),
            extra_env={"PNN_SIM_CONFIG": str(conf_path),
                       "PYTHONPATH": os.pathsep.join(sys.path)},
            timescale=("1ns", "1ps"), log_file=test_dir / "sim.log")
    except SystemExit:        # cocotb's runner exits on a failed test under pytest
        pass
    sim_s = time.perf_counter() - t1
    if not out.exists():
        raise RuntimeError(f"the gate-level regression wrote no report; see {test_dir / 'sim.log'}")
    report = json.loads(out.read_text())
    report["failed_tests"] = (runner._failed_tests(results_xml) if results_xml.exists()
                              else ["regression"])
    report.update(simulator=simulator, build_seconds=round(build_s, 2),
                  sim_seconds=round(sim_s, 2), run_dir=str(test_dir),
                  sources=[str(s) for s in sources])
    return report
