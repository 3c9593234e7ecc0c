"""cocotb test module (run by tests/test_integration.py): two engine configurations generated with
different ``--name`` prefixes, one of them behind its ``--axis`` wrapper, in ONE design (``pnn_dual``)
and one simulator build. Both run the same bundle at the same time; every layer of both is compared
with the golden model. Configuration: JSON named by ``PNN_DUAL_CONFIG``."""

import json
import os

import cocotb
from cocotb.clock import Clock

from progressivenn.hw.isa import EngineConfig
from progressivenn.model.bundle import load_bundle
from progressivenn.sim.cocotb_transport import CocotbEngine
from progressivenn.sim.compare import compare_outputs, golden_outputs
from progressivenn.sim.driver import check_fits, infer


class Prefixed:
    """The ports ``<prefix><name>`` of ``dut`` seen as one engine's ``<name>`` (clk/rst shared)."""

    def __init__(self, dut, prefix):
        self._dut, self._prefix = dut, prefix

    def __getattr__(self, name):
        if name in ("clk", "rst", "_log"):
            return getattr(self._dut, name)
        return getattr(self._dut, self._prefix + name)


async def _engine_runs(eng, bundle, cfg, k, n):
    plans = check_fits(bundle, cfg)
    results = []
    for image in bundle.test_x[:n]:
        results.append(await eng.run(infer(bundle, cfg, image, k, plans=plans)))
    return results


@cocotb.test()
async def two_engines(dut):
    with open(os.environ["PNN_DUAL_CONFIG"]) as f:
        conf = json.load(f)
    bundle = load_bundle(conf["bundle"])
    n = conf["images"]
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    engines = {p: (CocotbEngine(Prefixed(dut, f"{p}_"), stall=0.2, seed=i),
                   EngineConfig(**conf["engines"][p])) for i, p in enumerate(("a", "b"))}
    resets = [cocotb.start_soon(eng.reset()) for eng, _ in engines.values()]   # rst is shared
    for r in resets:
        await r
    report = {"compared_values": 0, "mismatches": 0, "first_mismatch": None}
    for k in conf["bits"]:
        tasks = {p: cocotb.start_soon(_engine_runs(eng, bundle, cfg, k, n))
                 for p, (eng, cfg) in engines.items()}
        gold = golden_outputs(bundle, bundle.test_x[:n], k)
        for p, task in tasks.items():
            for i, res in enumerate(await task):
                cmp = compare_outputs(bundle, res.outputs, [g[i] for g in gold], k=k, image=i)
                report["compared_values"] += cmp.compared
                report["mismatches"] += cmp.mismatches
                if cmp.first and report["first_mismatch"] is None:
                    report["first_mismatch"] = dict(cmp.first, engine=p)
    with open(conf["out"], "w") as f:
        json.dump(report, f)
    assert report["mismatches"] == 0, report["first_mismatch"]
