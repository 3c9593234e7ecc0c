"""``pnn run``: classify a bundle's images on a resident board (or its simulation) over the UART
link, and check every answer against the integer golden model (``docs/run.md``)."""

from __future__ import annotations

import json
import math
import sys
import time

NAME = "run"
HELP = ("load a bundle into a resident-mode board over its serial port (skipped when the board "
        "already holds it), stream test images, print predictions and agreement with golden")

#: simulated boards: the same loop against a simulation instead of a serial port
SIM_PORTS = ("sim:amaranth", "sim:amaranth-uart", "sim:icarus", "sim:verilator")
#: deadlines on simulated ports, in simulated seconds (10 ns cycles): timeout, probe
SIM_TIMES = (0.02, 2e-4)


#: the baud rate `pnn build` gives every board by default (hw/boards.py FAST_BAUD)
DEFAULT_BAUD = 3_000_000


def add_arguments(p) -> None:
    p.add_argument("bundle", help="bundle directory written by `pnn export`")
    p.add_argument("--port", required=True,
                   help="serial device (/dev/ttyUSB1, COM3; needs pyserial), or sim:amaranth (the "
                        "bridge's byte streams in the Amaranth simulator), sim:amaranth-uart "
                        "(the UART pins, bit by bit: slower), sim:icarus or sim:verilator (the "
                        "generated Verilog under cocotb, byte streams)")
    p.add_argument("--k", type=int, default=None, help="planes per weight (default: the bundle's N)")
    p.add_argument("--policy", default=None, metavar="P",
                   help="choose k per image on chip: escalate, hybrid or fixed<k> (needs a board "
                        "with the policy wrapper; every sim: port has it)")
    p.add_argument("--threshold", type=int, default=None, metavar="T",
                   help="the policy's target accuracy in per-mille, 0..1000 (default 950)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--images", type=int, default=None,
                     help="first N test images of the bundle (default: 10, or all if fewer)")
    src.add_argument("--sequence", default=None, metavar="FILE",
                     help="test-image indices to run, in order: whitespace/comma separated text "
                          "or a JSON list (repeats allowed)")
    p.add_argument("--baud", type=int, default=DEFAULT_BAUD,
                   help="serial baud rate of a real port: the rate the board was built with "
                        "(`pnn build` defaults to 3 Mbaud; --baud 115200 there needs it here too)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds each operation may take beyond its bytes' line time")
    p.add_argument("--tables", choices=["retrained", "fixed"], default="retrained",
                   help="BN tables: retrained per k, or the k=N tables at every k")
    p.add_argument("--counters", action="store_true",
                   help="also fetch the per-layer busy counters of every image")
    p.add_argument("--force-load", action="store_true",
                   help="load the network even when the board reports its hash")
    p.add_argument("--no-overlap", action="store_true",
                   help="send each image only after the previous answer (default: the next image "
                        "is in flight while the board computes, answers still in order)")
    g = p.add_argument_group("simulated ports")
    g.add_argument("--rows", type=int, default=8, help="output channels in parallel (R)")
    g.add_argument("--cols", type=int, default=16, help="reduction lanes (C)")
    g.add_argument("--double-buffer", action="store_true",
                   help="build the engine with a double-buffered input (the next image is "
                        "written while the current one computes)")
    g.add_argument("--build-dir", default="build/sim",
                   help="sim:icarus / sim:verilator builds are kept here")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _indices(args, bundle) -> list:
    n = len(bundle.test_x)
    if args.sequence is not None:
        from pathlib import Path

        text = Path(args.sequence).read_text()
        try:
            vals = json.loads(text) if text.lstrip().startswith("[") else \
                [int(t) for t in text.replace(",", " ").split()]
        except ValueError as e:
            raise ValueError(f"--sequence {args.sequence}: not a list of image indices ({e})")
        if not vals:
            raise ValueError(f"--sequence {args.sequence}: no image indices")
        for v in vals:
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < n:
                raise ValueError(f"--sequence {args.sequence}: index {v!r} is not in [0, {n - 1}]")
        return list(vals)
    count = min(10, n) if args.images is None else args.images
    if not 1 <= count <= n:
        raise ValueError(f"--images must be in [1, {n}] (the bundle's test images), not {count}")
    return list(range(min(count, n)))


