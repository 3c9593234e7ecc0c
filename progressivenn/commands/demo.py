"""``pnn demo``: the whole story on the embedded default (scikit-learn's 8x8 digits), as the step
list of :mod:`progressivenn.flow` (``run_flow``: per-step seconds in ``flow.json``)."""

from __future__ import annotations

import sys
from pathlib import Path

NAME = "demo"
HELP = ("train -> retrain BN -> eval -> export -> Verilog -> cocotb at every k (resident mode on "
        "Verilator by default) -> report, on the bundled 8x8 digits")

#: the files the demo writes that record paths (rewritten from the temporary folder to --out)
PATH_FILES = ("flow.json", "sim.json", "report/report.json", "bundle/manifest.json")

ROWS, COLS = 8, 16                      # the demo's engine


def add_arguments(p) -> None:
    p.add_argument("--out", default="demo",
                   help="output folder: run/, bundle/, rtl/, sim.json, sim_build/, report/ and"
                        " flow.json (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: train's)")
    p.add_argument("--images", type=int, default=20,
                   help="test images simulated at every k")
    p.add_argument("--bits", default="1-8", help="planes k simulated")
    p.add_argument("--mode", choices=["resident", "streamed"], default="resident",
                   help="resident (default): the whole network on chip, image in, class out "
                        "(docs/resident.md); streamed: the host feeds every layer (docs/engine.md)")
    p.add_argument("--simulator", "--sim", choices=["icarus", "verilator"], default=None,
                   help="default: verilator in resident mode, icarus in streamed mode")
    p.add_argument("--seed", type=int, default=0, help="training and image seed")
    p.add_argument("--skip-sim", action="store_true", help="stop after export and Verilog")
    p.add_argument("--force", action="store_true",
                   help="replace an existing output folder of the same kind (never another kind's)")


def flow_config(args, out):
    """The demo as a :class:`progressivenn.flow.FlowConfig` writing into ``out``."""
    from ..flow import FlowConfig
    from ..simulation import parse_bits

    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, not {args.epochs}")
    if args.images < 1:
        raise ValueError(f"--images must be >= 1, not {args.images}")
    simulator = args.simulator or ("verilator" if args.mode == "resident" else "icarus")
    bits = None if args.skip_sim else parse_bits(args.bits, 8)   # the demo trains N=8
    return FlowConfig(out=Path(out), dataset="digits", epochs=args.epochs, seed=args.seed,
                      engine={"rows": ROWS, "cols": COLS}, mode=args.mode, simulator=simulator,
                      sim_images=args.images, bits=bits, progress=True,
                      title="progressivenn demo report")


def run(args) -> int:
    import torch

    from ..flow import STEPS, run_flow
    from ..outdir import check_target, output_dir, relocate_files

    cfg = flow_config(args, args.out)               # bad options named before anything is made
    check_target(args.out, "demo", force=args.force)
    steps = [s for s in STEPS if not (args.skip_sim and s == "sim")]   # every flow step
    torch.set_num_threads(1)         # these small nets gain nothing from more threads
    # written into a temporary sibling and renamed over the old result when complete
    with output_dir(args.out, "demo", force=args.force, command="pnn demo") as tmp:
        cfg.out = tmp
        console = _Console(cfg, args.out)
        flow = run_flow(cfg, steps=steps, before=console.before, after=console.after)
        cfg.out = Path(args.out)
        relocate_files(tmp, args.out, PATH_FILES)
    md = Path(args.out) / "report" / "report.md"
    print(f"\nreport: {md}", file=sys.stderr)
    print(md.read_text())
    sim = flow["steps"].get("sim")
    if sim and (sim["mismatches"] or sim["failed_tests"]):
        print("pnn demo: the RTL disagreed with the golden model", file=sys.stderr)
        return 1
    return 0


class _Console:
    """The demo's lines on stderr: a header before each step, what it found after it (paths
    name the final folder, not the temporary one the flow writes into)."""

    def __init__(self, cfg, final):
        self.cfg, self.final = cfg, Path(final)

    def before(self, name: str, i: int, n: int) -> None:
        c, f = self.cfg, self.final
        ks = c.bits or []
        what = {
            "train": f"training a BWB CNN on the 8x8 digits (trained at k=8) -> {f / 'run'}",
            "retrain_bn": "retraining the BN tables for every k",
            "eval": "accuracy at every k: fake-quant torch and the integer golden model",
            "export": f"exporting the bundle -> {f / 'bundle'}",
            "verilog": (f"generating the {'resident ' if c.mode == 'resident' else ''}engine's"
                        f" Verilog (R={ROWS} x C={COLS}) -> {f / 'rtl'}"),
            "sim": (f"cocotb on {c.simulator}{', resident' if c.mode == 'resident' else ''}: "
                    f"{c.sim_images} test images x k={','.join(map(str, ks))}"
                    f", every layer compared with the golden model"),
            "report": f"report -> {f / 'report'}",
        }[name]
        print(f"\n[{i}/{n}] {what}", file=sys.stderr, flush=True)

    def after(self, name: str, rec: dict) -> None:
        import json

        c = self.cfg
        if name == "train":
            loss = rec.get("loss")
            print(f"  loss {loss:.4f} after {rec['epochs']} epochs" if loss is not None
                  else f"  {rec['epochs']} epochs", file=sys.stderr)
        elif name == "eval":
            _print_eval(json.loads(c.path("run/eval.json").read_text()))
        elif name == "verilog":
            layers = f", {rec['program_layers']} program layers" if "program_layers" in rec else ""
            print(f"  {self.final / 'rtl' / rec['verilog']} ({rec['kib']} KiB{layers})",
                  file=sys.stderr)
        elif name == "sim":
            from ..outdir import relocate
            from ..sim.resident_runner import print_resident_table
            from ..simulation import print_table

            # the results/log/waves paths as they will be: under the final folder
            sim = relocate(json.loads(c.path("sim.json").read_text()), c.out, self.final)
            (print_resident_table if c.mode == "resident" else print_table)(sim, file=sys.stderr)


def _print_eval(ev: dict) -> None:
    ks = sorted((k for k in ev["accuracy"] if k.isdigit()), key=int)
    print("   k  BN retrained  k=N BN   agreement", file=sys.stderr)
    for k in ks:
        print(f"  {k:>2}  {100 * ev['accuracy'][k]:10.2f}%  "
              f"{100 * ev['accuracy_no_bn_retrain'][k]:6.2f}%  {100 * ev['agreement'][k]:8.2f}%",
              file=sys.stderr)
