"""``pnn demo``: the whole story on the embedded default (scikit-learn's 8x8 digits)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

NAME = "demo"
HELP = ("train -> retrain BN -> eval -> export -> Verilog -> cocotb at every k (resident mode on "
        "Verilator by default) -> report, on the bundled 8x8 digits")


def add_arguments(p) -> None:
    p.add_argument("--out", default="demo", help="output folder (run, bundle, rtl, report)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: train's)")
    p.add_argument("--images", type=int, default=20, help="test images simulated at every k")
    p.add_argument("--bits", default="1-8", help="planes k simulated")
    p.add_argument("--mode", choices=["resident", "streamed"], default="resident",
                   help="resident (default): the whole network on chip, image in, class out "
                        "(docs/resident.md); streamed: the host feeds every layer (docs/engine.md)")
    p.add_argument("--simulator", "--sim", choices=["icarus", "verilator"], default=None,
                   help="default: verilator in resident mode, icarus in streamed mode")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-sim", action="store_true", help="stop after export and Verilog")
    p.add_argument("--force", action="store_true",
                   help="replace an existing output folder of the same kind (never another kind's)")


def _step(n: int, total: int, text: str) -> float:
    print(f"\n[{n}/{total}] {text}", file=sys.stderr, flush=True)
    return time.perf_counter()


def run(args) -> int:
    from ..outdir import output_dir
    from ..simulation import parse_bits

    if args.simulator is None:
        args.simulator = "verilator" if args.mode == "resident" else "icarus"

    bits = None if args.skip_sim else parse_bits(args.bits, 8)   # the demo trains N=8: check first
    # in place (the report names its own files); marked incomplete until the last step is done
    with output_dir(args.out, "demo", force=args.force, in_place=True, command="pnn demo") as out:
        return _demo(args, out, bits)


def _demo(args, out: Path, bits) -> int:
    """The steps, as Python API calls (``docs/api.md``); each step's time goes into the report."""
    import torch

    from .. import api

    torch.set_num_threads(1)         # these small nets gain nothing from more threads
    run_dir, bundle, rtl, rep = out / "run", out / "bundle", out / "rtl", out / "report"
    total = 6 if not args.skip_sim else 5
    times = {}

    t = _step(1, total, f"training a BWB CNN on the 8x8 digits (trained at k=8) -> {run_dir}")
    run = api.train("digits", epochs=args.epochs, seed=args.seed, progress=True, out=run_dir)
    last = run.logs["train"]["epochs"][-1]
    print(f"  loss {last['loss']:.4f} after {run.config['epochs']} epochs", file=sys.stderr)
    times["train_s"] = time.perf_counter() - t

    t = _step(2, total, "retraining the BN tables for every k")
    run.retrain_bn(progress=True).save()
    times["retrain_bn_s"] = time.perf_counter() - t

    t = _step(3, total, "accuracy at every k: fake-quant torch and the integer golden model")
    ev = run.evaluate()
    run.save()                       # eval.json next to the checkpoints
    _print_eval(ev)
    times["eval_s"] = time.perf_counter() - t

    t = _step(4, total, f"exporting the bundle -> {bundle}")
    b = run.export(bundle)
    times["export_s"] = time.perf_counter() - t

    if args.mode == "resident":
        cfg, sim = _resident(args, b, bundle, rtl, out, bits, total, times)
    else:
        cfg, sim = _streamed(args, api, b, bundle, rtl, out, bits, total, times)

    md = _write(rep, ev, sim, cfg, times)
    print(f"\nreport: {md}", file=sys.stderr)
    print(md.read_text())
    if sim and (sim["mismatches"] or sim["failed_tests"]):
        print("pnn demo: the RTL disagreed with the golden model", file=sys.stderr)
        return 1
    return 0