def _open_port(args, bundle, idx, k):
    """(byte port, description, ResidentLink options) for ``--port``; a simulated port builds the
    resident system for the ``--rows/--cols`` engine sized for the bundle. The cocotb ports run
    the whole loop in the simulator process and give its report instead of a port."""
    if not args.port.startswith("sim:"):
        return args.port, f"serial {args.port} at {args.baud} baud", {"timeout": args.timeout}
    if args.port not in SIM_PORTS:
        raise ValueError(f"--port {args.port}: unknown simulated port; use one of "
                         f"{', '.join(SIM_PORTS)} or a serial device")
    from ..hw.resident.system import ResidentSystem
    from ..sim.resident_runner import resident_config

    cfg = resident_config(rows=args.rows, cols=args.cols, bundle=bundle)
    if args.double_buffer:
        from dataclasses import replace

        cfg = replace(cfg, double_buffer=True)
    times = {"timeout": SIM_TIMES[0], "probe": SIM_TIMES[1]}
    engine = "policy" if args.policy is not None else None
    if engine:      # the policy wrapper continues the first layer where its accumulators fit
        from ..sim.resident import compile_program
        from ..sim.resident_policy import continuation_config

        cfg, _ = continuation_config(compile_program(bundle, cfg, args.tables))
    if args.port == "sim:amaranth":
        from ..sim.resident_link import AmaranthBytePort

        return AmaranthBytePort(ResidentSystem(cfg, 100e6, None, engine=engine),
                                max_cycles=20_000), \
            "Amaranth simulation, bridge byte streams (no UART bit timing)", times
    if args.port == "sim:amaranth-uart":
        from ..sim.serial_transport import AmaranthSerialPort

        dut = ResidentSystem(cfg, 100e6, 25_000_000, engine=engine)   # 4 cycles per bit
        return AmaranthSerialPort(dut, max_cycles=20_000), \
            "Amaranth simulation, UART pins (4 cycles per bit)", times
    from ..sim.resident_link import run_images_cocotb

    sim = args.port[4:]
    return run_images_cocotb(args.bundle, cfg, idx, k, simulator=sim, tables=args.tables,
                             counters=args.counters, build_root=args.build_dir, **times,
                             policy=args.policy, threshold=_threshold(args)), \
        f"{sim} under cocotb, generated Verilog, bridge byte streams", {}


def _threshold(args) -> int:
    return 950 if args.threshold is None else args.threshold


def run(args) -> int:
    from ..model.bundle import load_bundle

    if args.threshold is not None and args.policy is None:
        raise ValueError("--threshold needs --policy")
    if args.policy is not None and args.k is not None:
        raise ValueError("--k and --policy exclude each other (the policy chooses k)")
    if args.double_buffer and not args.port.startswith("sim:"):
        raise ValueError("--double-buffer is for simulated ports (a board has the engine it was "
                         "built with)")
    if args.baud <= 0 or not 0 < args.timeout < math.inf:       # nan too
        raise ValueError("--baud and --timeout must be positive (--timeout finite)")
    bundle = load_bundle(args.bundle)
    N = int(bundle.nbits)
    k = N if args.k is None else args.k
    if not 1 <= k <= N:
        raise ValueError(f"--k must be in [1, {N}] (the bundle's planes), not {k}")
    if args.policy is not None:     # named before a port is opened or a simulator built
        from ..model import dynamic as dyn
        dyn.make_policy(args.policy, N, dyn.GateTable({kk: {} for kk in range(1, N + 1)}),
                        _threshold(args))
    idx = _indices(args, bundle)
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr))

    port, where, opts = _open_port(args, bundle, idx, k)
    if isinstance(port, dict):                 # ran in a simulator process (cocotb)
        rep = port
    else:
        from ..sim.resident_link import ResidentLink, run_images

        link = ResidentLink(port, baud=args.baud, counters=args.counters, **opts)
        try:
            rep = run_images(link, bundle, idx, k, tables=args.tables, force_load=args.force_load,
                             log=log, policy=args.policy, overlap=not args.no_overlap,
                             threshold=_threshold(args))
        finally:
            link.close()
    rep = {"port": args.port, "where": where, **rep}
    rep["link_inferences_per_s_at_baud"] = round(args.baud / 10 / rep["link_cost"]["total"], 1)
    n = rep["images"]
    if args.json:
        print(json.dumps(rep, indent=1))
    else:
        how = f"policy {args.policy}" if args.policy else f"k={k}"
        print(f"{n} images at {how}: accuracy {rep['accuracy']:.3f} (golden "
              f"{rep['golden_accuracy']:.3f}), {rep['agree']}/{n} agree with golden bit for bit, "
              f"{rep['cycles_per_image']} cycles per image, {rep['wall_inferences_per_s']} "
              f"inferences/s wall clock, {rep['link_bytes_per_image']} link bytes per image "
              f"({rep['link_inferences_per_s_at_baud']} images/s at {args.baud} baud)")
    return 0 if rep["all_agree"] else 1
