"""cocotb test module: whole networks from an exported bundle on the generated ``pnn_engine``.

Started by ``sim/runner.py`` (``pnn sim``), never imported by hand. The run's configuration comes
as a JSON file named by the ``PNN_SIM_CONFIG`` environment variable; the results go to the JSON file
it names (``out``), written before any assertion so a failing run still reports where it failed.

For every test image and every k: the driver runs the image through the RTL; every output of
every layer is compared with the integer golden model (``model.golden.run_network``); the first
mismatch is reported as layer / channel / position / k / expected / got. With ``layer_counters`` in
the configuration the counters are read around every compute layer and reported per layer
(``per_k[k]["layers"]``). A second test asserts
reset in the middle of a job and checks that the engine then computes exactly again.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, with_timeout

from ..hw.isa import EngineConfig
from ..model.bundle import load_bundle
from .cocotb_transport import CocotbEngine
from .compare import compare_outputs, golden_outputs
from .driver import check_fits, infer
from .progress_file import note


def _config() -> dict:
    with open(os.environ["PNN_SIM_CONFIG"]) as f:
        return json.load(f)


async def _start(dut, conf):
    eng = CocotbEngine(dut, stall=conf.get("stall", 0.0), seed=conf.get("seed", 0),
                       idle=conf.get("idle"), backpressure=conf.get("backpressure"))
    # the clock toggled by the simulator interface's C++ (no Python per edge: the regression
    # of test_cocotb's verilator run, 2 images x 4 k, 6.0-6.3 instead of 6.7-7.1 CPU s)
    eng.clock = Clock(dut.clk, 10, unit="ns", impl="gpi")
    eng.clock.start()
    await eng.reset()
    return eng


async def _bounded(eng, gen, plans, k):
    """Run one inference; a hang fails the test instead of running forever."""
    limit = 20 * sum(p.ideal_cycles(k) for p in plans) + 200_000
    return await with_timeout(eng.run(gen), limit * 10, "ns")


@cocotb.test()
async def regression(dut):
    """Every image x every k: RTL outputs of every layer == golden model."""
    conf = _config()
    cfg = EngineConfig(**conf["engine"])
    bundle = load_bundle(conf["bundle"])
    plans = check_fits(bundle, cfg)
    images = bundle.test_x[:conf["images"]]
    labels = bundle.test_y[:conf["images"]]
    tables = conf.get("tables", "retrained")
    eng = await _start(dut, conf)
    if conf.get("inject_fault"):
        eng.fault = 1  # flip bit 8 (row 0's LSB) of the first result word
    report = {"images": len(images), "bits": conf["bits"], "mismatches": 0, "compared_values": 0,
              "first_mismatch": None, "per_k": {}}
    t0 = time.perf_counter()
    per_layer = bool(conf.get("layer_counters", False))
    for k in conf["bits"]:
        gold = golden_outputs(bundle, images, k, tables)
        stats = {"cycles": 0, "compute_cycles": 0, "stall_cycles": 0, "ideal_cycles": 0,
                 "plane_passes": 0, "correct": 0, "golden_correct": 0, "mismatches": 0}
        if per_layer:  # per compute layer: the engine's own counters, summed over the images
            stats["layers"] = {p.name: {"index": p.index, "cycles": 0, "compute_cycles": 0,
                                        "stall_cycles": 0, "ideal_cycles": 0} for p in plans}
        for n, image in enumerate(images):
            res = await _bounded(eng, infer(bundle, cfg, image, k, tables, plans=plans,
                                            layer_counters=per_layer,
                                            tile_positions=conf.get("tile_positions", "auto")), plans, k)
            if per_layer:
                for p in plans:
                    c, ls = res.layer_counters[p.index], stats["layers"][p.name]
                    ls["cycles"] += c["total"]
                    ls["compute_cycles"] += c["busy"]
                    ls["stall_cycles"] += c["stall"]
                    ls["ideal_cycles"] += p.ideal_cycles(k)
            cmp = compare_outputs(bundle, res.outputs, [g[n] for g in gold], k=k, image=n)
            report["compared_values"] += cmp.compared
            stats["mismatches"] += cmp.mismatches
            if cmp.first and report["first_mismatch"] is None:
                report["first_mismatch"] = cmp.first
                dut._log.error("first mismatch: %s", cmp.first)
            stats["cycles"] += res.counters["total"]
            stats["compute_cycles"] += res.counters["busy"]
            stats["stall_cycles"] += res.counters["stall"]
            stats["plane_passes"] += res.counters["plane_passes"]
            stats["ideal_cycles"] += res.ideal_cycles
            stats["correct"] += int(res.pred == int(labels[n]))
            stats["golden_correct"] += int(int(np.argmax(gold[-1][n])) == int(labels[n]))
            note(f"k={k} image {n + 1}/{len(images)} done")
        report["mismatches"] += stats["mismatches"]
        report["per_k"][str(k)] = stats
        dut._log.info("k=%d: %d mismatches, %d cycles, %d compute cycles (ideal %d)", k,
                      stats["mismatches"], stats["cycles"], stats["compute_cycles"],
                      stats["ideal_cycles"])
    report["wall_seconds"] = time.perf_counter() - t0
    report["sim_time_ns"] = int(cocotb.utils.get_sim_time("ns"))
    with open(conf["out"], "w") as f:
        json.dump(report, f, indent=1)
    assert report["mismatches"] == 0, f"RTL != golden: first mismatch {report['first_mismatch']}"


@cocotb.test()
async def reset_mid_job(dut):
    """Reset asserted in the middle of a job; the next inference is exact again."""
    conf = _config()
    if not conf.get("reset_test", True):
        return
    cfg = EngineConfig(**conf["engine"])
    bundle = load_bundle(conf["bundle"])
    plans = check_fits(bundle, cfg)
    k = max(conf["bits"])
    image = bundle.test_x[0]
    eng = await _start(dut, conf)
    job = cocotb.start_soon(eng.run(infer(bundle, cfg, image, k, plans=plans)))
    await ClockCycles(dut.clk, max(50, plans[0].ideal_cycles(k) // 2))
    assert not job.done(), "the job finished before the reset could interrupt it"
    job.cancel()
    eng.abort()
    await eng.reset()
    res = await _bounded(eng, infer(bundle, cfg, image, k, plans=plans), plans, k)
    gold = golden_outputs(bundle, image[None], k, "retrained")
    cmp = compare_outputs(bundle, res.outputs, [g[0] for g in gold], k=k, image=0)
    assert cmp.mismatches == 0, f"after reset: {cmp.first}"
