"""cocotb test module: a bundle's network resident in the generated ``pnn_resident``.

Started by :func:`progressivenn.sim.resident_runner.run_resident_cocotb`, never imported by hand.
The configuration comes as a JSON file named by ``PNN_RESIDENT_CONFIG``; the report goes to the
file it names (``out``), written before any assertion. The design is the bench top
(``resident_runner.bench_top``): the clock is generated in Verilog, so the simulator runs free
between beats; Python touches the design only per beat (commands in, results out; sleeping on
``ready``/``valid`` in between), with random idle cycles between command beats and ``ready`` held
low on result beats (probability ``stall``).

The network is loaded once; for every image and k: the image beats and RUN go in, the SUMMARY,
logits and busy counters come out, then every hidden layer's feature map is read back; every
layer is compared with the golden model (``model.golden.run_network``, run by the runner
beforehand: ``golden_file``). A second test resets the
engine in the middle of an image and checks that the network stayed loaded and the rerun is exact.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

import cocotb
from cocotb.triggers import FallingEdge, Timer

from ..hw.resident.layout import ResidentConfig
from ..model.bundle import load_bundle
from . import resident as rs
from .cocotb_transport import CocotbEngine
from .transport import Exchange
from .compare import compare_outputs
from .progress_file import note
from .resident_runner import PERIOD_NS


class _Bench(CocotbEngine):
    """The engine harness (``cocotb_transport``) on a resident engine: commands in, results out."""

    def __init__(self, dut, stall: float, seed: int):
        super().__init__(dut, stall=stall, seed=seed)

    async def feed(self, words):
        await self._feed("cmd", words)

    async def exchange(self, words, n):
        return await super().exchange(Exchange(cmds=list(words), n_results=n))


def _golden(conf, bundle, image: int, k: int) -> list:
    """Every layer's golden output for test image ``image`` at ``k``, computed by the runner
    before the simulator started (``golden_file``: so this process never imports torch)."""
    with np.load(conf["golden_file"]) as g:
        return [g[f"k{k}_l{li}"][image] for li in range(len(bundle.layers))]


@cocotb.test()
async def resident(dut):
    """Every image x every k: every layer of the resident RTL == golden model."""
    with open(os.environ["PNN_RESIDENT_CONFIG"]) as f:
        conf = json.load(f)
    cfg = ResidentConfig(**conf["config"])
    bundle = load_bundle(conf["bundle"])
    prog = rs.compile_program(bundle, cfg, conf["tables"], fuse=conf["fuse"])
    ks = conf["bits"]
    images = bundle.test_x[:conf["images"]]
    labels = bundle.test_y[:conf["images"]]
    dut._log.info(f"program compiled: {len(prog.layers)} layers")
    bench = _Bench(dut, conf["stall"], conf["seed"])
    await bench.reset()
    dut._log.info("reset done")
    t0 = time.perf_counter()
    await bench.exchange(prog.load_beats(), 0)
    dut._log.info(f"network loaded: {len(prog.load_beats())} beats "
                  f"({time.perf_counter() - t0:.2f} s)")
    nres = rs.result_beat_count(prog)
    rb = rs.readback_beats(prog)
    report = {"per_k": {str(k): {"cycles": [], "busy": None, "compared": 0, "mismatches": 0,
                                 "correct": 0, "class_agree": 0} for k in ks},
              "first_mismatch": None, "images": int(len(images)), "bits": ks,
              "layers": [pl.name for pl in prog.layers]}
    sim_cycles_start = cocotb.utils.get_sim_time("ns") // PERIOD_NS
    # image in -> result out only (no read-back, no golden); wall clock and this process's CPU
    # time (simulator and Python: the machine's other load does not count)
    run_cycles, run_wall, run_cpu = 0, 0.0, 0.0
    for i, img in enumerate(images):
        for k in ks:
            words = rs.image_beats(prog, img) + rs.run_beats(prog, k)
            c0, w0, p0 = cocotb.utils.get_sim_time("ns"), time.perf_counter(), time.process_time()
            beats = await bench.exchange(words, nres)
            run_wall += time.perf_counter() - w0
            run_cpu += time.process_time() - p0
            run_cycles += (cocotb.utils.get_sim_time("ns") - c0) // PERIOD_NS
            res = rs.decode_run(prog, beats)
            res.maps = rs.decode_readback(prog, await bench.exchange(rb, len(rb)))
            exp = _golden(conf, bundle, i, k)
            got = rs.layer_outputs(bundle, prog, res)
            seen = [j for j, v in enumerate(got) if v is not None]
            cmp = compare_outputs(bundle, [got[j] for j in seen], [exp[j] for j in seen],
                                  k=k, image=i)
            dut._log.info(f"image {i} k={k}: class {res.cls}, {res.cycles} cycles, "
                          f"{cmp.mismatches} mismatches ({time.perf_counter() - t0:.2f} s)")
            pk = report["per_k"][str(k)]
            pk["cycles"].append(res.cycles)
            pk["busy"] = res.busy
            pk["compared"] += cmp.compared
            pk["mismatches"] += cmp.mismatches
            pk["correct"] += int(res.cls == int(labels[i]))
            pk["class_agree"] += int(res.cls == int(np.argmax(exp[-1])))
            if res.busy != rs.expected_busy(prog, k):
                pk["busy_model_differs"] = rs.expected_busy(prog, k)
            if cmp.first and report["first_mismatch"] is None:
                first = dict(cmp.first)
                first["name"] = bundle.layers[seen[first["layer"]]].name
                first["layer"] = seen[first["layer"]]
                report["first_mismatch"] = first
            note(f"image {i + 1}/{len(images)} k={k} done")
    report["sim_cycles"] = int(cocotb.utils.get_sim_time("ns") // PERIOD_NS - sim_cycles_start)
    report["wall_seconds"] = round(time.perf_counter() - t0, 3)
    report["run_cycles"] = int(run_cycles)
    report["run_seconds"] = round(run_wall, 3)
    report["run_cpu_seconds"] = round(run_cpu, 3)
    report["mismatches"] = sum(v["mismatches"] for v in report["per_k"].values())
    with open(conf["out"], "w") as f:
        json.dump(report, f, indent=1)
    assert report["mismatches"] == 0, report["first_mismatch"]
    assert not any("busy_model_differs" in v for v in report["per_k"].values())


@cocotb.test()
async def reset_mid_image(dut):
    """Reset in the middle of an image: the network stays loaded (memories and tap table are not
    reset), and the same image then runs exactly."""
    with open(os.environ["PNN_RESIDENT_CONFIG"]) as f:
        conf = json.load(f)
    if not conf.get("reset_test", True):
        return
    cfg = ResidentConfig(**conf["config"])
    bundle = load_bundle(conf["bundle"])
    prog = rs.compile_program(bundle, cfg, conf["tables"], fuse=conf["fuse"])
    k = max(conf["bits"])
    bench = _Bench(dut, 0.0, conf["seed"])
    await bench.reset()
    await bench.exchange(prog.load_beats(), 0)
    img = bundle.test_x[0]
    await bench.feed(rs.image_beats(prog, img) + rs.run_beats(prog, k))
    half = sum(pl.busy(k) for pl in prog.layers) // 2
    await Timer(half * PERIOD_NS, "ns")                  # one callback, not one per cycle
    await FallingEdge(dut.clk)
    await bench.reset()                                  # mid-image
    res = rs.decode_run(prog, await bench.exchange(
        rs.image_beats(prog, img) + rs.run_beats(prog, k), rs.result_beat_count(prog)))
    exp = _golden(conf, bundle, 0, k)
    assert res.logits == [int(v) for v in exp[-1]], (res.logits, exp[-1])
    assert res.busy == rs.expected_busy(prog, k)
    dut._log.info(f"reset mid-image at k={k}: the rerun matches golden")
