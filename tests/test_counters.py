"""The counter set (``EngineConfig.counter_set``, issue #16: the fixed cost at small arrays): the
counters component with every set, the driver's counter reads with each, and a whole network on
the engine and on the int8 baseline with the lean sets, bit-exact and with the same ``total``."""

from dataclasses import replace

import pytest
from amaranth.sim import Simulator

from progressivenn.hw import isa
from progressivenn.hw.counters import Counters
from progressivenn.hw.isa import EngineConfig, Kind

from hwutil import stream_get

CFG = EngineConfig(rows=2, cols=3, abits=4, nbits=3, max_reduction=64, mbits=10, bbits=20,
                   obits=24, wdepth=64, adepth=16, ppdepth=16, accdepth=8)


def _read(cfg, nbeats, events=5):
    """Count ``events`` cycles of total + busy, then READ: the beats and the cycles to ``done``."""
    cnt = Counters(cfg)
    got, waited = [], []

    async def tb(ctx):
        ctx.set(cnt.events, {"total": 1, "busy": 1})
        await ctx.tick().repeat(events)
        ctx.set(cnt.events, {})
        ctx.set(cnt.req, 1)
        ctx.set(cnt.idle, 1)
        for _ in range(nbeats):
            got.append(isa.decode_result(cfg, await stream_get(ctx, cnt.beats)))
        n = 0
        while not ctx.get(cnt.done):
            assert not ctx.get(cnt.beats.valid), "a beat more than the set has"
            await ctx.tick()
            n += 1
            assert n < 10, "READ_COUNTERS never completes"
        waited.append(n)
        assert ctx.get(cnt.reading) == 0

    sim = Simulator(cnt)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return got, waited[0]


def test_counter_sets_and_their_validation():
    assert EngineConfig().counter_set == "all"
    assert EngineConfig().counter_names == isa.Counter.NAMES
    assert replace(CFG, counter_set="total").counter_names == ("total",)
    assert replace(CFG, counter_set="none").counter_names == ()
    with pytest.raises(ValueError, match="counter_set must be one of all, total, none"):
        replace(CFG, counter_set="busy")
    assert EngineConfig(counter_set="total").to_dict()["counter_set"] == "total"


@pytest.mark.parametrize("counter_set", ["all", "total", "none"])
def test_counters_send_one_beat_per_counter_of_the_set(counter_set):
    cfg = replace(CFG, counter_set=counter_set)
    got, _ = _read(cfg, len(cfg.counter_names))
    assert [b.kind for b in got] == [Kind.COUNTER] * len(cfg.counter_names)
    assert [isa.Counter.NAMES[b.tag] for b in got] == list(cfg.counter_names)
    values = {isa.Counter.NAMES[b.tag]: b.values[0] for b in got}
    if "total" in values:
        assert values["total"] == 5
    if "busy" in values:
        assert values["busy"] == 5


def test_driver_reads_the_set_and_refuses_other_beats():
    from progressivenn.sim.driver import read_counters, require_counters

    total = replace(CFG, counter_set="total")
    assert read_counters(total, [isa.encode_counter(total, 0, 77)], "t") == {"total": 77}
    with pytest.raises(RuntimeError, match="counter busy, which counter_set 'total'"):
        read_counters(total, [isa.encode_counter(total, 1, 3)], "t")
    require_counters(total, ("total",), "x")
    with pytest.raises(ValueError, match="lacks busy"):
        require_counters(total, ("total", "busy"), "the cocotb regression")
    with pytest.raises(ValueError, match="counter_set 'none' lacks total"):
        require_counters(replace(CFG, counter_set="none"), ("total",), "the ASIC comparison")


def test_regression_refuses_a_lean_counter_set_before_building():
    from progressivenn.sim.runner import run_regression

    with pytest.raises(ValueError, match="cocotb regression reads the engine's counters"):
        run_regression("no-such-bundle", replace(CFG, counter_set="total"))


@pytest.mark.parametrize("baseline", [False, True], ids=["engine", "int8"])
def test_a_network_runs_bit_exact_with_each_counter_set(baseline):
    """The same image on the engine (k = 3) or the int8 baseline (k = 3) with every counter set:
    the same outputs as the golden model, the same ``total`` as with all six counters (counting
    stops when READ_COUNTERS loads its first beat, whatever follows), no counters at all with
    ``none`` (no CLEAR / READ sent), and the same exchange cycles apart from the beats not sent."""
    from bundles import random_bundle

    from progressivenn.hw.baseline import MACArray
    from progressivenn.sim.compare import compare_outputs, golden_outputs
    from progressivenn.sim.driver import infer
    from progressivenn.sim.engine_model import ModelTransport
    from progressivenn.sim.transport import AmaranthTransport

    base = EngineConfig(rows=4, cols=8, abits=8, nbits=4, max_reduction=64, mbits=18, bbits=40,
                        obits=32, wdepth=64, adepth=64, ppdepth=16, accdepth=16, pp_lanes=1,
                        counter_bits=32)
    b = random_bundle(2, nbits=4)
    k = 3
    exp = [e[0] for e in golden_outputs(b, b.test_x[:1], k)]
    seen = {}
    for counter_set in ("all", "total", "none"):
        cfg = replace(base, counter_set=counter_set)
        tr = AmaranthTransport(cfg, component=MACArray if baseline else None)
        res = tr.run(infer(b, cfg, b.test_x[0], k=k, baseline=baseline))
        cmp = compare_outputs(b, res.outputs, exp, k=k, image=0)
        assert cmp.compared > 0 and cmp.mismatches == 0, (counter_set, cmp.first)
        assert sorted(res.counters) == sorted(cfg.counter_names)
        seen[counter_set] = (res.counters, tr.cycles)
        if not baseline:     # the host's model of the engine answers the same beats
            mres = ModelTransport(cfg).run(infer(b, cfg, b.test_x[0], k=k))
            assert sorted(mres.counters) == sorted(cfg.counter_names)
    (c_all, t_all), (c_tot, t_tot), (c_none, t_none) = (seen[s] for s in ("all", "total", "none"))
    assert c_all["total"] == c_tot["total"] > 0 and c_none == {}
    assert t_all - t_tot == 5            # the five beats not sent
    assert t_none < t_tot


def test_pnn_build_counter_options_are_checked_before_anything_is_built(tmp_path, capsys):
    """``pnn build --counters / --counter-bits``: the streamed engine's (and the baseline's)
    counters; refused in resident mode and out of range, exit 2 before any synthesis."""
    from progressivenn.cli import main
    from progressivenn.hw.boards import board_spec
    from progressivenn.hw.build import with_counters

    spec = with_counters(board_spec("ulx3s-12f"), "total", 32)
    assert (spec.cfg.counter_set, spec.cfg.counter_bits) == ("total", 32)
    assert with_counters(board_spec("ulx3s-12f")).cfg == board_spec("ulx3s-12f").cfg
    out = str(tmp_path / "b")
    assert main(["build", "--board", "ulx3s-85f", "--counters", "total", "--out", out]) == 2
    assert "streamed-engine options" in capsys.readouterr().err
    assert main(["build", "--board", "ulx3s-12f", "--counter-bits", "8", "--out", out]) == 2
    assert "counter_bits must be an integer in [16, 64]" in capsys.readouterr().err
    assert main(["build", "--board", "ulx3s-12f", "--int8-pipelined", "--out", out]) == 2
    assert "--int8-pipelined needs --baseline" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
