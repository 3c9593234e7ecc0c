"""The progress file between a cocotb test process and the runner (sim/progress_file.py): lines
appended by ``note`` step a Progress bar through ``ProgressWatcher``; no simulator involved."""

import io
import time
from pathlib import Path

from progressivenn.progress import Progress
from progressivenn.sim import progress_file as pf


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_note_writes_only_when_the_variable_is_set(tmp_path, monkeypatch):
    path = tmp_path / "p.txt"
    monkeypatch.delenv(pf.ENV, raising=False)
    pf.note("image 1/2 k=1 done")
    assert not path.exists()
    monkeypatch.setenv(pf.ENV, str(path))
    pf.note("image 1/2 k=1 done")
    pf.note("image 2/2\nk=1 done")
    assert path.read_text().splitlines() == ["image 1/2 k=1 done", "image 2/2 k=1 done"]


def test_watcher_steps_once_per_complete_line(tmp_path):
    path = tmp_path / "p.txt"
    bar = Progress(pf.sim_steps(2, [1, 2]), "sim", stream=_Tty())
    assert bar.total == 6
    bar.step("building")
    bar.step("simulating")
    w = pf.ProgressWatcher(bar, path, interval=0.01)
    assert w.env() == {pf.ENV: str(path)}
    assert w.poll() == 0                     # no file yet
    path.write_text("image 1/2 k=1 done\nimage 1/2 k=")   # second line still being written
    assert w.poll() == 1
    assert bar.done == 2 and bar.what == "image 1/2 k=1 done"
    with open(path, "a") as f:
        f.write("2 done\n")
    assert w.poll() == 1 and bar.what == "image 1/2 k=2 done"
    assert w.poll() == 0 and bar.done == 3
    bar.close()
    assert "[sim]" in bar.stream.getvalue()


def test_watcher_thread_polls_while_open_and_reads_the_rest_on_exit(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("stale line of an earlier run\n")
    bar = Progress(4, "sim", stream=_Tty())
    with pf.ProgressWatcher(bar, path, interval=0.01) as w:
        assert not path.exists()             # a stale file is removed on entry
        with open(path, "a") as f:
            f.write("a\n")
        deadline = time.monotonic() + 5
        while w.lines < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert w.lines == 1 and bar.what == "a"
        with open(path, "a") as f:
            f.write("b\nc\n")
    assert w.lines == 3 and bar.what == "c"


def test_no_bar_no_thread_no_variable(tmp_path):
    with pf.ProgressWatcher(None, tmp_path / "p.txt") as w:
        assert w.env() == {} and w._thread is None


def test_streamed_run_steps_the_bar_per_image_and_k(tmp_path):
    """A real (small) Icarus run: the build, then one step per image x k from the simulator."""
    import pytest
    from bundles import have_simulator, random_bundle

    from progressivenn.hw.isa import EngineConfig
    from progressivenn.model.bundle import save_bundle
    from progressivenn.sim.runner import run_regression
    from test_cocotb import BUILD

    if not have_simulator("icarus"):
        pytest.skip("icarus is not installed (make setup installs it)")
    save_bundle(random_bundle(seed=3, nbits=4, images=2), tmp_path / "bundle")
    cfg = EngineConfig(rows=2, cols=4, abits=8, nbits=4, max_reduction=64, wdepth=64, adepth=32,
                       ppdepth=32, accdepth=32)
    stream = _Tty()
    with Progress(pf.sim_steps(2, [1, 3]), "sim", stream=stream) as bar:
        rep = run_regression(tmp_path / "bundle", cfg, images=2, bits=[1, 3], reset_test=False,
                             stall=0.0, build_root=BUILD, progress=bar)
        assert bar.done == 1 + 2 * 2 and bar.what == "k=3 image 2/2 done"
    assert rep["mismatches"] == 0 and rep["failed_tests"] == []
    assert bar.done == bar.total == 6
    assert (Path(rep["run_dir"]) / "progress.txt").read_text().splitlines() == [
        f"k={k} image {n}/2 done" for k in (1, 3) for n in (1, 2)]
    assert "[sim] 6/6" in stream.getvalue()