def _streamed(args, api, b, bundle, rtl, out, bits, total, times):
    """Steps 5 and 6 in streamed mode: the engine's Verilog, the cocotb regression."""
    cfg = api.engine_config(b, rows=8, cols=16)
    t = _step(5, total, f"generating Verilog for an R={cfg.rows} x C={cfg.cols} PE array -> {rtl}")
    v = api.generate_verilog(rtl, config=cfg)
    print(f"  {v} ({v.stat().st_size // 1024} KiB) with {v.stem}.json/.sdc/.xdc/.core/.vlt",
          file=sys.stderr)
    times["verilog_s"] = time.perf_counter() - t
    sim = None
    if not args.skip_sim:
        t = _step(6, total, f"cocotb on {args.simulator}: {args.images} test images x k="
                            f"{bits[0]}..{bits[-1]}, every layer compared with the golden model")
        from ..simulation import print_table

        sim = api.simulate(bundle, simulator=args.simulator, images=args.images, bits=bits,
                           seed=args.seed, build_dir=str(out / "sim_build"), config=cfg)
        print_table(sim, file=sys.stderr)
        times["sim_s"] = time.perf_counter() - t
    return cfg, sim


def _resident(args, b, bundle, rtl, out, bits, total, times):
    """Steps 5 and 6 in resident mode: the resident engine's Verilog (the network fits: checked
    before it is generated), the cocotb regression (image in, class out; every hidden layer read
    back and compared)."""
    from ..hw.resident.generate import generate_resident_verilog
    from ..sim import resident as rs
    from ..sim.resident_runner import (resident_config, run_resident_cocotb, summarize_resident,
                                       print_resident_table)

    cfg = resident_config(rows=8, cols=16, bundle=b)
    prog = rs.compile_program(b, cfg)       # ResidentFitError names the memory that is short
    t = _step(5, total, f"generating the resident engine's Verilog (R={cfg.rows} x C={cfg.cols}, "
                        f"{len(prog.layers)} program layers) -> {rtl}")
    v = generate_resident_verilog(cfg, rtl)
    print(f"  {v} ({v.stat().st_size // 1024} KiB) with {v.stem}.json", file=sys.stderr)
    times["verilog_s"] = time.perf_counter() - t
    sim = None
    if not args.skip_sim:
        t = _step(6, total, f"cocotb on {args.simulator}, resident: {args.images} test images x "
                            f"k={bits[0]}..{bits[-1]}, every layer compared with the golden model")
        rep = run_resident_cocotb(bundle, cfg, simulator=args.simulator, images=args.images,
                                  bits=bits, seed=args.seed, build_root=out / "sim_build",
                                  generated=v)
        sim = summarize_resident(rep, prog)
        print_resident_table(sim, file=sys.stderr)
        times["sim_s"] = time.perf_counter() - t
    return cfg, sim


def _print_eval(ev: dict) -> None:
    ks = sorted((k for k in ev["accuracy"] if k.isdigit()), key=int)
    print("   k  BN retrained  k=N BN   agreement", file=sys.stderr)
    for k in ks:
        print(f"  {k:>2}  {100 * ev['accuracy'][k]:10.2f}%  "
              f"{100 * ev['accuracy_no_bn_retrain'][k]:6.2f}%  {100 * ev['agreement'][k]:8.2f}%",
              file=sys.stderr)


def _write(rep: Path, ev: dict, sim, cfg, times: dict) -> Path:
    from ..report import write_report

    extra = {"engine": f"R={cfg.rows} rows x C={cfg.cols} lanes, A={cfg.abits}, N={cfg.nbits},"
                       f" accumulator {cfg.acc_width} bits",
             "seconds": {k[:-2]: round(v, 1) for k, v in times.items()}}
    if sim and sim.get("mode") == "resident":
        extra["mode"] = ("resident: the network loaded once; per image the image codes and RUN(k) "
                         "in, class, logits and counters out; cycles are one image's, compute "
                         "cycles its layers' busy cycles")
        extra["link_bytes_per_image"] = next(iter(sim["link_bytes_per_image"].values()))
        extra["simulated_cycles_per_s"] = {"image in to result out": sim["run_cycles_per_s"],
                                           "per CPU second": sim["run_cycles_per_cpu_s"]}
    return write_report(rep, ev, sim, extra)
