"""Gate-level regression: the sky130 netlist of ``pnn asic`` under the engine's cocotb regression.

The netlist (``netlist.v``: ``sky130_fd_sc_hd`` cell instances; in ``"macro"`` memory mode plus
``memories.v``, the memories' behaviour written by Yosys) is simulated with the package's own
functional Verilog models of the cells (:func:`hw.sky130.write_cell_models`, zero delay) by the
same cocotb bench as the RTL (:mod:`.cocotb_bench`: whole networks from a bundle at every k,
random valid/ready stalls, every layer compared with the golden model). Its ports are the RTL's,
so nothing in the bench knows it is gates.
"""

from __future__ import annotations

from pathlib import Path

from ..hw import sky130
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
    regression on it (:func:`.runner.run_test_module` with these sources; builds and runs under
    ``build_root``, default ``netlist_dir/gate_sim``); returns the bench's report
    (``mismatches``, ``compared_values``, per k) with ``failed_tests``, ``simulator``,
    ``build_seconds``, ``sim_seconds``, ``run_dir`` and ``sources``."""
    sources = gate_sources(netlist_dir)
    root = Path(build_root) if build_root else Path(netlist_dir) / "gate_sim"
    conf = {"bundle": str(Path(bundle_path).resolve()), "images": images, "bits": list(bits),
            "tables": tables, "stall": stall, "seed": seed, "reset_test": False,
            "inject_fault": False}
    report = runner.run_test_module("progressivenn.sim.cocotb_bench", cfg, conf,
                                    simulator=simulator, build_root=root, name="gate",
                                    sources=sources)
    report["sources"] = [str(s) for s in sources]
    return report
