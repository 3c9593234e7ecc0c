"""Issue 13 at the CLI: every expected failure is one line on stderr and exit status 2 (a traceback
only with --debug or PNN_DEBUG=1); ``pnn sim`` checks --bits and the fit before building anything;
damaged checkpoints are named."""

import errno
import json

import pytest
import torch

from progressivenn.cli import main
from progressivenn.commands.sim import parse_bits
from progressivenn.model.bundle import save_bundle
from progressivenn.model.nets import build_net

from bundles import random_bundle


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


@pytest.fixture
def bundle_dir(tmp_path):
    return save_bundle(random_bundle(1), tmp_path / "bundle")


@pytest.mark.parametrize("bits,msg", [
    ("1-100000000", "k=100000000, planes k must be in 1..4"),
    ("--", "--bits must look like"),
    ("0-3", "k=0"),
    ("3-1", "is empty"),
    ("1,,2", "--bits must look like"),
    ("a", "--bits must look like"),
    ("5", "k=5"),
])
def test_sim_bits_checked_before_anything(bits, msg, bundle_dir, tmp_path, capsys):
    build = tmp_path / "simbuild"
    assert main(["sim", str(bundle_dir), f"--bits={bits}", "--build-dir", str(build)]) == 2
    assert msg in _one_line(capsys)
    assert not build.exists()


def test_parse_bits_is_bounded():
    assert parse_bits("1-3,8", 8) == [1, 2, 3, 8]
    assert parse_bits(" 2 - 4 ", 4) == [2, 3, 4]
    with pytest.raises(ValueError, match="1..16"):
        parse_bits("1-" + "9" * 50)      # refused from the number, never expanded


def test_sim_checks_fit_before_building(bundle_dir, tmp_path, capsys):
    build = tmp_path / "simbuild"
    # conv1 reduces over 2*3*3 = 18 values; an engine for 8 cannot run it
    assert main(["sim", str(bundle_dir), "--max-reduction", "8", "--images", "2", "--build-dir", str(build)]) == 2
    assert "reduction length 18 exceeds the engine's max_reduction=8" in _one_line(capsys)
    assert not build.exists()


def _fail_with(monkeypatch, exc):
    import progressivenn.commands.verilog as verilog

    def boom(args):
        raise exc
    monkeypatch.setattr(verilog, "run", boom)


@pytest.mark.parametrize("exc,msg", [
    (OSError(errno.ENOSPC, "No space left on device", "/out/pnn_engine.v"),
     "/out/pnn_engine.v: No space left on device"),
    (PermissionError(errno.EACCES, "Permission denied", "/ro/x"), "/ro/x: Permission denied"),
    (OSError(errno.EROFS, "Read-only file system", "/ro"), "/ro: Read-only file system"),
    (MemoryError(), "out of memory"),
])
def test_os_errors_are_one_line(exc, msg, monkeypatch, capsys, tmp_path):
    _fail_with(monkeypatch, exc)
    assert main(["verilog", "--out", str(tmp_path / "v")]) == 2
    assert msg in _one_line(capsys)


def test_debug_shows_the_traceback(monkeypatch, tmp_path):
    _fail_with(monkeypatch, PermissionError(errno.EACCES, "Permission denied", "/ro/x"))
    with pytest.raises(PermissionError):
        main(["--debug", "verilog", "--out", str(tmp_path / "v")])
    with pytest.raises(PermissionError):
        main(["verilog", "--out", str(tmp_path / "v"), "--debug"])
    monkeypatch.setenv("PNN_DEBUG", "1")
    with pytest.raises(PermissionError):
        main(["verilog", "--out", str(tmp_path / "v")])


def test_a_bug_is_one_line_too(monkeypatch, capsys, tmp_path):
    _fail_with(monkeypatch, KeyError("oops"))
    assert main(["verilog", "--out", str(tmp_path / "v")]) == 3
    assert "internal error: KeyError" in _one_line(capsys)


def _fake_run(tmp_path):
    """A run folder with a real config and checkpoint of the digits net (no training)."""
    run = tmp_path / "run"
    run.mkdir()
    cfg = {"dataset": "digits", "arch": "digits", "data_dir": None, "nbits": 8, "abits": 8,
           "input_scale": 1 / 16, "input_shape": [1, 8, 8], "num_classes": 10}
    (run / "config.json").write_text(json.dumps(cfg))
    net = build_net("digits", nbits=8, abits=8, input_scale=1 / 16, input_shape=(1, 8, 8),
                    num_classes=10)
    torch.save(net.state_dict(), run / "model.pt")
    return run


