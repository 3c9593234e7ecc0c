"""cocotb test module: dynamic bit-precision policies driving the generated ``pnn_engine``.

Started by ``sim/runner.py: run_test_module`` (``pnn dynamic --rtl``), never imported by hand. The
configuration (JSON named by ``PNN_SIM_CONFIG``) gives the bundle, a ``.npz`` of clips
(``frames`` [clips, T, C, H, W]), the operating points (policy name, threshold, options), the
frozen confidence gates and the report file ``out``.

For every operating point and clip, the policy runs frame by frame on the RTL through
``sim/progressive.py``: each frame starts at the policy's k; an escalation continues the first layer
from the accumulators the engine saved (RUN with ``k_start``) and recomputes the later layers. Per
frame the report records the k path, the final logits and prediction, and the engine's own
counters for the whole frame (busy = array cycles, total, plane passes, ...). The caller compares
them with the golden model; this module only measures (it writes the report even when a frame
fails, so a failure still says where).
"""

from __future__ import annotations

import json
import os
import time
import traceback

import numpy as np

import cocotb
from cocotb.clock import Clock

from ..hw.isa import EngineConfig
from ..model.bundle import load_bundle
from ..model.dynamic import GateTable, make_policy
from .cocotb_transport import CocotbEngine
from .driver import check_fits
from .progressive import run_clip


@cocotb.test()
async def dynamic_policies(dut):
    """Every operating point x every clip: the policy on the RTL, engine counters per frame."""
    with open(os.environ["PNN_SIM_CONFIG"]) as f:
        conf = json.load(f)
    cfg = EngineConfig(**conf["engine"])
    bundle = load_bundle(conf["bundle"])
    plans = check_fits(bundle, cfg)
    with np.load(conf["frames"], allow_pickle=False) as z:
        frames = z["frames"]
    gates = GateTable.from_json(conf["gates"])
    tables = conf.get("tables", "retrained")
    eng = CocotbEngine(dut, stall=conf.get("stall", 0.0), seed=conf.get("seed", 0))
    eng.clock = Clock(dut.clk, 10, unit="ns", impl="gpi")   # C++ clock, as in cocotb_bench
    eng.clock.start()
    await eng.reset()
    report = {"points": [], "error": None}
    t0 = time.perf_counter()
    try:
        for point in conf["points"]:
            policy = make_policy(point["name"], bundle.nbits, gates, int(point["threshold"]),
                                 **point.get("options", {}))
            rec = {"label": point.get("label", point["name"]), "name": point["name"],
                   "threshold": int(point["threshold"]), "frames": []}
            report["points"].append(rec)
            for c in range(frames.shape[0]):
                results = await eng.run(run_clip(bundle, cfg, frames[c], policy, tables, plans))
                for t, res in enumerate(results):
                    rec["frames"].append({
                        "clip": c, "t": t, "path": list(res.path), "pred": res.pred,
                        "logits": [int(v) for v in res.logits],
                        "continued": bool(res.continued), "ideal_cycles": int(res.ideal_cycles),
                        "counters": {k: int(v) for k, v in res.counters.items()}})
            dut._log.info("%s t=%d: %d frames", rec["label"], rec["threshold"], len(rec["frames"]))
    except Exception:  # noqa: BLE001 - reported, then re-raised
        report["error"] = traceback.format_exc()
        raise
    finally:
        report["wall_seconds"] = time.perf_counter() - t0
        report["sim_time_ns"] = int(cocotb.utils.get_sim_time("ns"))
        with open(conf["out"], "w") as f:
            json.dump(report, f)
