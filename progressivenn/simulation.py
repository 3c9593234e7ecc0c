"""The cocotb regression as a library step (``pnn sim``, ``pnn.simulate``, ``pnn demo``): the
``--bits`` grammar, the argument checks, the summary dict that ``pnn sim --json`` prints and its
human table. JSON holds numbers as numbers and accuracies as fractions; the table shows percents."""

from __future__ import annotations

import sys

__all__ = ["parse_bits", "check_sim_args", "summarize", "print_table", "print_run_files",
           "resident_program"]


def parse_bits(text: str, nmax: int = 16) -> list[int]:
    """``"1-8"``, ``"1,2,4,8"`` or ``"3"`` -> sorted list of k in [1, ``nmax``].

    Every number is checked against ``nmax`` before a range is expanded, so ``1-100000000`` is
    a one-line error, never a list of a hundred million entries."""
    if not isinstance(text, str):     # argparse turns ``--bits=--`` into []
        text = " ".join(map(str, text)) or "--"
    form = f"--bits must look like 1-{nmax} or 1,2,4,8 (planes k in 1..{nmax}), not {text[:40]!r}"
    out = set()
    for part in text.split(","):
        ends = part.strip().split("-")
        if len(ends) > 2 or not all(e.strip().isdigit() for e in ends):
            raise ValueError(form)
        lo, hi = int(ends[0]), int(ends[-1])
        if lo < 1 or hi > nmax:
            bad = lo if lo < 1 else hi
            raise ValueError(f"--bits asks for k={bad}, planes k must be in 1..{nmax}"
                             f"{' (the bundle has N=' + str(nmax) + ')' if nmax < 16 else ''}")
        if lo > hi:
            raise ValueError(f"--bits range {part.strip()!r} is empty (write low-high)")
        out.update(range(lo, hi + 1))
    return sorted(out)


def check_sim_args(bundle, bits, images: int, stall: float) -> None:
    """One-line ValueErrors for a regression the bundle cannot serve."""
    if max(bits) > bundle.nbits or min(bits) < 1:
        raise ValueError(f"--bits asks for k={max(bits)} but the bundle has N={bundle.nbits}")
    if not 1 <= images <= len(bundle.test_x):
        raise ValueError(f"--images must be in [1, {len(bundle.test_x)}], not {images}")
    if not 0 <= stall < 1:
        raise ValueError(f"--stall must be in [0, 1), not {stall}")


def summarize(report: dict) -> dict:
    """The regression report in the shape ``pnn sim --json`` promises."""
    per_k = report["per_k"]
    ks = sorted(per_k, key=int)
    n = report["images"]
    top = str(max(int(k) for k in ks))
    total_cycles = sum(per_k[k]["cycles"] for k in ks)
    out = {
        "simulator": report["simulator"],
        "images": n,
        "bits": [int(k) for k in ks],
        "mismatches": report["mismatches"],
        "compared_values": report["compared_values"],
        "first_mismatch": report["first_mismatch"],
        "cycles": {k: per_k[k]["cycles"] for k in ks},
        "compute_cycles": {k: per_k[k]["compute_cycles"] for k in ks},
        "ideal_cycles": {k: per_k[k]["ideal_cycles"] for k in ks},
        "stall_cycles": {k: per_k[k]["stall_cycles"] for k in ks},
        "accuracy": {k: per_k[k]["correct"] / n for k in ks},
        "golden_accuracy": {k: per_k[k]["golden_correct"] / n for k in ks},
        "compute_ratio": {k: per_k[k]["compute_cycles"] / per_k[top]["compute_cycles"] for k in ks},
        "cycles_ratio": {k: per_k[k]["cycles"] / per_k[top]["cycles"] for k in ks},
        "utilization": {k: per_k[k]["ideal_cycles"] / per_k[k]["compute_cycles"] for k in ks},
        "failed_tests": report.get("failed_tests", []),
        "build_seconds": report["build_seconds"],
        "sim_seconds": report["sim_seconds"],
        "sim_cycles_per_s": round(total_cycles / report["sim_seconds"], 1),
        "ratio_reference_k": int(top),
        "cycles_over": f"sums over {n} image(s) per k",
        "run_dir": report.get("run_dir"),
        "results_xml": report.get("results_xml"),
        "sim_log": report.get("sim_log"),
        "waves": report.get("waves"),
    }
    return out


def print_table(s: dict, file=sys.stdout) -> None:
    """The human table of :func:`summarize`'s dict: accuracies in percent over the simulated
    images; cycles summed over them; ratios to the largest k simulated."""
    n, top = s["images"], s.get("ratio_reference_k", max(s["bits"]))
    print(f"{s['simulator']}: {n} images, {s['compared_values']} values compared, "
          f"{s['mismatches']} mismatches", file=file)
    print(f"    accuracy (%) over {n} images | cycles, summed over the {n} images "
          f"| ratios to k={top}", file=file)
    print(f" k  {'RTL':>6}  {'golden':>6}  {'total':>9}  {'compute':>9}  {'ideal':>9}  "
          f"{'compute/k' + str(top):>11}  {'k/' + str(top):>6}", file=file)
    for k in map(str, s["bits"]):
        print(f"{k:>2}  {100 * s['accuracy'][k]:6.1f}  {100 * s['golden_accuracy'][k]:6.1f}  "
              f"{s['cycles'][k]:>9d}  {s['compute_cycles'][k]:>9d}  {s['ideal_cycles'][k]:>9d}  "
              f"{s['compute_ratio'][k]:11.4f}  {int(k) / top:6.4f}", file=file)
    print(f"build {s['build_seconds']} s, simulation {s['sim_seconds']} s, "
          f"{s['sim_cycles_per_s']:.0f} simulated cycles/s", file=file)
    print_run_files(s, file)
    if s["first_mismatch"]:
        print(f"first mismatch: {s['first_mismatch']}", file=file)


def print_run_files(s: dict, file=sys.stdout) -> None:
    """The run's files named in a summary (either mode): cocotb's results, the log, the waves."""
    for key, label in (("results_xml", "results"), ("sim_log", "log"), ("waves", "waves")):
        if s.get(key):
            print(f"{label}: {s[key]}", file=file)


def resident_program(bundle, *, mode: str, rows: int, cols: int, tables: str,
                     streamed_only=()):
    """``(ResidentConfig, program)`` of resident mode (``docs/resident.md``) for ``bundle`` on an
    R x C array, or None where ``mode`` ``"auto"`` runs it streamed: ``streamed_only`` names
    options only the streamed engine takes, or the bundle does not fit (said on stderr). With
    ``mode`` ``"resident"`` both are one-line ValueErrors, raised before anything is built."""
    from .sim import resident as rs
    from .sim.resident_runner import resident_config

    if mode not in ("auto", "resident"):
        raise ValueError(f"mode must be auto, resident or streamed, not {mode!r}")
    if streamed_only:
        if mode == "resident":
            raise ValueError(f"resident mode takes rows/cols only, not "
                             f"{', '.join(streamed_only)} (streamed mode only)")
        return None
    cfg = resident_config(rows=rows, cols=cols, bundle=bundle)
    try:
        return cfg, rs.compile_program(bundle, cfg, tables)
    except rs.ResidentFitError as e:
        if mode == "resident":
            raise ValueError(f"{e}; --mode streamed runs it") from None
        print(f"pnn sim: {e}: running streamed", file=sys.stderr)
        return None
