"""Issue 13, never lose data: commands that write a folder refuse a non-empty target of another
kind, replace their own kind only with --force, write into a temporary sibling and rename at the
end (or, in place, mark the folder incomplete until done)."""

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


def test_in_place_interrupt_is_refused_by_name(tmp_path, capsys):
    out = tmp_path / "bench"
    with pytest.raises(KeyboardInterrupt):
        with output_dir(out, "bench", in_place=True) as d:
            (d / "partial.json").write_text("{}")
            raise KeyboardInterrupt
    assert json.loads((out / MARKER).read_text())["complete"] is False
    assert main(["bench", "--quick", "--out", str(out)]) == 2
    assert f"{out}: already holds an incomplete (interrupted) bench; pass --force" in _err(capsys)


def test_in_place_failure_before_any_output_leaves_nothing(tmp_path):
    out = tmp_path / "a" / "b" / "c"
    with pytest.raises(RuntimeError):
        with output_dir(out, "fpga-build", in_place=True):
            raise RuntimeError("tool missing")
    assert not (tmp_path / "a").exists()


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
