"""cocotb test module: ``pnn run``'s loop (:func:`.resident_link.run_images`) against the generated
Verilog of ``ResidentSystem`` (byte streams, no UART bit timing) under Icarus or Verilator; with
``policy`` in the configuration, the system with the policy wrapper and the on-chip policy.

Started by :func:`.resident_link.run_images_cocotb`, never imported by hand. The configuration
comes as a JSON file named by ``PNN_RUN_CONFIG``; the report goes to the file it names (``out``).
The host runs unchanged in a cocotb bridge thread; its byte port (:class:`CocotbBytePort`) moves
the simulation forward only while the host waits for bytes, and sleeps through idle cycles.
"""

from __future__ import annotations

import json
import os

import cocotb
from cocotb.task import bridge, resume
from cocotb.triggers import ClockCycles, FallingEdge, First, ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

from ..model.bundle import load_bundle
from .resident_link import ResidentLink, run_images
from .cocotb_transport import start_and_reset
from .serial_transport import SimBytePort

#: clock period in ns
PERIOD_NS = 10


class CocotbBytePort(SimBytePort):
    """A byte port on the ``i``/``o`` byte streams of the DUT (``o.ready`` held high)."""

    def __init__(self, dut, *, max_cycles: int = 20_000):
        self.dut = dut
        self.period = PERIOD_NS * 1e-9
        self._queues(max_cycles, 1)   # ``cycles``: updated by the simulation side only

    def _now(self) -> int:
        self.cycles = int(get_sim_time("ns") // PERIOD_NS)
        return self.cycles

    def _advance(self) -> None:
        resume(self._pump)()

    async def _pump(self) -> None:
        """Run the simulation, sending queued bytes, until a byte comes back (or max_cycles)."""
        dut = self.dut
        end = self._now() + self.max_cycles
        while True:
            send = bool(self.tx_queue)
            dut.i__valid.value = int(send)
            if send:
                dut.i__payload.value = self.tx_queue[0]
            await ReadOnly()
            if send and dut.i__ready.value == 1:
                del self.tx_queue[0]              # taken at the coming rising edge
            got = dut.o__valid.value == 1
            if got:
                self.rx_buf.append(int(dut.o__payload.value))
            if not send and not got and self._now() < end:     # idle: sleep until a byte
                await First(RisingEdge(dut.o__valid), ClockCycles(dut.clk, end - self.cycles))
            await FallingEdge(dut.clk)
            if self.rx_buf or self._now() >= end:
                dut.i__valid.value = 0
                return


@cocotb.test()
async def pnn_run(dut):
    """Load the bundle, classify the images, check each against the golden model."""
    with open(os.environ["PNN_RUN_CONFIG"]) as f:
        conf = json.load(f)
    # C++ clock, referenced by this local while the test runs
    clock = await start_and_reset(dut, PERIOD_NS, {"i__valid": 0, "o__ready": 1})
    port = CocotbBytePort(dut)
    bundle = load_bundle(conf["bundle"])

    def session():
        link = ResidentLink(port, timeout=conf["timeout"], probe=conf["probe"],
                            counters=conf["counters"])
        return run_images(link, bundle, conf["indices"], conf["k"], tables=conf["tables"],
                          force_load=conf["force_load"], log=dut._log.info,
                          policy=conf.get("policy"), threshold=conf.get("threshold", 950))

    rep = await bridge(session)()
    rep["sim_cycles"] = port._now()
    with open(conf["out"], "w") as f:
        json.dump(rep, f)
    assert rep["all_agree"], "an image differs from the golden model"
