"""progressivenn: ProgressiveNN (BWB weights, accumulative bit-serial inference) as an FPGA engine.

Subpackages: ``progressivenn.model`` (torch: quantizers, training, golden model, bundle),
``progressivenn.hw`` (Amaranth gateware), ``progressivenn.sim`` (driver, cocotb benches).
"""

__version__ = "0.1.0"
