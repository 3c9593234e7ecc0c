"""Dynamic bit-precision: choose the number of planes k per frame of a sequence.

A policy sees, for each frame, the prediction and confidence the network produced at the k it
chose, and decides whether to accept them or to spend more planes on the frame (escalate), and at
which k the next frame starts. Every decision is integer-only: the confidence of a result is the
margin ``top1 - top2`` of its integer logits, and "confident at target t" means

    margin >= gate(k, t)

with ``gate(k, t)`` an integer fixed before any frame runs (:class:`Calibration`): the smallest
margin at which results at k were right at least ``t`` per-mille of the time on labelled
calibration frames. Calibrating per k matters: the logit scale of the exported network differs
from k to k, and so does how much a given margin can be trusted.

Policies (stateful per clip; :meth:`Policy.reset` at each clip start):

- ``fixed<k>``: always k (the baseline curve).
- ``escalate``: start at the lowest of ``levels``; while not confident, go to the next level.
- ``temporal``: start each frame at the previous frame's k; after the frame step up one plane when
  it was not confident, down one when it passed a stricter target. Never escalates within a frame,
  so it never recomputes anything.
- ``hybrid`` (this project's policy): ``temporal``'s starting level plus within-frame escalation
  plus a temporal prior: a result whose prediction agrees with the previous frame's accepted
  prediction is accepted at a much relaxed target. Stable stretches of a clip run at low k without
  escalating; a change (occlusion, a hard pose) breaks the agreement and escalates.

The prediction of a frame is always the network's own output on that frame at its final k; the
previous frame only informs the *decision*.

Cost accounting (:class:`CostModel`) is exact for the engine's streamed-layers mode. A frame whose
policy visited ``k_1 < k_2 < ... < k_m`` costs, in planes of each compute layer:

- first compute layer: ``k_m`` planes when the engine can continue it (its input, the frame, does
  not change: RUN with ``k_start`` resumes from the accumulators saved in the engine), else
  ``k_1 + ... + k_m``;
- every later compute layer: ``k_1 + ... + k_m`` planes: its input depends on k, so it is
  recomputed from scratch at every visited k.

``avg_planes`` is that cost in planes of the whole network (ideal engine cycles divided by the
ideal cycles of one plane of every layer), so fixed k costs exactly k, and an escalation ``1 -> 2``
of the digits network costs 2.82 planes, not 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["CostModel", "LogitTable", "confidence", "Policy", "FixedPolicy",
           "EscalatePolicy", "TemporalPolicy", "HybridPolicy", "POLICIES", "make_policy",
           "run_policy", "evaluate", "golden_logits", "sweep", "fixed_curve", "interp_fixed",
           "DEFAULT_THRESHOLDS", "Calibration", "GateTable", "frontier", "summarize_policies",
           "pick", "operating_points"]

#: target accuracies (per-mille) swept by default
DEFAULT_THRESHOLDS = (0, 500, 700, 800, 850, 880, 900, 910, 920, 925, 930, 935, 940, 945, 950,
                      960, 970, 975, 980, 985, 990, 995, 998, 1000)


# ---- cost --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CostModel:
    """Per-plane cost of each compute layer of a network on an engine.

    ``cycles[l]``: ideal array cycles of one plane of compute layer ``l``
    (``P * ceil(I/C) * ceil(O/R)``, ``sim.driver.LayerPlan.ideal_cycles(1)``); ``passes[l]``: plane
    passes of one plane (``P * ceil(O/R)``, what the engine's ``plane_passes`` counter counts);
    ``continuation``: whether the first layer can be continued from saved accumulators.
    """

    cycles: tuple
    passes: tuple
    continuation: bool = True

    def __post_init__(self):
        if not self.cycles or len(self.cycles) != len(self.passes):
            raise ValueError("cycles and passes need one entry per compute layer")
        if any(int(c) < 1 for c in self.cycles) or any(int(p) < 1 for p in self.passes):
            raise ValueError("per-plane cycles and passes must be positive integers")

    @property
    def plane_cycles(self) -> int:
        """Cycles of one plane of the whole network (fixed k costs ``k * plane_cycles``)."""
        return int(sum(self.cycles))

    def layer_planes(self, path) -> list[int]:
        """Planes each compute layer computes for a frame that visited ``path`` (increasing ks)."""
        path = [int(k) for k in path]
        if not path or any(b <= a for a, b in zip(path, path[1:])) or path[0] < 1:
            raise ValueError(f"a frame's k path must be increasing positive integers, not {path}")
        total = sum(path)
        first = path[-1] if self.continuation else total
        return [first] + [total] * (len(self.cycles) - 1)

    def frame_cycles(self, path) -> int:
        return sum(c * n for c, n in zip(self.cycles, self.layer_planes(path)))

    def frame_passes(self, path) -> int:
        return sum(p * n for p, n in zip(self.passes, self.layer_planes(path)))


# ---- confidence --------------------------------------------------------------------------------

def confidence(logits) -> tuple[int, int]:
    """``(prediction, margin)`` of integer logits: argmax (lowest index wins ties) and
    ``top1 - top2`` (0 on a tie)."""
    v = [int(x) for x in logits]
    if len(v) < 2:
        raise ValueError("confidence needs at least two logits")
    best = max(v)
    pred = v.index(best)
    second = max(v[:pred] + v[pred + 1:])
    return pred, best - second


def _pred_margin(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`confidence` over ``[..., classes]`` int64 logits."""
    logits = np.asarray(logits)
    if logits.dtype.kind not in "iu":
        raise TypeError(f"logits must be integers, not {logits.dtype}")
    pred = np.argmax(logits, axis=-1)            # numpy: first index of the maximum
    srt = np.sort(logits, axis=-1)
    return pred.astype(np.int64), (srt[..., -1] - srt[..., -2]).astype(np.int64)


class Calibration:
    """Per-k confidence gates learnt from labelled calibration frames.

    ``gate(k, t)`` is the smallest integer margin ``m`` such that, on the calibration frames run at
    k, every margin band ``>= m' >= m`` keeps the accuracy of the frames with margin ``>= m'`` at
    or above ``t`` per-mille (a result at k with margin ``>= gate(k, t)`` is right with calibrated
    probability ``t/1000``). No frame qualifies: the gate is one above the largest margin seen.
    ``t = 0`` accepts every result (gate 0).
    Computing a gate sorts calibration data (done once, before any frame); deciding with it is one
    integer comparison.
    """

    def __init__(self, margins, correct):
        margins, correct = np.asarray(margins), np.asarray(correct, bool)
        if margins.ndim != 2 or margins.shape != correct.shape or margins.shape[1] < 1:
            raise ValueError("calibration needs margins and correctness [N, frames], same shape")
        if margins.dtype.kind not in "iu":
            raise TypeError(f"margins must be integers, not {margins.dtype}")
        self.nbits = int(margins.shape[0])
        self._sorted = []
        for k in range(self.nbits):
            order = np.argsort(margins[k], kind="stable")
            m, c = margins[k][order].astype(np.int64), correct[k][order]
            suffix_acc = np.cumsum(c[::-1])[::-1] * 1000 // np.arange(len(c), 0, -1)
            # accuracy of {margin >= m_i}, made monotone from the top (every band above must pass)
            self._sorted.append((m, np.minimum.accumulate(suffix_acc[::-1])[::-1]))
        self._cache: dict = {}

    @classmethod
    def from_table(cls, table: "LogitTable") -> "Calibration":
        n = table.nbits
        return cls(table.margin.reshape(n, -1),
                   (table.pred == table.labels[None]).reshape(n, -1))

    def gate(self, k: int, t: int) -> int:
        key = (int(k), int(t))
        if key[1] == 0:
            return 0                       # target 0: every result is accepted
        if key not in self._cache:
            m, acc = self._sorted[k - 1]
            ok = np.nonzero(acc >= t)[0]
            self._cache[key] = int(m[ok[0]]) if ok.size else int(m[-1]) + 1
        return self._cache[key]

    def export(self, targets) -> "GateTable":
        """The gates for ``targets`` only, as a :class:`GateTable` (JSON-friendly)."""
        return GateTable({k: {int(t): self.gate(k, int(t)) for t in targets}
                          for k in range(1, self.nbits + 1)})


class GateTable:
    """Frozen gates ``{k: {t: margin}}`` (what a policy needs, e.g. in a cocotb process)."""

    def __init__(self, table: dict):
        self.table = {int(k): {int(t): int(g) for t, g in v.items()} for k, v in table.items()}
        self.nbits = len(self.table)

    def gate(self, k: int, t: int) -> int:
        try:
            return self.table[int(k)][int(t)]
        except KeyError:
            raise KeyError(f"no gate for k={k} t={t}; export the calibration with that"
                           f" target") from None

    def to_json(self) -> dict:
        return {str(k): {str(t): g for t, g in v.items()} for k, v in self.table.items()}

    @classmethod
    def from_json(cls, d: dict) -> "GateTable":
        return cls({int(k): {int(t): int(g) for t, g in v.items()} for k, v in d.items()})


def _check_threshold(t) -> int:
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t <= 1000:
        raise ValueError(f"a threshold must be an integer target accuracy in [0, 1000] per-mille,"
                         f" not {t!r}")
    return int(t)


def _relax(t: int, factor: int) -> int:
    """Target ``t`` with its error budget ``1000 - t`` scaled by ``factor`` per-mille."""
    return max(0, min(1000, 1000 - (1000 - t) * factor // 1000))


# ---- policies ----------------------------------------------------------------------------------

class Policy:
    """A per-frame precision policy. Per clip: :meth:`reset`; per frame: ``k = start()``, then
    ``k = step(k, pred, margin)`` while it returns a higher k; ``None`` accepts the frame.

    ``gates``: a :class:`Calibration` or :class:`GateTable`; ``threshold``: the target accuracy
    (per-mille) a result must reach to be accepted.
    """

    name = "policy"

    def __init__(self, nbits: int, gates, threshold: int = 0):
        if isinstance(nbits, bool) or not isinstance(nbits, int) or not 1 <= nbits <= 16:
            raise ValueError(f"nbits must be an integer in [1, 16], not {nbits!r}")
        if gates.nbits != nbits:
            raise ValueError(f"gates for N={gates.nbits} planes, policy for N={nbits}")
        self.nbits = nbits
        self.gates = gates
        self.threshold = _check_threshold(threshold)
        self.reset()

    def confident(self, k: int, margin: int, target: int | None = None) -> bool:
        return int(margin) >= self.gates.gate(k, self.threshold if target is None else target)

    def targets(self) -> set:
        """Every target this policy compares against (for :meth:`Calibration.export`)."""
        return {self.threshold}

    def reset(self) -> None:
        pass

    def start(self) -> int:
        raise NotImplementedError

    def step(self, k: int, pred: int, margin: int) -> int | None:
        raise NotImplementedError

    def options(self) -> dict:
        return {}

    def describe(self) -> dict:
        return {"name": self.name, "threshold": self.threshold, "options": self.options()}


class FixedPolicy(Policy):
    name = "fixed"

    def __init__(self, nbits: int, gates, k: int):
        if not 1 <= int(k) <= nbits:
            raise ValueError(f"k must be in [1, {nbits}], not {k!r}")
        self.k = int(k)
        super().__init__(nbits, gates, 0)

    def start(self) -> int:
        return self.k

    def step(self, k, pred, margin):
        return None

    def describe(self):
        return {"name": f"fixed{self.k}", "threshold": 0, "options": {}}


def _default_levels(base, nbits) -> tuple:
    """``base`` cut to the planes available, always ending at N."""
    return tuple(sorted({v for v in base if v < nbits} | {nbits}))


def _check_levels(levels, nbits) -> tuple:
    lv = tuple(int(v) for v in levels)
    if not lv or any(b <= a for a, b in zip(lv, lv[1:])) or lv[0] < 1 or lv[-1] > nbits:
        raise ValueError(f"levels must be increasing planes in [1, {nbits}], not {levels!r}")
    return lv


class EscalatePolicy(Policy):
    """Start at ``levels[0]``; while not confident go to the next level (default 1, 2, 4, N)."""

    name = "escalate"

    def __init__(self, nbits, gates, threshold=950, levels=None):
        self.levels = _check_levels(levels or _default_levels((1, 2, 4, 8), nbits), nbits)
        super().__init__(nbits, gates, threshold)

    def start(self):
        return self.levels[0]

    def step(self, k, pred, margin):
        if self.confident(k, margin):
            return None
        higher = [v for v in self.levels if v > k]
        return higher[0] if higher else None

    def options(self):
        return {"levels": list(self.levels)}


class TemporalPolicy(Policy):
    """Each frame at the previous frame's k; one plane up when unsure, one down when the margin
    also passes the stricter target (error budget divided by ``hysteresis`` per-mille)."""

    name = "temporal"

    def __init__(self, nbits, gates, threshold=950, k_min=1, k_max=None, k_init=None,
                 hysteresis=2000):
        self.k_min = int(k_min)
        self.k_max = int(k_max or nbits)
        self.k_init = int(k_init or min(2, self.k_max))
        self.hysteresis = int(hysteresis)
        if not 1 <= self.k_min <= self.k_init <= self.k_max <= nbits:
            raise ValueError(f"need 1 <= k_min <= k_init <= k_max <= {nbits}")
        if self.hysteresis < 1000:
            raise ValueError(f"hysteresis must be >= 1000 per-mille, not {hysteresis}")
        super().__init__(nbits, gates, threshold)

    @property
    def t_down(self) -> int:
        return _relax(self.threshold, 1000 * 1000 // self.hysteresis)

    def targets(self):
        return {self.threshold, self.t_down}

    def reset(self):
        self.k = self.k_init

    def start(self):
        return self.k

    def step(self, k, pred, margin):
        if not self.confident(k, margin):
            self.k = min(k + 1, self.k_max)
        elif self.confident(k, margin, self.t_down):
            self.k = max(k - 1, self.k_min)
        else:
            self.k = k
        return None

    def options(self):
        return {"k_min": self.k_min, "k_max": self.k_max, "k_init": self.k_init,
                "hysteresis": self.hysteresis}


class HybridPolicy(Policy):
    """Temporal starting point + within-frame escalation + agreement with the previous frame.

    A result at k is accepted when it is confident at the threshold, or when its prediction equals
    the previous frame's accepted prediction and it is confident at a relaxed target (the error
    budget multiplied by ``agree`` per-mille). Otherwise the frame escalates to the next of
    ``levels`` (default 1, 2, 3, 4, N; none left: accepted). The next frame starts one of
    ``start_levels`` (default: ``levels`` but the last) above this frame's start when
    the frame escalated, one level below when it was accepted at its start and passed the stricter
    target (error budget divided by ``hysteresis``), else at the same level.
    """

    name = "hybrid"

    def __init__(self, nbits, gates, threshold=950, levels=None, agree=8000,
                 hysteresis=8000, start_levels=None):
        self.levels = _check_levels(levels or _default_levels((1, 2, 3, 4, 8), nbits), nbits)
        self.start_levels = _check_levels(start_levels or self.levels[:-1] or self.levels, nbits)
        self.agree = int(agree)
        self.hysteresis = int(hysteresis)
        if self.agree < 1000:
            raise ValueError(f"agree must be >= 1000 per-mille, not {agree}")
        if self.hysteresis < 1000:
            raise ValueError(f"hysteresis must be >= 1000 per-mille, not {hysteresis}")
        super().__init__(nbits, gates, threshold)

    @property
    def t_agree(self) -> int:
        return _relax(self.threshold, self.agree)

    @property
    def t_down(self) -> int:
        return _relax(self.threshold, 1000 * 1000 // self.hysteresis)

    def targets(self):
        return {self.threshold, self.t_agree, self.t_down}

    def reset(self):
        self.s = 0               # index into start_levels
        self.prev = None
        self.escalated = False

    def start(self):
        self.escalated = False
        return self.start_levels[self.s]

    def _accept(self, k, pred, margin):
        if self.escalated:
            self.s = min(self.s + 1, len(self.start_levels) - 1)
        elif self.confident(k, margin, self.t_down):
            self.s = max(self.s - 1, 0)
        self.prev = pred
        return None

    def step(self, k, pred, margin):
        ok = self.confident(k, margin) or (
            self.prev is not None and pred == self.prev and self.confident(k, margin, self.t_agree))
        higher = [v for v in self.levels if v > k]
        if ok or not higher:
            return self._accept(k, pred, margin)
        self.escalated = True
        return higher[0]

    def options(self):
        return {"levels": list(self.levels), "start_levels": list(self.start_levels),
                "agree": self.agree, "hysteresis": self.hysteresis}


POLICIES = {"escalate": EscalatePolicy, "temporal": TemporalPolicy, "hybrid": HybridPolicy}


def make_policy(name: str, nbits: int, gates, threshold: int = 0, **options) -> Policy:
    """A policy by name (``escalate``, ``temporal``, ``hybrid``, or ``fixed<k>``)."""
    if name.startswith("fixed"):
        try:
            k = int(name[5:])
        except ValueError:
            raise ValueError(f"fixed policy must be named fixed<k>, not {name!r}") from None
        return FixedPolicy(nbits, gates, k)
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; choose one of {', '.join(POLICIES)}")
    return POLICIES[name](nbits, gates, threshold, **options)


# ---- golden-model evaluation --------------------------------------------------------------------

@dataclass
class LogitTable:
    """Golden logits of every frame at every k: ``logits[k-1]`` is int64 ``[clips, T, classes]``."""

    logits: np.ndarray          # [N, clips, T, classes]
    labels: np.ndarray          # [clips, T]
    pred: np.ndarray = field(init=False)
    margin: np.ndarray = field(init=False)

    def __post_init__(self):
        self.pred, self.margin = _pred_margin(self.logits)

    @property
    def nbits(self) -> int:
        return int(self.logits.shape[0])

    def subset(self, clips: int, frames: int) -> "LogitTable":
        """The first ``clips`` clips, first ``frames`` frames of each."""
        return LogitTable(self.logits[:, :clips, :frames], self.labels[:clips, :frames])


def golden_logits(bundle, clips, tables: str = "retrained", batch: int = 4096) -> LogitTable:
    """Run the integer golden model once per k over every frame of ``clips``."""
    import torch

    from .golden import run_network

    x = clips.flat_frames()
    n = bundle.nbits
    out = np.zeros((n, x.shape[0], bundle.num_classes), np.int64)
    for k in range(1, n + 1):
        for i in range(0, x.shape[0], batch):
            xb = torch.from_numpy(x[i:i + batch].astype(np.int64))
            out[k - 1, i:i + batch] = run_network(bundle, xb, k, tables=tables,
                                                  method="direct").logits.numpy()
    c, t = clips.labels.shape
    return LogitTable(out.reshape(n, c, t, -1), np.asarray(clips.labels, np.int64))


def run_policy(policy: Policy, table: LogitTable):
    """Run a policy over every clip (clip-major); return the k path and the prediction of every
    frame, as two lists."""
    paths, preds = [], []
    nc, nt = table.labels.shape
    for c in range(nc):
        policy.reset()
        for t in range(nt):
            k = policy.start()
            path = [k]
            while True:
                nk = policy.step(k, int(table.pred[k - 1, c, t]), int(table.margin[k - 1, c, t]))
                if nk is None:
                    break
                if nk <= k or nk > table.nbits:
                    raise RuntimeError(f"policy {policy.name} asked for k={nk} after k={k}")
                k = nk
                path.append(k)
            paths.append(tuple(path))
            preds.append(int(table.pred[k - 1, c, t]))
    return paths, preds


def evaluate(policy: Policy, table: LogitTable, cost: CostModel) -> dict:
    """Accuracy and exact cost of ``policy`` over every frame of ``table``."""
    paths, preds = run_policy(policy, table)
    labels = table.labels.reshape(-1)
    n = len(paths)
    cycles = sum(cost.frame_cycles(p) for p in paths)
    passes = sum(cost.frame_passes(p) for p in paths)
    finals = np.array([p[-1] for p in paths])
    correct = int(np.sum(np.array(preds) == labels))
    return {**policy.describe(), "frames": n, "correct": correct, "accuracy": correct / n,
            "avg_cycles": cycles / n, "avg_planes": cycles / (n * cost.plane_cycles),
            "avg_passes": passes / n, "avg_final_k": float(finals.mean()),
            "escalations": int(sum(len(p) - 1 for p in paths)),
            "k_hist": {str(k): int(np.sum(finals == k)) for k in range(1, table.nbits + 1)}}


def fixed_curve(table: LogitTable) -> dict:
    """Accuracy at fixed k on the same frames: ``{"1": acc, ..., "N": acc}``."""
    labels = table.labels
    return {str(k): float(np.mean(table.pred[k - 1] == labels)) for k in range(1, table.nbits + 1)}


def interp_fixed(fixed: dict, planes: float) -> float:
    """The fixed-k curve (linear between integer k, which mixing two fixed ks achieves) at
    ``planes``; below k=1 it is undefined (``nan``), above N it is the k=N accuracy."""
    ks = sorted(int(k) for k in fixed)
    if planes < ks[0]:
        return float("nan")
    if planes >= ks[-1]:
        return fixed[str(ks[-1])]
    lo = int(np.floor(planes))
    f = planes - lo
    return (1 - f) * fixed[str(lo)] + f * fixed[str(lo + 1)] if f else fixed[str(lo)]


def sweep(table: LogitTable, cost: CostModel, gates, names=("escalate", "temporal", "hybrid"),
          thresholds=DEFAULT_THRESHOLDS, options: dict | None = None) -> list[dict]:
    """Evaluate every named policy at every threshold (``options``: per-name constructor args)."""
    options = options or {}
    out = []
    for name in names:
        for t in thresholds:
            p = make_policy(name, table.nbits, gates, int(t), **options.get(name, {}))
            out.append(evaluate(p, table, cost))
    return out


# ---- analysis of a sweep -------------------------------------------------------------------------

def frontier(points: list[dict]) -> list[dict]:
    """The Pareto-optimal points (no other point is cheaper and at least as accurate)."""
    pts = sorted(points, key=lambda r: (r["avg_planes"], -r["accuracy"]))
    out, best = [], -1.0
    for r in pts:
        if r["accuracy"] > best:
            out.append(r)
            best = r["accuracy"]
    return out


def summarize_policies(results: list[dict], fixed: dict, names) -> dict:
    """Per policy: its frontier and its gap to the fixed-k curve, at the frontier points and
    everywhere in [first point, N] (the policy's curve linear between its frontier points, which
    alternating two thresholds achieves, and flat after the last)."""
    out = {}
    top = max(int(k) for k in fixed)
    for name in names:
        front = frontier([r for r in results if r["name"] == name])
        gaps = [r["accuracy"] - interp_fixed(fixed, r["avg_planes"]) for r in front]
        xs = np.linspace(max(1.0, front[0]["avg_planes"]), top, 701)
        pol = np.interp(xs, [r["avg_planes"] for r in front], [r["accuracy"] for r in front])
        every = pol - np.array([interp_fixed(fixed, float(x)) for x in xs])
        i = int(np.argmin(every))
        out[name] = {"frontier": [{"threshold": r["threshold"], "avg_planes": r["avg_planes"],
                                   "accuracy": r["accuracy"]} for r in front],
                     "worst_gap": min(gaps), "mean_gap": sum(gaps) / len(gaps),
                     "on_or_above_fixed": min(gaps) >= -1e-12,
                     "worst_gap_everywhere": float(every[i]),
                     "worst_gap_everywhere_at": float(xs[i])}
    return out


def pick(results: list[dict], budget: float) -> dict | None:
    """The most accurate point within ``budget`` average planes (cheapest among equals)."""
    ok = [r for r in results if r["avg_planes"] <= budget + 1e-12]
    return max(ok, key=lambda r: (r["accuracy"], -r["avg_planes"])) if ok else None


def operating_points(cal_results: list[dict], results: list[dict], fixed: dict, budgets,
                     nbits: int) -> list[dict]:
    """Per budget: the point chosen on the calibration sweep (held out), its figures on the
    evaluation sweep, fixed k at the budget and at N, and the best the evaluation curve offers."""
    points = []
    for budget in budgets:
        sel = pick(cal_results, budget)
        if sel is None:
            continue
        ev = next(r for r in results if r["name"] == sel["name"]
                  and r["threshold"] == sel["threshold"])
        insample = pick(results, budget)
        kb = int(np.floor(budget))
        points.append({
            "budget": budget, "name": sel["name"], "threshold": sel["threshold"],
            "options": sel["options"],
            "calibration": {"avg_planes": sel["avg_planes"], "accuracy": sel["accuracy"]},
            "eval": {k: ev[k] for k in ("avg_planes", "accuracy", "avg_cycles", "avg_passes",
                                        "avg_final_k", "escalations", "k_hist")},
            "fixed_at_budget": {"k": kb, "accuracy": fixed[str(min(kb, nbits))]},
            "fixed_top": fixed[str(nbits)],
            "best_on_eval_curve": insample and {
                "name": insample["name"], "threshold": insample["threshold"],
                "avg_planes": insample["avg_planes"], "accuracy": insample["accuracy"]},
        })
    return points
