"""Smoke test of the installed package (run by .ci/wheel-check from a fresh venv, outside the
checkout): the packaged data is there and the Python API works end to end on a tiny network,
Verilog included. Exits non-zero on the first failure."""

import sys
import tempfile
from pathlib import Path

import torch

import progressivenn as pnn
from progressivenn.resources import constraints_dir, doc

torch.set_num_threads(1)
for name in ("engine.md", "bundle.md", "boards.md", "api.md", "integration.md"):
    assert doc(name).stat().st_size > 0, name
assert (constraints_dir() / "icebreaker.pcf").is_file()

with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    run = pnn.train("digits", epochs=1, limit=200)
    run.retrain_bn(max_samples=200)
    bundle = run.export(tmp / "bundle")
    classes = pnn.predict(bundle, bundle.test_x[:4], k=2)
    assert classes.shape == (4,) and classes.dtype.kind == "i", classes
    acc = pnn.evaluate_bundle(tmp / "bundle", bits=[1, 8])["accuracy"]
    assert 0.0 <= acc["1"] <= 1.0 and 0.0 <= acc["8"] <= 1.0, acc
    v = pnn.generate_verilog(tmp / "rtl", rows=2, cols=4, max_reduction=64, name="smoke",
                             axis=True)
    text = (tmp / "rtl" / "smoke_pnn_engine.v").read_text()
    assert "module smoke_pnn_engine(" in text and "module pnn_engine(" not in text
    assert v.name == "smoke_pnn_engine_axis.v" and "s_axis_cmd_tdata" in v.read_text()
print(f"api smoke: progressivenn {pnn.__version__} from {Path(pnn.__file__).parent}: "
      f"golden accuracy k=1 {acc['1']:.3f}, k=8 {acc['8']:.3f}; Verilog ok", file=sys.stderr)
