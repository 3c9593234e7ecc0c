"""``pnn sim --waves`` and the run's file paths in resident mode: the JSON names ``results_xml``,
``sim_log`` and ``waves`` as in streamed mode, and the waveform file is written (Icarus: FST of
the bench top; Verilator: ``dump.vcd``); ``pnn.simulate(..., mode="resident", waves=True)`` too."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

import progressivenn as pnn
from progressivenn.cli import main
from progressivenn.model.bundle import save_bundle
from progressivenn.sim.resident_runner import BENCH_TOP, print_resident_table

from bundles import have_simulator, random_bundle

KEYS = ("results_xml", "sim_log", "waves")


def _check_files(res: dict, suffix: str) -> None:
    assert res["mode"] == "resident"
    assert res["mismatches"] == 0 and res["failed_tests"] == [], res["sim_log"]
    for key in KEYS:
        assert Path(res[key]).is_file(), key
        assert Path(res[key]).parent == Path(res["run_dir"]), key
    assert res["waves"].endswith(suffix) and Path(res["waves"]).stat().st_size > 0
    assert "<testcase" in Path(res["results_xml"]).read_text()


@pytest.mark.skipif(not have_simulator("icarus"), reason="icarus is not installed (make setup)")
def test_cli_resident_waves_icarus(tmp_path, capsys):
    """``pnn sim --mode resident --waves --json`` on Icarus (one image, k=1, no build kept): the JSON
    names the three files, the FST is not empty, and the table names them too."""
    save_bundle(random_bundle(seed=3, nbits=2, images=1), tmp_path / "b")
    argv = ["sim", str(tmp_path / "b"), "--mode", "resident", "--simulator", "icarus",
            "--images", "1", "--bits", "1", "--stall", "0", "--rows", "4", "--cols", "8",
            "--build-dir", str(tmp_path / "sim"), "--waves"]
    assert main(argv + ["--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    _check_files(res, f"{BENCH_TOP}.fst")
    assert res["waves"] != res["sim_log"] and "-waves" not in res["run_dir"]
    # the waves build has a folder of its own next to the run folders
    assert any(p.name.endswith("-waves") for p in (tmp_path / "sim").iterdir())
    out = io.StringIO()
    print_resident_table(res, out)              # the table names them too
    for key, label in zip(KEYS, ("results", "log", "waves")):
        assert f"{label}: {res[key]}" in out.getvalue(), out.getvalue()


def test_api_resident_mode_refuses_streamed_only_parameters(tmp_path):
    """``mode="resident"`` takes rows/cols only: anything else is a one-line error before any
    build; an unknown mode is one too."""
    b = random_bundle(seed=3, nbits=2, images=1)
    with pytest.raises(ValueError, match="resident mode takes rows/cols only, not pp_lanes"):
        pnn.simulate(b, mode="resident", pp_lanes=2, build_dir=tmp_path, images=1)
    with pytest.raises(ValueError, match="mode must be auto, resident or streamed"):
        pnn.simulate(b, mode="onchip", build_dir=tmp_path, images=1)
    assert not (tmp_path / "runs").exists()         # nothing was run


@pytest.mark.slow
@pytest.mark.skipif(not have_simulator("verilator"), reason="verilator is not installed")
def test_api_resident_waves_verilator(tmp_path):
    """``pnn.simulate(..., mode="resident", simulator="verilator", waves=True)``: a Verilator
    build with ``--trace`` (minutes), ``dump.vcd`` in the run folder, the same keys."""
    b = random_bundle(seed=3, nbits=2, images=1)
    res = pnn.simulate(b, mode="resident", simulator="verilator", images=1, bits=[2], rows=4,
                       cols=8, waves=True, build_dir=tmp_path / "sim", stall=0.0)
    _check_files(res, "dump.vcd")
    assert "$enddefinitions" in Path(res["waves"]).read_text()[:100_000]
