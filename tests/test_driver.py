"""The host driver: bundle -> engine commands, checked against the golden model.

With the Python reading of the engine spec (``sim/engine_model.py``) the driver is tested alone,
fast, over many shapes and tilings; with the Amaranth simulator it is tested against the RTL.
"""

import numpy as np
import pytest
import torch

from bundles import random_bundle
from progressivenn.hw.isa import EngineConfig
from progressivenn.model.golden import run_network
from progressivenn.sim.compare import compare_outputs, golden_outputs
from progressivenn.sim.driver import check_fits, im2col, infer, maxpool
from progressivenn.sim.engine_model import ModelTransport


def _check(bundle, cfg, transport, ks, images=2):
    for k in ks:
        gold = golden_outputs(bundle, bundle.test_x[:images], k)
        for n in range(images):
            res = transport.run(infer(bundle, cfg, bundle.test_x[n], k))
            cmp = compare_outputs(bundle, res.outputs, [g[n] for g in gold], k=k, image=n)
            assert cmp.mismatches == 0, cmp.first
            assert cmp.compared == sum(g[n].size for g in gold)


@pytest.mark.parametrize("rows,cols,wdepth,adepth", [
    (2, 4, 1024, 512),   # C does not divide I, R does not divide O
    (4, 16, 1024, 512),
    (1, 3, 64, 20),      # tiny memories: group passes and position tiles
    (8, 5, 40, 30),
])
def test_driver_matches_golden_on_engine_model(rows, cols, wdepth, adepth):
    b = random_bundle(seed=rows * 7 + cols, nbits=4)
    cfg = EngineConfig(rows=rows, cols=cols, abits=8, nbits=4, max_reduction=64, wdepth=wdepth,
                       adepth=adepth, ppdepth=64)
    _check(b, cfg, ModelTransport(cfg), ks=range(1, 5))


def test_im2col_matches_torch_unfold():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(3, 7, 5))
    for kernel, stride, pad in [((3, 3), (1, 1), (1, 1)), ((2, 3), (2, 1), (0, 1))]:
        ref = torch.nn.functional.unfold(torch.as_tensor(x[None]).double(), kernel, padding=pad,
                                         stride=stride)[0].T.long().numpy()
        assert np.array_equal(im2col(x, kernel, stride, pad), ref)


def test_maxpool_matches_torch():
    x = np.random.default_rng(2).integers(0, 256, size=(4, 6, 6))
    ref = torch.nn.functional.max_pool2d(torch.as_tensor(x[None]).double(), 2, 2)[0].long()
    assert np.array_equal(maxpool(x, (2, 2), (2, 2)), ref.numpy())


def test_bad_inputs_are_refused():
    b = random_bundle(nbits=4)
    cfg = EngineConfig(rows=2, cols=4, abits=8, nbits=4, max_reduction=64)
    with pytest.raises(ValueError, match="k must be"):
        next(infer(b, cfg, b.test_x[0], 5))
    with pytest.raises(ValueError, match="k must be"):
        next(infer(b, cfg, b.test_x[0], 0))
    with pytest.raises(ValueError, match="image shape"):
        next(infer(b, cfg, b.test_x[0][:, :3], 2))
    with pytest.raises(ValueError, match="max_reduction"):
        check_fits(b, EngineConfig(rows=2, cols=4, abits=8, nbits=4, max_reduction=20))
    with pytest.raises(ValueError, match="abits"):
        check_fits(b, EngineConfig(rows=2, cols=4, abits=6, nbits=4, max_reduction=64))
    with pytest.raises(ValueError, match="mbits|M does not fit"):
        check_fits(b, EngineConfig(rows=2, cols=4, abits=8, nbits=4, max_reduction=64, mbits=8))
    with pytest.raises(ValueError, match="obits"):
        check_fits(b, EngineConfig(rows=2, cols=4, abits=8, nbits=4, max_reduction=64, obits=8))
