"""The Python API: every example of docs/api.md executed (in order, one namespace, in a scratch
folder), and the API's own checks."""

import re
from pathlib import Path

import pytest

import progressivenn as pnn

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"
SLOW_TAG = "# (slow: RTL simulation)"


def doc_examples() -> list[str]:
    """The ```python blocks of docs/api.md, in order."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 6, "docs/api.md lost its examples"
    return blocks


def _run(blocks, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns = {"__name__": "api_md"}
    for i, src in enumerate(blocks):
        exec(compile(src, f"docs/api.md example {i + 1}", "exec"), ns)
    return ns


def test_api_md_examples(tmp_path, monkeypatch):
    ns = _run([b for b in doc_examples() if SLOW_TAG not in b], tmp_path, monkeypatch)
    # what the examples claim, checked
    assert (tmp_path / "out" / "bundle" / "manifest.json").is_file()
    assert len(ns["classes"]) == 1 and ns["logits"].shape == (1, 10)
    assert set(ns["res"]["accuracy"]) == {"1", "2", "8"}
    assert ns["again"].config["arch"] == "digits"
    assert (tmp_path / "out" / "rtl" / "mine_pnn_engine_axis.v").is_file()
    assert ns["v"].name == "mine_pnn_engine_axis.v"
    flow = tmp_path / "out" / "flow"
    assert list(ns["done"]["steps"]) == ["train", "retrain_bn", "eval", "export", "report"]
    assert (flow / "bundle" / "manifest.json").is_file() and (flow / "report" / "report.md").is_file()
    assert all(s["seconds"] > 0 for s in ns["done"]["steps"].values())
    # run.export writes like `pnn export`: an old bundle is replaced whole, other files refused
    from progressivenn.outdir import OutputError, kind_of
    (tmp_path / "out" / "bundle" / "stale.npy").write_bytes(b"old")
    ns["run"].export(tmp_path / "out" / "bundle", test_images=5)
    assert kind_of(tmp_path / "out" / "bundle") == ("bundle", True)
    assert not (tmp_path / "out" / "bundle" / "stale.npy").exists()
    with pytest.raises(OutputError, match="already holds a bundle; pass --force"):
        ns["run"].export(tmp_path / "out" / "bundle", force=False)
    with pytest.raises(OutputError, match="holds a verilog folder, not a bundle; refusing"):
        ns["run"].export(tmp_path / "out" / "rtl")


@pytest.mark.slow
def test_api_md_simulation(tmp_path, monkeypatch):
    ns = _run(doc_examples(), tmp_path, monkeypatch)
    assert ns["res"]["mismatches"] == 0 and Path(ns["res"]["results_xml"]).is_file()


def test_lazy_import_and_names():
    import subprocess
    import sys

    code = ("import sys, progressivenn as p; assert 'torch' not in sys.modules; "
            "assert callable(p.predict) and 'torch' not in sys.modules; print(sorted(p.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "simulate" in out.stdout
    with pytest.raises(AttributeError):
        pnn.no_such_thing


def test_predict_and_evaluate_bundle_agree_with_golden(tmp_path):
    import numpy as np

    from bundles import random_bundle
    from progressivenn.model import golden

    b = random_bundle(seed=2, nbits=4, images=6)
    for k in (1, 4):
        want = golden.run_network(b, b.test_x, k).pred.numpy()
        assert np.array_equal(pnn.predict(b, b.test_x, k), want)
    path = pnn.save_bundle(b, tmp_path / "b")
    res = pnn.evaluate_bundle(path, bits=[1, 4])
    want = float((golden.run_network(b, b.test_x, 4).pred.numpy() == b.test_y).mean())
    assert res["accuracy"]["4"] == want and res["n_test"] == 6
    with pytest.raises(ValueError, match="labels"):
        pnn.evaluate_bundle(b, images=b.test_x, labels=b.test_y[:2])


def test_bundle_needs_retrained_run():
    run = pnn.train("digits", epochs=1, limit=64)
    with pytest.raises(ValueError, match="retrain_bn"):
        run.export("never")


@pytest.mark.slow
def test_simulate_names_its_files_and_records_waves(tmp_path):
    from bundles import random_bundle

    b = random_bundle(seed=3, nbits=2, images=1)
    res = pnn.simulate(b, images=1, bits=[2], rows=2, cols=4, waves=True,
                       build_dir=tmp_path / "sim", stall=0.0)
    assert res["mismatches"] == 0 and res["failed_tests"] == []
    for key in ("results_xml", "sim_log", "waves"):
        assert Path(res[key]).is_file(), key
    assert res["waves"].endswith(".fst") and Path(res["waves"]).stat().st_size > 0
    assert res["cycles_over"] == "sums over 1 image(s) per k" and res["ratio_reference_k"] == 2


@pytest.mark.slow
def test_readme_example(tmp_path, monkeypatch):
    readme = DOC.parent.parent / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)
    assert len(blocks) == 1
    ns = _run(blocks, tmp_path, monkeypatch)
    assert ns["res"]["mismatches"] == 0 and (tmp_path / "out" / "rtl").is_dir()


def test_flow_steps_name_what_is_missing(tmp_path):
    """Each flow step reads the folder: resuming too late names the step to run first; unknown
    steps and a folder that is not a flow are refused."""
    from progressivenn.flow import FlowError
    from progressivenn.outdir import OutputError

    cfg = pnn.FlowConfig(tmp_path / "flow", epochs=1, limit=64)
    with pytest.raises(FlowError, match=r"run/? missing; run step 'train' first"):
        pnn.run_flow(cfg, start="retrain_bn")
    with pytest.raises(FlowError, match="bundle/? missing; run step 'export' first"):
        pnn.run_flow(cfg, steps=["verilog"])
    with pytest.raises(FlowError, match="unknown flow step 'fit'; the steps are train, "):
        pnn.run_flow(cfg, start="fit")
    with pytest.raises(FlowError, match="no flow steps"):
        pnn.run_flow(cfg, start="report", stop="train")
    done = pnn.run_flow(cfg, stop="train")
    assert list(done["steps"]) == ["train"] and done["config"]["limit"] == 64
    with pytest.raises(FlowError, match="not BN-retrained; run step 'retrain_bn' first"):
        pnn.run_flow(cfg, steps=["export"])
    with pytest.raises(FlowError, match="flow step eval: .* not BN-retrained"):
        pnn.run_flow(cfg, steps=["eval"])
    with pytest.raises(FlowError, match="eval.json missing; run step 'eval' first"):
        pnn.run_flow(cfg, steps=["report"])
    with pytest.raises(FlowError, match="flow mode 'onchip': choose one of streamed, resident"):
        pnn.run_flow(pnn.FlowConfig(tmp_path / "flow", mode="onchip"), steps=["report"])
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not a flow; refusing"):
        pnn.run_flow(pnn.FlowConfig(mine), stop="train")


def test_flow_resident_mode_takes_rows_and_cols_only(tmp_path):
    """mode="resident" sizes the resident engine from rows/cols; other engine keys are refused
    by name before anything is generated (the step functions are callable on their own)."""
    from bundles import random_bundle
    from progressivenn.flow import FlowError, _engine, step_verilog

    pnn.save_bundle(random_bundle(seed=2, nbits=4, images=1), tmp_path / "bundle")
    cfg = pnn.FlowConfig(tmp_path, mode="resident", engine={"rows": 4, "cols": 8, "pp_lanes": 2})
    with pytest.raises(FlowError, match="resident takes engine rows and cols only, not pp_lanes"):
        step_verilog(cfg)
    assert not (tmp_path / "rtl").exists()
    cfg.engine = {"rows": 4, "cols": 8}
    ecfg = _engine(cfg, pnn.load_bundle(tmp_path / "bundle"))
    assert type(ecfg).__name__ == "ResidentConfig" and (ecfg.rows, ecfg.cols, ecfg.nbits) == (4, 8, 4)
