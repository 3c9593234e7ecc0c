"""Issue 13, isolation: two ``pnn sim`` runs in one build folder at the same time each report
their own images and bits (they used to share ``<build>/<sim>-<cfg>/regression/report.json``), and
the shared simulator build stays usable (a lock: exclusive to compile, shared to simulate)."""

import json
import subprocess
import sys

import pytest

from bundles import have_simulator, random_bundle
from progressivenn.model.bundle import save_bundle


def test_run_dirs_are_unique_and_the_build_lock_excludes(tmp_path):
    import fcntl
    import os

    from progressivenn.sim.runner import _build_lock, new_run_dir

    dirs = {new_run_dir(tmp_path, "regression") for _ in range(20)}
    assert len(dirs) == 20 and all(d.parent == (tmp_path / "runs").resolve() for d in dirs)
    with _build_lock(tmp_path / "b") as lock:
        lock(False)                                   # a simulation is running from the build
        fd = os.open(tmp_path / "b" / ".lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)   # another simulation may start
            fcntl.flock(fd, fcntl.LOCK_UN)
            with pytest.raises(BlockingIOError):              # a rebuild must wait
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)


@pytest.mark.slow  # two Icarus runs side by side: ~40 s of CPU
@pytest.mark.skipif(not have_simulator("icarus"), reason="Icarus Verilog (iverilog) not installed")
def test_two_sims_in_one_folder_at_once(tmp_path):
    bundle = save_bundle(random_bundle(3), tmp_path / "bundle")
    build = tmp_path / "simbuild"
    runs = {"a": (1, "1"), "b": (2, "2,4")}          # images, bits: different on purpose
    procs = {}
    for name, (images, bits) in runs.items():
        argv = [sys.executable, "-m", "progressivenn", "sim", str(bundle), "--json", "--stall", "0",
                "--rows", "4", "--cols", "4", "--images", str(images), "--bits", bits,
                "--mode", "streamed",
                "--build-dir", str(build)]
        procs[name] = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
    for name, (images, bits) in runs.items():
        out, err = procs[name].communicate(timeout=600)
        assert procs[name].returncode == 0, err
        rep = json.loads(out)
        assert rep["images"] == images and rep["bits"] == [int(k) for k in bits.split(",")]
        assert rep["mismatches"] == 0
        assert json.loads((tmp_path / rep["run_dir"] / "config.json").read_text())["images"] \
            == images
    dirs = sorted(p.name for p in (build / "runs").iterdir())
    assert len(dirs) == 2 and all(d.startswith("regression-") for d in dirs)
    assert len([p for p in build.iterdir() if p.name.startswith("icarus-")]) == 1  # one build
