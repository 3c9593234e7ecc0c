"""cocotb test module: a command stream replayed against the generated Verilog of the on-chip
policy engine (``hw/resident/policy.py``: ``PolicyEngine``, ``cmd``/``res`` streams).

Started by :func:`.resident_policy.run_clips_cocotb`, never imported by hand. The configuration
(JSON named by ``PNN_POLICY_CONFIG``) names a JSON file of command beats (the network, the gates,
then per frame the image and its RUN_POLICY: the policy's state lives on chip, so the whole
stream is known before the run), how to count an answer's beats (``kind``/``err`` bit fields of a
result beat and the beats of an accepted answer) and the report file ``out``. This module only
moves beats: every result beat goes to the report in order, the host decodes and compares them.
Random idle command cycles (``p_idle``) and result back-pressure (``p_stall``), seeded. While
the chip computes (the next command not taken, no result offered) the bench sleeps until
``res.valid`` or ``cmd.ready`` rises instead of stepping every cycle.
"""

from __future__ import annotations

import json
import os
import random
import time

import cocotb
from cocotb.triggers import FallingEdge, First, ReadOnly, RisingEdge, Timer
from cocotb.utils import get_sim_time

from .cocotb_transport import start_and_reset

#: clock period in ns
PERIOD_NS = 10


@cocotb.test()
async def policy_stream(dut):
    """Send every command beat (valid/ready), collect every result beat until the last answer."""
    with open(os.environ["PNN_POLICY_CONFIG"]) as f:
        conf = json.load(f)
    with open(conf["commands"]) as f:
        cmds = [int(w, 16) for w in json.load(f)]
    rng = random.Random(conf["seed"])
    p_idle, p_stall = conf["p_idle"], conf["p_stall"]
    ks, km = conf["kind_shift"], (1 << conf["kind_width"]) - 1
    es, em = conf["err_shift"], (1 << conf["err_width"]) - 1
    summary, full = conf["summary_kind"], conf["answer_beats"]
    answers, limit = conf["requests"], conf["max_cycles"]
    # C++ clock, referenced by this local while the test runs
    clock = await start_and_reset(dut, PERIOD_NS, {"cmd__valid": 0, "res__ready": 0})
    beats, left, idx, cur = [], 0, 0, None
    start = int(get_sim_time("ns")) // PERIOD_NS
    t0 = time.perf_counter()
    while answers or left:
        await FallingEdge(dut.clk)
        cycles = int(get_sim_time("ns")) // PERIOD_NS - start
        if cycles > limit:
            raise AssertionError(f"no answer after {limit} cycles ({len(beats)} beats, "
                                 f"{idx} of {len(cmds)} commands sent)")
        if cur is None and idx < len(cmds) and not (p_idle and rng.random() < p_idle):
            cur = cmds[idx]
            dut.cmd__payload.value = cur
        dut.cmd__valid.value = int(cur is not None)
        take = not (p_stall and rng.random() < p_stall)
        dut.res__ready.value = int(take)
        await ReadOnly()
        taken = cur is not None and dut.cmd__ready.value == 1
        if taken:
            idx, cur = idx + 1, None
        offered = dut.res__valid.value == 1
        if not offered and not taken and (cur is not None or idx == len(cmds)):
            # waiting for the chip: sleep until it offers a result or takes commands again
            await First(RisingEdge(dut.res__valid), RisingEdge(dut.cmd__ready),
                        Timer(max(1, limit - cycles) * PERIOD_NS, unit="ns"))
            continue
        if take and offered:
            beat = int(dut.res__payload.value)
            beats.append(hex(beat))
            if left == 0:                       # an answer's SUMMARY: 1 beat if refused
                answers -= 1
                if (beat >> ks) & km != summary:
                    raise AssertionError(f"an answer starts with a beat of kind "
                                         f"{(beat >> ks) & km}, not SUMMARY")
                left = full if (beat >> es) & em == 0 else 1
            left -= 1
    with open(conf["out"], "w") as f:
        json.dump({"beats": beats, "cycles": int(get_sim_time("ns")) // PERIOD_NS - start,
                   "sim_seconds": time.perf_counter() - t0}, f)
