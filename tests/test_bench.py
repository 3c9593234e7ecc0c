"""``pnn bench``: the figures it computes and the reports it writes.

The fast tests check the arithmetic (lane utilization, scalability ratios from counter reports) and
the report writers on a hand-made report; the whole bench on digits (RTL included) is ``slow``.
"""

import json
import math

import numpy as np
import pytest

from progressivenn.bench import (_scalability, lane_utilization, machine_info, report_markdown,
                                 write_report, write_results_md)
from progressivenn.cli import main


@pytest.mark.parametrize("i,o,r,c,want", [
    (144, 32, 8, 16, 1.0),            # 16 input channels x 3x3: full lanes, full rows
    (9, 16, 8, 16, 9 / 16),           # 1 input channel: 7 of 16 lanes padded
    (128, 10, 8, 16, 10 / 16),        # 10 outputs on 16 rows (2 groups of 8)
    (17, 8, 8, 16, 17 / 32),
])
def test_lane_utilization(i, o, r, c, want):
    assert math.isclose(lane_utilization(i, o, r, c), want)


def _fake_report(bundle, busy_extra=0):
    """A cocotb_bench report with per-layer counters: total = busy + 10*k + 50 (load overheads)."""
    from progressivenn.bench import _engine_for
    from progressivenn.sim.driver import plan_layers
    plans = plan_layers(bundle, _engine_for(bundle))
    per_k = {}
    for k in range(1, bundle.nbits + 1):
        layers = {}
        for p in plans:
            ideal = p.ideal_cycles(k)
            layers[p.name] = {"index": p.index, "cycles": ideal + busy_extra + 10 * k + 50,
                              "compute_cycles": ideal + busy_extra, "stall_cycles": 0,
                              "ideal_cycles": ideal}
        per_k[str(k)] = {"cycles": sum(v["cycles"] for v in layers.values()),
                         "compute_cycles": sum(v["compute_cycles"] for v in layers.values()),
                         "ideal_cycles": sum(v["ideal_cycles"] for v in layers.values()),
                         "layers": layers}
    cfg = _engine_for(bundle)
    return {"images": 1, "per_k": per_k, "engine": {"rows": cfg.rows, "cols": cfg.cols}}


def test_scalability_and_utilization_from_counters():
    from bundles import random_bundle
    b = random_bundle(nbits=4)
    rep = _fake_report(b)
    scal, util = _scalability(rep, b, 4)
    assert set(scal["per_k"]) == {"1", "2", "3", "4"}
    top = rep["per_k"]["4"]["cycles"]
    for k in range(1, 5):
        s = scal["per_k"][str(k)]
        assert s["ideal"] == k / 4
        assert math.isclose(s["measured"], rep["per_k"][str(k)]["cycles"] / top)
        assert s["measured_busy"] == pytest.approx(k / 4)        # busy == ideal scales exactly
        assert s["deviation"] == pytest.approx(s["measured"] / (k / 4) - 1)
    assert scal["per_k"]["1"]["deviation"] > 0                    # fixed overheads show up
    assert set(util["layers"]) == {"conv1", "conv2", "fc"}
    for name, u in util["layers"].items():
        assert u["busy_over_ideal"] == 1.0
        assert 0 < u["lane_utilization_total"] < u["lane_utilization"] <= 1
    # a busy counter above the ideal count is reported, not hidden
    _, util2 = _scalability(_fake_report(b, busy_extra=7), b, 4)
    assert all(u["busy_over_ideal"] > 1 for u in util2["layers"].values())