@pytest.mark.parametrize("damage,msg", [
    (lambda p: p.write_bytes(p.read_bytes()[:len(p.read_bytes()) // 2]), "truncated or damaged"),
    (lambda p: p.write_bytes(b"\0" * 100), "truncated or damaged"),
    (lambda p: torch.save({"x": torch.zeros(1)}, p), "does not match"),
])
def test_damaged_checkpoint_is_named(damage, msg, tmp_path, capsys):
    run = _fake_run(tmp_path)
    damage(run / "model.pt")
    assert main(["retrain-bn", str(run), "--quiet"]) == 2
    err = _one_line(capsys)
    assert f"{run / 'model.pt'}: " in err and msg in err


def test_damaged_run_config_is_named(tmp_path, capsys):
    run = _fake_run(tmp_path)
    (run / "config.json").write_text("{not json")
    assert main(["retrain-bn", str(run), "--quiet"]) == 2
    assert f"{run / 'config.json'}: damaged run configuration" in _one_line(capsys)


@pytest.mark.parametrize("argv,msg", [
    (["--port", "/dev/nonexistent-tty"], "could not open port /dev/nonexistent-tty"),
    (["--port", "sim:nope"], "--port sim:nope: unknown simulated port"),
    (["--port", "sim:amaranth", "--k", "0"], "--k must be in [1, 4]"),
    (["--port", "sim:amaranth", "--k", "5"], "--k must be in [1, 4]"),
    (["--port", "sim:amaranth", "--timeout", "nan"], "--timeout must be positive"),
    (["--port", "sim:amaranth", "--timeout", "-1"], "--timeout must be positive"),
    (["--port", "sim:amaranth", "--images", "0"], "--images must be in [1, 4]"),
])
def test_run_bad_inputs_are_one_line(argv, msg, bundle_dir, capsys):
    """``pnn run`` with a bad port, k, timeout or image count: exit 2, one line naming it."""
    assert main(["run", str(bundle_dir), *argv]) == 2
    assert msg in _one_line(capsys)


def test_run_missing_bundle_is_one_line(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope"), "--port", "sim:amaranth"]) == 2
    assert f"{tmp_path / 'nope'}: not a bundle directory" in _one_line(capsys)


@pytest.mark.parametrize("argv,msg", [
    (["--policy", "nope"], "unknown policy 'nope'"),
    (["--policy", "fixed9"], "k must be in [1, 4], not 9"),
    (["--policy", "escalate", "--threshold", "5000"], "in [0, 1000] per-mille, not 5000"),
])
def test_run_bad_policy_refused_before_the_simulator_is_built(argv, msg, bundle_dir, tmp_path,
                                                              monkeypatch, capsys):
    """A bad --policy or --threshold is named before a port is opened or a simulator built."""
    import progressivenn.sim.resident_link as link

    def built(*a, **kw):
        raise AssertionError("the simulator was built before the policy was checked")
    monkeypatch.setattr(link, "run_images_cocotb", built)
    build = tmp_path / "simbuild"
    assert main(["run", str(bundle_dir), "--port", "sim:verilator", "--build-dir", str(build),
                 *argv]) == 2
    assert msg in _one_line(capsys)
    assert not build.exists()


@pytest.mark.parametrize("argv", [
    ["train", "--out", "RUN", "--threads", "-1"],
    ["eval", "BUNDLE", "--threads", "-2"],
    ["bench", "--out", "OUT", "--threads", "-1"],
])
def test_threads_refused_below_zero(argv, bundle_dir, tmp_path, capsys):
    """``--threads`` (commands.threads, shared by train, retrain-bn, eval and bench)."""
    argv = [str(bundle_dir) if a == "BUNDLE" else str(tmp_path / a) if a in ("RUN", "OUT")
            else a for a in argv]
    assert main(argv) == 2
    assert "--threads must be >= 0, not -" in _one_line(capsys)
    assert not (tmp_path / "RUN").exists() and not (tmp_path / "OUT").exists()
