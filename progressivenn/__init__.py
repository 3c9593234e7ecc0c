"""progressivenn: ProgressiveNN (BWB weights, accumulative bit-serial inference) as an FPGA engine.

``import progressivenn as pnn`` gives the Python API (``docs/api.md``): ``pnn.train``, ``pnn.Run``,
``pnn.from_sequential``, ``pnn.load_bundle``, ``pnn.predict``, ``pnn.evaluate_bundle``,
``pnn.generate_verilog``, ``pnn.simulate``, and the step list ``pnn.STEPS`` /
``pnn.FlowConfig`` / ``pnn.run_flow`` (defined in :mod:`progressivenn.api`, imported on first
use so that ``import progressivenn`` and ``pnn --help`` stay fast).

Subpackages: ``progressivenn.model`` (torch: quantizers, training, golden model, bundle),
``progressivenn.hw`` (Amaranth gateware), ``progressivenn.sim`` (driver, cocotb benches).
"""

__version__ = "0.1.0"

_API = ("Run", "train", "load_run", "from_sequential", "load_bundle", "save_bundle", "predict",
        "evaluate_bundle", "generate_verilog", "engine_config", "simulate", "STEPS", "FlowConfig",
        "run_flow")

__all__ = ["__version__", *_API]


def __getattr__(name):
    if name in _API:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'progressivenn' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