def _hand_report():
    acc = {str(k): 0.5 + k / 20 for k in range(1, 9)}
    return {
        "quick": True, "machine": machine_info(), "notes": ["a note"], "seconds": 12.0,
        "accuracy": {"digits": {m: {"retrained": acc, "fixed": {k: v - 0.1 for k, v in acc.items()},
                                    "agreement": {k: 1.0 for k in acc}, "float": 0.98,
                                    "epochs": 1, "train_images": 10, "test_images": 5,
                                    "source": "test", "train_seconds": 1.0}
                                for m in ("k8", "anyk")}},
        "residual": {"arch": "resnet8", "dataset": "digits", "layers": 14, "adds": 3, "epochs": 1,
                     "train_images": 10, "test_images": 5, "retrained": acc, "fixed": acc,
                     "rtl": {"simulator": "verilator", "images": 2, "mismatches": 0,
                             "compared_values": 100, "failed_tests": []}},
        "scalability": {"bundle": "digits", "images": 1, "engine": {"rows": 8, "cols": 16},
                        "per_k": {str(k): {"measured": k / 8 + 0.01, "measured_busy": k / 8,
                                           "ideal": k / 8, "deviation": 0.01 / (k / 8),
                                           "cycles": 100 * k, "busy": 90 * k,
                                           "ideal_cycles": 90 * k} for k in range(1, 9)},
                        "layers": {"conv1": {str(k): {"measured": k / 8, "ideal": k / 8}
                                             for k in range(1, 9)}},
                        "default_tiling": {"1": {"measured": 0.2, "deviation": 0.6},
                                           "8": {"measured": 1.0, "deviation": 0.0}}},
        "utilization": {"engine": {"rows": 8, "cols": 16}, "k": 8,
                        "layers": {"conv1": {"kind": "conv", "in_channels": 16, "I": 144, "O": 32,
                                             "busy_over_ideal": 1.0, "lane_utilization": 1.0,
                                             "lane_utilization_total": 0.9}}},
        "sim_cycles_per_s": {"verilator": 2000.0, "icarus": 1000.0},
        "golden_images_per_s": {"digits": 3000.0},
        "fpga": {"note": "not run"},
    }


def test_reports_are_written(tmp_path):
    rep = _hand_report()
    files = write_report(rep, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "bench.json").read_text())["quick"] is True
    md = (tmp_path / "out" / "report.md").read_text()
    for want in ("Accuracy vs k", "BN retrained", "fixed BN", "Scalability", "deviation from k/8",
                 "lane-ops / (R*C*busy)", "verilator", "0 mismatches", "a note"):
        assert want in md, want
    assert set(files["plots"]) == {"accuracy_vs_k.png", "cycles_vs_k.png", "utilization.png"}
    for p in files["plots"]:
        assert (tmp_path / "out" / p).stat().st_size > 1000
    res = write_results_md(rep, tmp_path / "results.md", command="pnn bench --quick --out X",
                           plot_dir="img")
    text = res.read_text()
    assert "pnn bench --quick --out X" in text and f"`nproc` = {rep['machine']['nproc']}" in text
    assert "](img/cycles_vs_k.png)" in text


def test_markdown_shows_the_numbers():
    md = report_markdown(_hand_report())
    assert "| BN retrained (%) | 55.00 | 60.00" in md
    assert "+8.00%" in md          # k=1 deviation 0.01/0.125


