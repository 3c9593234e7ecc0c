"""``pnn eval``: accuracy per k (float, integer golden with and without BN retraining, agreement)."""

from __future__ import annotations

NAME = "eval"
HELP = "accuracy per k of a RUN: integer golden model with/without BN retraining, agreement"


def add_arguments(p):
    p.add_argument("run", metavar="RUN", help="run folder (after `pnn retrain-bn`)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--test-images", type=int, default=None,
                   help="test images used (default: all for digits, else the first 1000)")
    p.add_argument("--method", choices=("direct", "planes"), default="direct",
                   help="golden accumulation: direct (fast) or plane by plane (identical results)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: these small nets gain nothing from more and "
                        "oversubscribed cores slow torch down badly; 0: torch's default)")


def run(args) -> int:
    import json
    import time

    import torch

    from progressivenn.model.evaluate import evaluate
    from progressivenn.model.runs import check_run, write_json

    from .export import bundle_for_run

    run_dir = check_run(args.run)
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0, not {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    bundle, net = bundle_for_run(run_dir, test_images=args.test_images)
    res = evaluate(net, bundle, method=args.method)
    res["seconds"] = time.time() - t0
    write_json(run_dir / "eval.json", res)
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    n = bundle.nbits
    print(f"{bundle.dataset}: {res['n_test']} test images, N={n}, A={bundle.abits}; "
          f"float (unquantized) accuracy {res['accuracy']['float']:.4f}")
    print(f"{'k':>3} {'golden':>8} {'no BN retrain':>14} {'fake-quant':>11} {'agreement':>10}")
    for k in range(1, n + 1):
        s = str(k)
        print(f"{k:>3} {res['accuracy'][s]:>8.4f} {res['accuracy_no_bn_retrain'][s]:>14.4f} "
              f"{res['accuracy_fakequant'][s]:>11.4f} {res['agreement'][s]:>10.4f}")
    return 0
