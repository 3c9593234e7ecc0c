"""``pnn bench``: accuracy vs k, RTL scalability and utilization, simulation throughput (issue #7)."""

from __future__ import annotations

from .threads import add_threads_argument, set_threads

NAME = "bench"
HELP = ("measure accuracy vs k (with/without BN retraining, trained at N and any-k), RTL cycles vs k, "
        "array utilization and simulation throughput; write JSON + a markdown report with plots")


def add_arguments(p):
    p.add_argument("--out", required=True, metavar="DIR", help="folder for bench.json, report.md, "
                                                               "plots, bundles and simulator builds")
    p.add_argument("--quick", action="store_true",
                   help="small budget (< 10 min on 2 cores): MNIST subset / 1 epoch, 1-2 RTL images")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument("--data-dir", default=None,
                   help="MNIST idx folder (default: ../shared/data/mnist next to the repository "
                        "if it exists; otherwise MNIST is skipped with a note)")
    p.add_argument("--no-mnist", action="store_true", help="skip MNIST even if it is there")
    p.add_argument("--from-runs", default=None, metavar="DIR",
                   help="reuse RUN folders DIR/<dataset>-<k8|anyk> (after pnn retrain-bn) instead "
                        "of training them here; the report names each source")
    p.add_argument("--simulators", default="verilator,icarus",
                   help="comma-separated: verilator, icarus (default both)")
    p.add_argument("--fpga", action="store_true",
                   help="also run pnn build per board for LUTs/FFs/Fmax (slow; needs the YoWASP tools)")
    p.add_argument("--results-md", default=None, metavar="FILE",
                   help="also write FILE (e.g. docs/results.md) from the report")
    add_threads_argument(p, help="torch CPU threads (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the RTL and residual sections")
    p.add_argument("--seeds", default=None,
                   help="comma-separated seeds of the digits accuracy nets (default 0,1,2; --quick: "
                        "--seed only): the report gives the mean and the spread over them")
    p.add_argument("--accuracy-only", action="store_true",
                   help="only the accuracy section (no RTL, residual, throughput or FPGA runs)")
    p.add_argument("--mnist-seeds", default="0",
                   help="seeds of the MNIST accuracy nets (default 0: minutes per net on a CPU)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress lines or bar on stderr (the bar is drawn only on a terminal "
                        "and never with --json)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing output folder of the same kind (never another kind's)")


def _seeds(flag: str, text: str) -> tuple:
    try:
        seeds = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{flag}: comma-separated integers, not {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"{flag}: give distinct non-negative seeds, not {text!r}")
    return seeds


def run(args) -> int:
    import json
    import shlex
    import sys
    from pathlib import Path

    from progressivenn.bench import (BenchConfig, default_mnist_dir, run_bench, write_report,
                                     write_results_md)

    set_threads(args.threads)
    sims = tuple(s.strip() for s in args.simulators.split(",") if s.strip())
    for s in sims:
        if s not in ("verilator", "icarus"):
            raise ValueError(f"--simulators: unknown simulator {s!r} (verilator, icarus)")
    data_dir = None
    if not args.no_mnist:
        if args.data_dir is not None:
            data_dir = Path(args.data_dir)
            if not data_dir.is_dir():
                raise FileNotFoundError(f"--data-dir {data_dir}: no such directory")
        else:
            data_dir = default_mnist_dir()
    if args.from_runs is not None and not Path(args.from_runs).is_dir():
        raise FileNotFoundError(f"--from-runs {args.from_runs}: no such directory")
    cfg = BenchConfig(out=Path(args.out), quick=args.quick, data_dir=data_dir, fpga=args.fpga,
                      simulators=sims, from_runs=Path(args.from_runs) if args.from_runs else None,
                      seed=args.seed,
                      seeds=_seeds("--seeds", args.seeds or (str(args.seed) if args.quick
                                                             else "0,1,2")),
                      mnist_seeds=_seeds("--mnist-seeds", args.mnist_seeds),
                      accuracy_only=args.accuracy_only,
                      progress=not args.quiet, bar=not (args.quiet or args.json))
    from progressivenn.outdir import check_target, output_dir, relocate

    check_target(args.out, "bench", force=args.force)
    # written into a temporary sibling and renamed over the old result when complete; the
    # report's paths name the final folder
    with output_dir(args.out, "bench", force=args.force, command="pnn bench") as tmp:
        cfg.out = tmp
        report = relocate(run_bench(cfg), tmp, args.out)
        argv = sys.argv[1:]
        report["command"] = "pnn " + " ".join(shlex.quote(a) for a in argv) \
            if argv[:1] == ["bench"] else "pnn bench"
        write_report(report, tmp)
    out = Path(args.out)
    if args.results_md:
        write_results_md(report, args.results_md, command=report["command"],
                         plots_from=args.out, plot_dir=Path(args.results_md).stem)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"bench done in {report['seconds']:.0f} s -> {out / 'report.md'}, "
              f"{out / 'bench.json'}")
    return 0
