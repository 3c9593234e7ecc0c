"""The int8 baseline's pipelined exec stage (``MACArray(cfg, pipelined=True)``, issue #16: the
products registered before the adder trees): bit-exact with the golden model through the driver,
one cycle more latency per RUN, the same array cycles."""

from progressivenn.hw.baseline import Int8ExecStage, Int8PipelinedExecStage, MACArray
from progressivenn.hw.isa import EngineConfig

CFG = EngineConfig(rows=4, cols=8, abits=8, nbits=8, max_reduction=64, mbits=18, bbits=40,
                   obits=32, wdepth=64, adepth=64, ppdepth=16, accdepth=16, pp_lanes=1)


def test_pipelined_int8_stage_is_one_cycle_deeper():
    assert Int8PipelinedExecStage.LATENCY == Int8ExecStage.LATENCY + 1
    assert MACArray(CFG, pipelined=True).latency == MACArray(CFG).latency + 1
    assert MACArray(CFG, pipelined=True).exec_stage is Int8PipelinedExecStage


def test_pipelined_int8_baseline_runs_a_bundle_bit_exact():
    from bundles import random_bundle

    from progressivenn.sim.compare import compare_outputs, golden_outputs
    from progressivenn.sim.driver import infer
    from progressivenn.sim.transport import AmaranthTransport

    b = random_bundle(1, nbits=7)
    exp = [e[0] for e in golden_outputs(b, b.test_x[:1], 7)]
    got = {}
    for pipelined, stall in ((False, 0.0), (True, 0.0), (True, 0.2)):
        tr = AmaranthTransport(CFG, component=lambda c: MACArray(c, pipelined=pipelined),
                               stall=stall, seed=3)
        res = tr.run(infer(b, CFG, b.test_x[0], k=7, baseline=True))
        cmp = compare_outputs(b, res.outputs, exp, k=7, image=0)
        assert cmp.compared > 0 and cmp.mismatches == 0, (pipelined, stall, cmp.first)
        assert res.counters["busy"] == res.ideal_cycles > 0
        got[pipelined, stall] = res.counters
    # the same array cycles; at most one cycle more per RUN in total
    plain, piped = got[False, 0.0], got[True, 0.0]
    assert piped["busy"] == plain["busy"] and piped["plane_passes"] == plain["plane_passes"]
    assert plain["total"] <= piped["total"] <= plain["total"] + plain["plane_passes"]


def test_build_board_names_the_pipelined_int8_design():
    from progressivenn.hw.boards import board_spec
    from progressivenn.hw.build import _design

    spec = board_spec("ulx3s-12f")
    eng, _, design, opts, _ = _design(spec, True, False, True)
    assert design == "baseline-int8-pipelined-lut" and "-nodsp" in opts
    assert eng.exec_stage is Int8PipelinedExecStage
    eng, _, design, _, _ = _design(spec, True, False)
    assert design == "baseline-int8-lut" and eng.exec_stage is Int8ExecStage
