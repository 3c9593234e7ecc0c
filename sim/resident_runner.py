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
        verilog = generate_resident_verilog(cfg, build_dir / "rtl")   # rewritten only if changed
        get_runner(simulator).build(
            sources=[verilog], hdl_toplevel=TOP, build_dir=build_dir, timescale=("1ns", "1ps"),
            build_args=VERILATOR_ARGS if simulator == "verilator" else [],
            log_file=build_dir / "build.log")
    return build_dir


def run_resident_cocotb(bundle_path, cfg: ResidentConfig, *, simulator: str = "icarus",
                        images: int = 2, bits=tuple(range(1, 9)), tables: str = "retrained",
                        fuse: bool = True, stall: float = 0.1, seed: int = 0,
                        reset_test: bool = True, build_root="build/sim") -> dict:
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
        "seed": seed, "reset_test": reset_test, "out": str(out)}
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


def resident_config(*, rows: int, cols: int, bundle) -> ResidentConfig:
    """The resident engine for an R x C array and ``bundle``'s widths (tap banks where C is a
    power of two)."""
    pow2 = cols & (cols - 1) == 0
    return ResidentConfig(rows=rows, cols=cols, nbits=int(bundle.nbits), abits=int(bundle.abits),
                          mbits=max(18, int(bundle.mbits)), taps=min(9, cols) if pow2 else 0)


def summarize_resident(report: dict, prog) -> dict:
    """The resident regression in the shape of ``pnn sim --json`` (``progressivenn.simulation.
    summarize``), plus ``mode``, ``link_bytes_per_image`` and per-layer busy cycles. ``cycles``
    here is one image's, from its first input beat to its result (equal for every image)."""
    from .resident import link_bytes_per_image

    per_k = report["per_k"]
    ks = sorted(per_k, key=int)
    n = report["images"]
    top = ks[-1]
    cyc = {k: max(per_k[k]["cycles"]) for k in ks}
    busy = {k: sum(per_k[k]["busy"]) for k in ks}
    lb = link_bytes_per_image(prog)
    return {
        "mode": "resident",
        "simulator": report["simulator"], "images": n, "bits": [int(k) for k in ks],
        "mismatches": report["mismatches"],
        "compared_values": sum(per_k[k]["compared"] for k in ks),
        "first_mismatch": report["first_mismatch"],
        "cycles": cyc,
        "compute_cycles": busy,
        "ideal_cycles": {k: sum(pl.busy(int(k)) for pl in prog.layers) for k in ks},
        "layer_busy_cycles": {k: dict(zip(report["layers"], per_k[k]["busy"])) for k in ks},
        "accuracy": {k: per_k[k]["correct"] / n for k in ks},
        "golden_agreement": {k: per_k[k]["class_agree"] / n for k in ks},
        "cycles_ratio": {k: cyc[k] / cyc[top] for k in ks},
        "link_bytes_per_image": {k: lb for k in ks},
        "failed_tests": report.get("failed_tests", []),
        "build_seconds": report["build_seconds"], "sim_seconds": report["sim_seconds"],
        "sim_cycles_per_s": round(report["sim_cycles"] / max(report["wall_seconds"], 1e-9), 1),
        "run_cycles_per_s": round(report["run_cycles"] / max(report["run_seconds"], 1e-9), 1),
        "ratio_reference_k": int(top),
        "cycles_over": "one image, from its first input beat to its result",
        "run_dir": report.get("run_dir"), "sim_log": report.get("sim_log"),
    }


def print_resident_table(s: dict) -> None:
    print(f"resident mode, {s['simulator']}, {s['images']} image(s): {s['mismatches']} mismatches "
          f"in {s['compared_values']} values (every layer)")
    print(f"{'k':>3} {'cycles/image':>13} {'ratio':>6} {'busy':>7} {'accuracy':>9} "
          f"{'link B':>7}")
    for k in map(str, s["bits"]):
        print(f"{k:>3} {s['cycles'][k]:>13} {s['cycles_ratio'][k]:>6.3f} "
              f"{s['compute_cycles'][k]:>7} {100 * s['accuracy'][k]:>8.1f}% "
              f"{s['link_bytes_per_image'][k]:>7}")