@pytest.mark.parametrize("argv,msg", [
    (["bench", "--out", "X", "--simulators", "modelsim"], "unknown simulator"),
    (["bench", "--out", "X", "--data-dir", "/nonexistent/mnist"], "no such directory"),
    (["bench", "--out", "X", "--threads", "-1"], "--threads"),
    (["bench", "--out", "X", "--from-runs", "/nonexistent"], "no such directory"),
    (["bench", "--out", "X", "--seeds", "0,x"], "--seeds: comma-separated integers"),
    (["bench", "--out", "X", "--mnist-seeds", "1,1"], "--mnist-seeds: give distinct"),
])
def test_cli_errors_are_one_line(argv, msg, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and "\n" not in err


@pytest.mark.slow
def test_bench_quick_digits_end_to_end(tmp_path, capsys):
    """The whole bench on digits only (no MNIST): every JSON key the issue asks for."""
    rc = main(["bench", "--quick", "--no-mnist", "--json", "--quiet", "--out", str(tmp_path)])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    acc = rep["accuracy"]["digits"]
    for mode in ("k8", "anyk"):
        for table in ("retrained", "fixed"):
            assert set(acc[mode][table]) == {str(k) for k in range(1, 9)}
    assert acc["k8"]["retrained"]["8"] > 0.9
    assert set(rep["scalability"]["per_k"]) == {str(k) for k in range(1, 9)}
    for k, s in rep["scalability"]["per_k"].items():
        assert s["measured_busy"] == pytest.approx(int(k) / 8)
    assert rep["residual"]["rtl"]["mismatches"] == 0
    assert all(u["busy_over_ideal"] == 1.0 for u in rep["utilization"]["layers"].values())
    assert set(rep["sim_cycles_per_s"]) == {"verilator", "icarus"}
    assert rep["golden_images_per_s"]["digits"] > 0
    assert "mnist" not in rep["accuracy"] and any("MNIST skipped" in n for n in rep["notes"])


def test_summary_lines_and_plot_copy(tmp_path):
    from progressivenn.bench import summary_lines
    rep = _hand_report()
    lines = summary_lines(rep)
    assert any("digits k8" in line and "k=1 55.00%" in line for line in lines)
    assert any("largest deviation from k/8 8.00%" in line for line in lines)
    write_report(rep, tmp_path / "out")
    write_results_md(rep, tmp_path / "docs" / "results.md", command="pnn bench", plot_dir="results",
                     plots_from=tmp_path / "out")
    assert (tmp_path / "docs" / "results" / "cycles_vs_k.png").is_file()


def test_seed_summary_gives_mean_and_spread():
    from progressivenn.bench import seed_summary
    runs = {s: {"retrained": {"1": a, "8": 0.99}, "fixed": {"1": a - 0.3, "8": 0.99},
                "agreement": {"1": 1.0, "8": 1.0}, "float": 0.99, "epochs": 2,
                "train_seconds": 1.0, "source": "test"}
            for s, a in ((0, 0.90), (1, 0.80), (2, 0.94))}
    r = seed_summary(runs)
    assert r["seeds"] == [0, 1, 2] and r["train_seconds"] == 3.0
    assert r["retrained"]["1"] == pytest.approx(0.88)
    sp = r["spread"]["retrained"]["1"]
    assert (sp["min"], sp["max"]) == (0.80, 0.94)
    assert sp["std"] == pytest.approx(float(np.std([0.90, 0.80, 0.94])))
    assert r["per_seed"]["1"]["retrained"]["1"] == 0.80
    rep = _hand_report()
    rep["accuracy"]["digits"]["k8"] = {**r, "train_images": 10, "test_images": 5}
    md = report_markdown(rep)
    assert "Seeds 0, 1, 2: mean" in md
    assert "| BN retrained, mean (%) | 88.00 | 99.00 |" in md
    assert "| BN retrained, min-max (%) | 80.00-94.00 | 99.00-99.00 |" in md
    from progressivenn.bench import summary_lines
    assert any("mean of seeds 0,1,2" in ln and "lowest seed 80.00%" in ln
               for ln in summary_lines(rep))


def test_accuracy_only_report_has_no_rtl_sections():
    rep = {k: v for k, v in _hand_report().items()
           if k in ("quick", "machine", "notes", "seconds", "accuracy")}
    md = report_markdown(rep)
    assert "Accuracy vs k" in md and "Simulation throughput" not in md and "## FPGA" not in md


class _Tty:
    """A stream that says it is a terminal and records what is written."""

    def __init__(self, tty=True):
        self.text, self.tty = "", tty

    def isatty(self):
        return self.tty

    def write(self, s):
        self.text += s

    def flush(self):
        pass


def test_progress_bar_draws_on_a_terminal_only():
    from progressivenn.progress import Progress, format_seconds
    tty = _Tty()
    with Progress(4, "bench", stream=tty) as bar:
        bar.step("training a")
        assert "0/4 |------------------------|   0%" in bar.line()
        bar.step("training b")
        bar.log("a log line")
        assert bar.line().startswith("[bench] 1/4 |######------------------|  25%")
        bar.step("rtl")
    assert "a log line\n" in tty.text and "\r\x1b[2K" in tty.text
    assert tty.text.endswith("\n") and "[bench] 3/4 |" + "#" * 18 in tty.text.splitlines()[-1]
    for quiet in (_Tty(tty=False), _Tty()):                # not a terminal; --json / --quiet
        with Progress(2, "bench", stream=quiet, enabled=quiet.tty is False) as bar:
            bar.step("x")
            bar.log("kept")
        assert quiet.text == "kept\n"
    assert [format_seconds(s) for s in (5, 65, 3725)] == ["5s", "1m05s", "1h02m"]
    with pytest.raises(ValueError, match="non-negative integer"):
        Progress(-1, "x")


def test_planned_steps_count_the_bench():
    from pathlib import Path

    from progressivenn.bench import BenchConfig, planned_steps
    cfg = BenchConfig(out=Path("x"), seeds=(0, 1, 2), accuracy_only=True)
    assert planned_steps(cfg) == 6                          # digits k8 + anyk per seed
    cfg = BenchConfig(out=Path("x"), seeds=(0,), data_dir=Path("m"), mnist_seeds=(0, 1), fpga=True)
    assert planned_steps(cfg, sims=["verilator", "icarus"]) == 2 + 4 + 1 + 1 + 3 + 2
    assert planned_steps(cfg, sims=[]) == 2 + 4 + 1 + 2


def test_rtl_sections_run_what_planned_steps_counts(monkeypatch, tmp_path):
    """bench_rtl on fake simulator runs: Verilator (when there) runs scalability and the default
    tiling, every simulator the throughput workload; planned_steps counts these runs."""
    from pathlib import Path

    import progressivenn.bench as bench
    from bundles import random_bundle

    b = random_bundle(nbits=4)
    calls = []

    def fake_rtl(cfg, bundle, name, sim, images, bits, layer_counters=True, stall=0.0,
                 tile="auto", tag=""):
        calls.append((sim, tuple(bits), tile))
        rep = _fake_report(bundle)
        rep.update(sim_time_ns=10 * 1000 * (2 if sim == "icarus" else 1), sim_seconds=2.0,
                   mismatches=0, compared_values=10, first_mismatch=None, build_seconds=1.0,
                   failed_tests=[], simulator=sim, bits=list(bits))
        return rep

    monkeypatch.setattr(bench, "_rtl_run", fake_rtl)
    cfg = bench.BenchConfig(out=tmp_path, seeds=(0,), progress=False)
    rep = bench.bench_rtl(cfg, {"digits-k8": b}, ["icarus", "verilator"])
    assert calls == [("verilator", (1, 2, 3, 4), "auto"), ("verilator", (1, 4), None),
                     ("icarus", (1, 2, 3, 4), "auto")]
    assert list(rep["sim_cycles_per_s"]) == ["icarus", "verilator"]      # the given order
    assert rep["sim_cycles_per_s"] == {"icarus": 1000.0, "verilator": 500.0}
    assert set(rep["rtl_runs"]) == {"digits-k8@verilator", "digits-k8@icarus"}
    assert rep["scalability"]["tile_positions"] == "auto" and rep["scalability"]["default_tiling"]
    assert rep["sim_workload"] == "digits-k8, 1 image, k = 1..4, per-layer counters"
    # planned: 2 accuracy nets + residual training + its RTL run + the 3 runs above
    assert bench.planned_steps(cfg, sims=["icarus", "verilator"]) == 2 + 1 + 1 + len(calls)
    assert bench.bench_rtl(cfg, {"digits-k8": b}, []) == {
        "scalability": {}, "utilization": {}, "sim_cycles_per_s": {}, "rtl_runs": {}}
    assert Path(cfg.out) == tmp_path


def test_bench_is_a_step_list_with_seconds_per_step(monkeypatch, tmp_path):
    """run_bench runs bench.STEPS in order (each adds its sections; seconds per step in the
    report and its markdown header); --accuracy-only stops after the first."""
    from pathlib import Path

    import progressivenn.bench as bench
    from progressivenn.bench_report import report_markdown

    assert [n for n, _ in bench.STEPS] == ["accuracy", "residual", "rtl", "golden_speed", "fpga"]
    ran = []

    def fake(name):
        def step(cfg, report, state):
            ran.append(name)
            report[f"section_{name}"] = True
        return step

    monkeypatch.setattr(bench, "STEPS", tuple((n, fake(n)) for n, _ in bench.STEPS))
    rep = bench.run_bench(bench.BenchConfig(out=tmp_path, progress=False))
    assert ran == [n for n, _ in bench.STEPS] and list(rep["step_seconds"]) == ran
    assert all(isinstance(v, float) for v in rep["step_seconds"].values())
    hand = dict(_hand_report(), step_seconds={"accuracy": 12.0, "rtl": 3.0})
    assert "(accuracy 12 s, rtl 3 s)." in report_markdown(hand)
    ran.clear()
    rep = bench.run_bench(bench.BenchConfig(out=Path(tmp_path), accuracy_only=True,
                                            progress=False))
    assert ran == ["accuracy"] and "--accuracy-only" in rep["notes"][-1]
