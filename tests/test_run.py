"""``pnn run`` against a simulated resident board: every image agrees with golden; bad options
are refused with one line and exit status 2."""

from __future__ import annotations

import json

import pytest

from progressivenn.cli import main
from progressivenn.model.bundle import save_bundle

from bundles import random_bundle


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "bundle"
    save_bundle(random_bundle(0, nbits=3, images=4, input_shape=(2, 4, 4), channels=(3, 2),
                              classes=3), path)
    return str(path)


def _run(capsys, *argv):
    code = main(["run", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_run_sim_amaranth_agrees_with_golden(bundle_dir, capsys):
    """Images overlapped (the default) on a double-buffered engine: answers in order, each
    agreeing with golden, no retry."""
    code, out, err = _run(capsys, bundle_dir, "--port", "sim:amaranth", "--k", "1", "--images",
                          "3", "--json", "--rows", "2", "--cols", "4", "--double-buffer")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["images"] == 3 and rep["k"] == 1 and rep["all_agree"] and rep["agree"] == 3
    assert rep["network_loaded"] is True and rep["overlap"] is True
    assert [r["image"] for r in rep["results"]] == [0, 1, 2]
    assert all(r["pred"] == r["golden"] and r["k"] == 1 for r in rep["results"])
    assert rep["cycles_per_image"] > 0 and rep["link"]["retries"] == 0
    # the bytes counted on the port are the protocol's cost (credits: whole messages)
    assert abs(rep["link_bytes_per_image"] - rep["link_cost"]["total"]) <= 6


@pytest.mark.parametrize("argv,msg", [
    (["--k", "9"], "--k must be in [1, 3]"),
    (["--images", "99"], "--images must be in [1, 4]"),
    (["--threshold", "900"], "--threshold needs --policy"),
    (["--k", "2", "--policy", "escalate"], "exclude each other"),
    (["--port", "sim:nothing"], "unknown simulated port"),
    (["--port", "/dev/null", "--double-buffer"], "--double-buffer is for simulated ports"),
])
def test_run_refuses_bad_options(bundle_dir, capsys, argv, msg):
    args = [bundle_dir, "--port", "sim:amaranth", *argv]
    if argv[:1] == ["--port"]:
        args = [bundle_dir, *argv]
    code, out, err = _run(capsys, *args)
    assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, err


def test_run_sequence_file(bundle_dir, capsys, tmp_path):
    seq = tmp_path / "seq.txt"
    seq.write_text("3, 9")
    code, _, err = _run(capsys, bundle_dir, "--port", "sim:amaranth", "--sequence", str(seq))
    assert code == 2 and "index 9 is not in [0, 3]" in err
    seq.write_text("")
    code, _, err = _run(capsys, bundle_dir, "--port", "sim:amaranth", "--sequence", str(seq))
    assert code == 2 and "no image indices" in err


@pytest.mark.slow
def test_run_sequence_over_the_uart_pins(bundle_dir, capsys, tmp_path):
    seq = tmp_path / "seq.json"
    seq.write_text("[3, 0, 3]")
    code, out, err = _run(capsys, bundle_dir, "--port", "sim:amaranth-uart", "--sequence",
                          str(seq), "--json", "--rows", "2", "--cols", "4", "--counters")
    assert code == 0, err
    rep = json.loads(out)
    assert [r["image"] for r in rep["results"]] == [3, 0, 3] and rep["all_agree"]
    assert all(len(r["busy"]) > 0 for r in rep["results"])


@pytest.mark.slow
@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_run_on_the_generated_verilog(bundle_dir, capsys, tmp_path, sim):
    from bundles import have_simulator

    if not have_simulator(sim):
        pytest.skip(f"{sim} is not installed (make setup installs it)")
    code, out, err = _run(capsys, bundle_dir, "--port", f"sim:{sim}", "--k", "2", "--images", "2",
                          "--json", "--rows", "2", "--cols", "4", "--build-dir", str(tmp_path))
    assert code == 0, err
    rep = json.loads(out)
    assert rep["all_agree"] and rep["agree"] == 2 and rep["simulator"] == sim
    assert rep["sim_cycles"] > 2 * rep["cycles_per_image"]


@pytest.mark.slow
def test_run_over_a_real_serial_port(bundle_dir, capsys):
    """``--port /dev/pts/N`` through pyserial: a pseudo-terminal whose other end a thread feeds
    to the simulated board (the byte-stream system in the Amaranth simulator)."""
    import os
    import threading

    pytest.importorskip("serial")
    from progressivenn.hw.resident.system import ResidentSystem
    from progressivenn.model.bundle import load_bundle
    from progressivenn.sim.resident_link import AmaranthBytePort
    from progressivenn.sim.resident_runner import resident_config

    cfg = resident_config(rows=8, cols=16, bundle=load_bundle(bundle_dir))
    board = AmaranthBytePort(ResidentSystem(cfg, 100e6, None), max_cycles=2000)
    master, slave = os.openpty()
    os.set_blocking(master, False)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                board.write(os.read(master, 4096))
            except BlockingIOError:
                pass
            out = board.read(4096)
            if out:
                os.write(master, out)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        code, out, err = _run(capsys, bundle_dir, "--port", os.ttyname(slave), "--k", "3",
                              "--images", "1", "--json", "--timeout", "60")
    finally:
        stop.set()
        t.join(5)
        os.close(master)
        os.close(slave)
    assert code == 0, err
    rep = json.loads(out)
    assert rep["all_agree"] and rep["config"]["rows"] == 8 and rep["network_loaded"]


@pytest.mark.slow
@pytest.mark.parametrize("policy,threshold", [("escalate", 900), ("hybrid", 500)])
def test_run_policy_on_chip_agrees_with_the_golden_policy(bundle_dir, capsys, policy, threshold):
    """--policy: the wrapper behind the bridge takes the golden policy's decision (k path,
    prediction), logits and busy counters on every image; the images form one clip."""
    code, out, err = _run(capsys, bundle_dir, "--port", "sim:amaranth", "--policy", policy,
                          "--threshold", str(threshold), "--images", "3", "--json",
                          "--rows", "2", "--cols", "4")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["policy"]["name"] == policy and rep["all_agree"] and rep["agree"] == 3
    assert rep["decisions_differ"] == rep["logit_mismatches"] == rep["busy_mismatches"] == 0
    assert all(r["path"] == r["golden_path"] and r["err"] == "OK" for r in rep["results"])


@pytest.mark.slow
def test_run_policy_on_verilator(bundle_dir, capsys, tmp_path):
    """--policy on sim:verilator: the generated Verilog of the bridge + policy wrapper (with a
    continuation memory) under cocotb agrees with the golden policy, logits and busy model."""
    from bundles import have_simulator

    if not have_simulator("verilator"):
        pytest.skip("verilator is not installed")
    code, out, err = _run(capsys, bundle_dir, "--port", "sim:verilator", "--policy", "hybrid",
                          "--threshold", "500", "--images", "4", "--json", "--rows", "2",
                          "--cols", "4", "--build-dir", str(tmp_path))
    assert code == 0, err
    rep = json.loads(out)
    assert rep["simulator"] == "verilator" and rep["all_agree"] and rep["agree"] == 4
    assert rep["decisions_differ"] == rep["logit_mismatches"] == rep["busy_mismatches"] == 0


def test_run_default_baud_is_the_boards_default():
    """`pnn run` talks to a board built by `pnn build` with no options."""
    from progressivenn.commands.run import DEFAULT_BAUD
    from progressivenn.hw.boards import FAST_BAUD, board_spec
    assert DEFAULT_BAUD == FAST_BAUD
    assert board_spec("icebreaker").baud == FAST_BAUD
    import inspect
    from progressivenn.sim.resident_link import ResidentLink
    from progressivenn.sim.serial_transport import SerialTransport
    for cls in (ResidentLink, SerialTransport):
        assert inspect.signature(cls).parameters["baud"].default == FAST_BAUD, cls
