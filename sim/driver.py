"""Host driver: maps an exported bundle onto the engine, layer by layer (streamed-layers mode).

For every compute layer (conv as im2col, linear as one position) and a number of planes ``k`` the
driver sends, in one :class:`~.transport.Exchange`:

1. the top ``k`` weight planes of as many output-row groups as the weight memory holds
   (``LOAD_W``; loads scale with k, like the compute);
2. the post-processing table of that k for those groups (``LOAD_PP``);
3. tiles of im2col activation words into alternating activation banks (``LOAD_A``), each followed by
   a ``RUN`` — the engine loads the next tile into the other bank while the array computes (ping-pong);

then collects one result beat per (position, group). Pooling, flattening and residual adds act on
activation codes on the host (a layer with ``input`` set reads that earlier layer's output). Integers only: no float anywhere on this path. The driver is a generator (sans I/O), so
one driver serves every transport (Amaranth simulator, cocotb, serial port).

The counters are cleared when an image starts and read after its last layer, so
``InferenceResult.counters`` holds the engine's own cycle figures for that image, loads included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generator

import numpy as np

from ..hw import isa
from ..model import contract
from ..hw.isa import Counter, EngineConfig
from .transport import Exchange

__all__ = ["InferenceResult", "LayerPlan", "check_fits", "check_image", "plan_layers", "infer", "im2col",
           "maxpool", "ideal_cycles", "add_codes", "baseline_weight_words", "BASELINE_WBITS",
           "Target", "Int8Baseline", "ENGINE", "INT8_BASELINE", "layer_exchange", "assemble",
           "read_counters", "require_counters", "counted_exchange", "walk_layers", "patches_of"]


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class LayerPlan:
    """How one compute layer maps onto the engine."""

    index: int          # position in bundle.layers
    name: str
    positions: int      # P: output positions (1 for linear)
    reduction: int      # I
    outputs: int        # O
    nchunks: int        # ceil(I / C)
    ngroups: int        # ceil(O / R)
    relu: bool

    def ideal_cycles(self, k: int) -> int:
        """The paper's computation: ``P * k * ceil(I/C) * ceil(O/R)`` array cycles."""
        return self.positions * k * self.nchunks * self.ngroups


@dataclass
class InferenceResult:
    """One image through the engine at k planes."""

    k: int
    logits: np.ndarray                       # int64 [classes]
    pred: int
    outputs: list = field(default_factory=list)   # int64 array per bundle layer, golden's shapes
    counters: dict = field(default_factory=dict)  # Counter.NAMES -> value
    ideal_cycles: int = 0
    #: with ``infer(..., layer_counters=True)``: bundle layer index -> that layer's counters
    layer_counters: dict = field(default_factory=dict)


def _compute_layers(bundle):
    return [(i, l) for i, l in enumerate(bundle.layers) if l.kind in ("conv", "linear")]


def plan_layers(bundle, cfg: EngineConfig) -> list[LayerPlan]:
    plans = []
    for i, layer in _compute_layers(bundle):
        out_c = layer.out_shape[0]
        positions = int(np.prod(layer.out_shape[1:])) if layer.kind == "conv" else 1
        reduction = int(layer.codes.shape[1])
        plans.append(LayerPlan(i, layer.name, positions, reduction, out_c,
                               _ceil(reduction, cfg.cols), _ceil(out_c, cfg.rows), layer.relu))
    return plans


def ideal_cycles(bundle, cfg: EngineConfig, k: int) -> int:
    return sum(p.ideal_cycles(k) for p in plan_layers(bundle, cfg))


def check_fits(bundle, cfg: EngineConfig) -> list[LayerPlan]:
    """Refuse (ValueError naming layer and field) a bundle this engine cannot run exactly."""
    if bundle.abits != cfg.abits:
        raise ValueError(f"bundle abits={bundle.abits} but the engine has abits={cfg.abits}")
    if bundle.nbits > cfg.nbits:
        raise ValueError(f"bundle nbits={bundle.nbits} exceeds the engine's nbits={cfg.nbits}")
    plans = plan_layers(bundle, cfg)
    for plan in plans:
        layer = bundle.layers[plan.index]
        where = f"layer {plan.index} ({layer.name})"
        if plan.reduction > cfg.max_reduction:
            raise ValueError(f"{where}: reduction length {plan.reduction} exceeds the engine's"
                             f" max_reduction={cfg.max_reduction}")
        if bundle.nbits * plan.nchunks > cfg.wdepth:
            raise ValueError(f"{where}: one row group needs {bundle.nbits * plan.nchunks} weight"
                             f" words, the engine has wdepth={cfg.wdepth}")
        if plan.nchunks > cfg.adepth:
            raise ValueError(f"{where}: one position needs {plan.nchunks} activation words, the"
                             f" engine has adepth={cfg.adepth}")
        if bundle.nbits > cfg.pp_entries:
            raise ValueError(f"{where}: needs {bundle.nbits} post-processing table entries, the"
                             f" engine holds {cfg.pp_entries} (ppdepth={cfg.ppdepth},"
                             f" {cfg.pp_slices} words per entry)")
        mlim, blim = 1 << (cfg.mbits - 1), 1 << (cfg.bbits - 1)
        for tname, t in layer.tables.items():
            field_ = f"{where}: tables.{tname}"
            if np.any(t.M < -mlim) or np.any(t.M >= mlim):
                raise ValueError(f"{field_}.M does not fit the engine's signed {cfg.mbits} bits")
            if np.any(t.B < -blim) or np.any(t.B >= blim):
                raise ValueError(f"{field_}.B does not fit the engine's signed {cfg.bbits} bits")
            if np.any(t.S < 0) or np.any(t.S >= 1 << isa.SW):
                raise ValueError(f"{field_}.S outside [0, {(1 << isa.SW) - 1}]")
            if not layer.relu:  # signed logits leave the engine in obits: prove they fit
                for k in range(1, bundle.nbits + 1):
                    why = contract.fit_problem(
                        t.M[k - 1], t.B[k - 1], int(t.S[k - 1]), obits=cfg.obits,
                        acc_max=contract.acc_bound(k, plan.reduction, cfg.abits))
                    if why:
                        raise ValueError(f"{field_}: k={k}: {why} (the engine's obits)")
    return plans


# ---- host-side tensor work (integers) ------------------------------------------------------------

def im2col(x: np.ndarray, kernel, stride, padding) -> np.ndarray:
    """``x`` [C,H,W] codes -> [P, C*kh*kw] patches in torch's (cin, dy, dx) weight order."""
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
    c, ho, wo = win.shape[:3]
    return win.transpose(1, 2, 0, 3, 4).reshape(ho * wo, c * kh * kw)


def maxpool(x: np.ndarray, kernel, stride, padding=(0, 0)) -> np.ndarray:
    """Max-pool of activation codes ``x`` [C,H,W] (padding, if any, never wins: codes are >= 0)."""
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding or (0, 0)
    xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
    return win.max(axis=(3, 4))


def add_codes(xa: np.ndarray, xb: np.ndarray, m, shift: int, abits: int) -> np.ndarray:
    """Residual add of two code arrays: ``clamp((xa*Ma + xb*Mb + 2^(S-1)) >> S, 0, 2^A-1)``."""
    z = np.asarray(xa, np.int64) * int(m[0]) + np.asarray(xb, np.int64) * int(m[1])
    if shift:
        z = (z + (1 << (shift - 1))) >> shift
    return np.clip(z, 0, (1 << abits) - 1)


def weight_words(cfg: EngineConfig, codes: np.ndarray, nbits: int, k: int, g0: int, ngs: int,
                 nchunks: int) -> list[int]:
    """Weight words for groups ``g0..g0+ngs-1``, planes ``p = 0..k-1`` (MSB first), all chunks,
    at addresses ``(g*k + p)*nchunks + c`` (docs/engine.md)."""
    R, C = cfg.rows, cfg.cols
    o, i = codes.shape
    full = np.zeros((ngs * R, nchunks * C), dtype=np.int64)
    rows = codes[g0 * R:(g0 + ngs) * R].astype(np.int64)
    full[:rows.shape[0], :i] = rows
    planes = np.stack([(full >> (nbits - 1 - p)) & 1 for p in range(k)])     # [k, ngs*R, nchunks*C]
    planes = planes.reshape(k, ngs, R, nchunks, C).transpose(1, 0, 3, 2, 4)   # [g, p, c, R, C]
    return isa.pack_array_words(isa.weight_layout(cfg), planes.reshape(ngs * k * nchunks, R, C))


#: weight bits of the bit-parallel baseline (``hw/baseline.py``: ``MACArray``, int8 weights)
BASELINE_WBITS = 8


def baseline_weight_words(cfg: EngineConfig, codes: np.ndarray, nbits: int, k: int, g0: int,
                          ngs: int, nchunks: int) -> list[int]:
    """Int8 weight words of the bit-parallel baseline (``hw/baseline.py``) for groups
    ``g0..g0+ngs-1``, all chunks, at addresses ``g*nchunks + c``: weight (o = g*R + r, i = c*C + l)
    at ``[(r*C + l)*8 +: 8]``, two's complement.

    The value is the golden model's k-plane weight ``q_k = 2*(u >> (N-k)) - (2^k - 1)``, so the
    baseline computes exactly what the engine computes at k planes -- while it fits int8, i.e. for
    k <= 7 (|q_k| <= 127). ``q_8`` spans the odd values in [-255, 255] (9 bits): ValueError.
    """
    if not 1 <= k <= BASELINE_WBITS - 1:
        raise ValueError(f"the int8 baseline holds k-plane weights 2*(u >> (N-k)) - (2^k - 1) only"
                         f" for k <= {BASELINE_WBITS - 1} (|q_k| <= 127); k={k} needs"
                         f" {k + 1}-bit signed weights")
    R, C = cfg.rows, cfg.cols
    o, i = codes.shape
    full = np.zeros((ngs * R, nchunks * C), dtype=np.int64)
    rows = codes[g0 * R:(g0 + ngs) * R].astype(np.int64)
    full[:rows.shape[0], :i] = 2 * (rows >> (nbits - k)) - ((1 << k) - 1)
    blocks = full.reshape(ngs, R, nchunks, C).transpose(0, 2, 1, 3)       # [g, c, R, C]
    return isa.pack_array_words(isa.baseline_weight_layout(cfg, BASELINE_WBITS),
                                blocks.reshape(ngs * nchunks, R, C))


def act_words(cfg: EngineConfig, patches: np.ndarray, nchunks: int) -> list[int]:
    """Activation words for patches [P, I]: address ``pos*nchunks + c``, lanes past I zero."""
    C, A = cfg.cols, cfg.abits
    p, i = patches.shape
    if patches.size and (patches.min() < 0 or patches.max() >= 1 << A):
        raise ValueError(f"activation codes must lie in [0, {(1 << A) - 1}]")
    full = np.zeros((p, nchunks * C), dtype=np.int64)
    full[:, :i] = patches
    return isa.pack_array_words(isa.act_layout(cfg), full.reshape(p * nchunks, C))


def pp_words(cfg: EngineConfig, tables, k: int, g0: int, ngs: int) -> list[int]:
    R = cfg.rows
    m, b, s = tables.M[k - 1], tables.B[k - 1], int(tables.S[k - 1])
    return [w for g in range(g0, g0 + ngs)
            for w in isa.pack_pp_words(cfg, s, m[g * R:(g + 1) * R], b[g * R:(g + 1) * R])]


class Target:
    """What the driver needs to know about the hardware it drives (the engine's streamed-layers
    contract, ``docs/engine.md``). :data:`ENGINE` is the bit-serial engine; :data:`INT8_BASELINE`
    the bit-parallel int8 MAC array (``hw/baseline.py``) behind the same ports."""

    name = "engine"
    #: the target has the engine's counters (cleared and read around an image)
    counters = True

    def config(self, cfg: EngineConfig) -> EngineConfig:
        """The configuration the target really has for ``cfg``."""
        return cfg

    def check(self, cfg: EngineConfig, plans: list, k: int) -> None:
        """Refuse (ValueError) what the target cannot run beyond :func:`check_fits`."""

    def weight_words(self, cfg: EngineConfig, codes, nbits: int, k: int, g0: int, ngs: int,
                     nchunks: int) -> list[int]:
        return weight_words(cfg, codes, nbits, k, g0, ngs, nchunks)

    def wdepth(self, cfg: EngineConfig) -> int:
        """Weight memory words."""
        return cfg.wdepth

    def planes(self, k: int) -> int:
        """Planes of one RUN (its ``k_end`` and ``wplanes``, and the k its result beats carry)."""
        return k

    def pp_addr(self, cfg: EngineConfig, k: int, ngs: int) -> int:
        """Post-processing word where the table of k for ``ngs`` groups goes."""
        return (k - 1) * ngs * cfg.pp_slices


class Int8Baseline(Target):
    """Whole int8 weights of k planes (:func:`baseline_weight_words`, k <= 7) in
    ``wdepth // nbits`` words, the table of k at post-processing address 0, RUNs of one "plane"
    (its beats carry k = 1), one post-processing lane per row; the engine's counters (it is the
    engine with an int8 exec stage)."""

    name = "int8-baseline"

    def config(self, cfg):
        return cfg.full_rate_pp()

    def check(self, cfg, plans, k):
        if k > BASELINE_WBITS - 1:
            raise ValueError(f"the int8 baseline runs k <= {BASELINE_WBITS - 1} only (k={k} needs"
                             f" {k + 1}-bit signed weights)")
        for plan in plans:
            if plan.nchunks > self.wdepth(cfg):
                raise ValueError(f"layer {plan.index} ({plan.name}): one row group needs"
                                 f" {plan.nchunks} int8 weight words, the baseline has"
                                 f" {self.wdepth(cfg)}")

    def weight_words(self, cfg, codes, nbits, k, g0, ngs, nchunks):
        return baseline_weight_words(cfg, codes, nbits, k, g0, ngs, nchunks)

    def wdepth(self, cfg):
        return max(1, cfg.wdepth // cfg.nbits)

    def planes(self, k):
        return 1

    def pp_addr(self, cfg, k, ngs):
        return 0


#: the bit-serial engine (``hw/engine.py``)
ENGINE = Target()
#: the bit-parallel int8 baseline (``hw/baseline.py``)
INT8_BASELINE = Int8Baseline()


def _target(target, baseline: bool) -> Target:
    return target if target is not None else (INT8_BASELINE if baseline else ENGINE)


def layer_exchange(cfg: EngineConfig, plan: LayerPlan, layer, patches: np.ndarray, nbits: int,
                   k: int, tables, bank: int,
                   tile_positions: int | str | None = "auto",
                   baseline: bool = False, target: Target | None = None
                   ) -> tuple[Exchange, list, int]:
    """Commands and data for one compute layer at k planes on ``target`` (default
    :data:`ENGINE`; ``baseline=True`` is the same as ``target=INT8_BASELINE``).

    ``tile_positions`` caps the positions per activation tile. Smaller tiles let the engine load
    tile t+1 into the other bank while it computes tile t, so only the first tile's load is
    exposed instead of the whole layer's. ``"auto"`` (default): about 8 tiles per layer (at least 2
    positions each); ``None``: as many positions as a bank holds.

    Returns the exchange, the (group start, group count, tile start, tile positions) order in which
    result beats come back, and the activation bank the next layer should start with.
    """
    tg = _target(target, baseline)
    kr = tg.planes(k)
    ex = Exchange()
    ngs_max = max(1, min(plan.ngroups, tg.wdepth(cfg) // (kr * plan.nchunks),
                         cfg.pp_entries // kr, (1 << isa.FIELDS["ngroups"][1]) - 1))
    if tile_positions == "auto":   # about 8 tiles per layer, at least 2 positions per tile
        tile_positions = max(2, _ceil(plan.positions, 8))
    elif tile_positions is not None and (isinstance(tile_positions, bool)
                                         or not isinstance(tile_positions, int)
                                         or tile_positions < 1):
        raise ValueError(f"tile_positions must be a positive integer, 'auto' or None, not "
                         f"{tile_positions!r}")
    tile = max(1, min(plan.positions, cfg.adepth // plan.nchunks, (1 << isa.FIELDS["npos"][1]) - 1,
                      tile_positions or plan.positions))
    order = []
    for g0 in range(0, plan.ngroups, ngs_max):
        ngs = min(ngs_max, plan.ngroups - g0)
        w = tg.weight_words(cfg, layer.codes, nbits, k, g0, ngs, plan.nchunks)
        ex.cmds.append(isa.cmd_load_w(0, len(w)))
        ex.data += w
        pp = pp_words(cfg, tables, k, g0, ngs)
        ex.cmds.append(isa.cmd_load_pp(tg.pp_addr(cfg, k, ngs), len(pp)))
        ex.data += pp
        for t0 in range(0, plan.positions, tile):
            npos = min(tile, plan.positions - t0)
            a = act_words(cfg, patches[t0:t0 + npos], plan.nchunks)
            ex.cmds.append(isa.cmd_load_a(bank, 0, len(a)))
            ex.data += a
            ex.cmds.append(isa.cmd_run(bank=bank, relu=plan.relu, k_start=0, k_end=kr, wplanes=kr,
                                       ngroups=ngs, nchunks=plan.nchunks, npos=npos))
            ex.n_results += npos * ngs
            order.append((g0, ngs, t0, npos))
            bank ^= 1
    return ex, order, bank


def assemble(cfg: EngineConfig, plan: LayerPlan, order, words: list[int], k: int) -> np.ndarray:
    """Result beats of one layer (in ``order``, from :func:`layer_exchange`) -> its [O, P]
    values, checking each beat's kind and k tag."""
    out = np.zeros((plan.ngroups * cfg.rows, plan.positions), dtype=np.int64)
    it = iter(words)
    for g0, ngs, t0, npos in order:
        for pos in range(t0, t0 + npos):
            for g in range(g0, g0 + ngs):
                beat = isa.decode_result(cfg, next(it))
                if beat.kind != 0 or beat.tag != k:
                    raise RuntimeError(f"layer {plan.name}: expected a result beat for k={k} at"
                                       f" position {pos} group {g}, got kind={beat.kind}"
                                       f" tag={beat.tag}")
                out[g * cfg.rows:(g + 1) * cfg.rows, pos] = beat.values
    return out[:plan.outputs]


#: old name of :func:`assemble`
_assemble = assemble


def require_counters(cfg: EngineConfig, names, who: str) -> None:
    """Refuse (ValueError) a configuration without the counters ``names`` that ``who`` reads
    (``EngineConfig.counter_set``)."""
    missing = [n for n in names if n not in cfg.counter_names]
    if missing:
        raise ValueError(f"{who} reads the engine's counters {', '.join(names)}; counter_set"
                         f" {cfg.counter_set!r} lacks {', '.join(missing)} (build-only: use"
                         f" counter_set 'all')")


def read_counters(cfg: EngineConfig, words: list[int], where: str) -> dict:
    """Counter beats (the last ``len(cfg.counter_names)`` words of an exchange) -> name ->
    value."""
    got = {}
    for w in words:
        beat = isa.decode_result(cfg, w)
        if beat.kind != isa.Kind.COUNTER:
            raise RuntimeError(f"{where}: expected a counter beat")
        name, value = Counter.NAMES[beat.tag], beat.values[0]
        if name not in cfg.counter_names:
            raise RuntimeError(f"{where}: a beat of counter {name}, which counter_set"
                               f" {cfg.counter_set!r} does not have")
        if cfg.counter_bits < 64 and value == (1 << cfg.counter_bits) - 1:
            raise RuntimeError(f"{where}: counter {name} saturated at its {cfg.counter_bits} bits"
                               f" (counter_bits); the reading is not a count")
        got[name] = value
    return got


def counted_exchange(cfg: EngineConfig, ex: Exchange, where: str, *, clear: bool,
                     read: bool) -> Generator[Exchange, list[int], tuple]:
    """One layer's exchange with the engine's counters (:func:`walk_layers`' ``compute`` steps,
    for :func:`infer` and the progressive frame): CLEAR_COUNTERS before it (``clear``), READ
    of the counters after it (``read``), both where ``cfg`` has counters; yields ``ex`` and
    returns ``(result words, counter words)``: the number of words checked, the counter beats
    (none without ``read``) split off the end."""
    ncnt = len(cfg.counter_names) if read else 0
    if clear and cfg.counter_names:
        ex.cmds.insert(0, isa.cmd_clear_counters())
    if ncnt:
        ex.cmds.append(isa.cmd_read_counters())
        ex.n_results += ncnt
    words = yield ex
    if len(words) != ex.n_results:
        raise RuntimeError(f"{where}: expected {ex.n_results} result words, got {len(words)}")
    return (words[:-ncnt], words[-ncnt:]) if ncnt else (words, [])


def check_image(bundle, image, tables: str = "retrained") -> np.ndarray:
    """Refuse an image whose shape or codes do not fit ``bundle``, or an unknown table set."""
    if tables not in ("retrained", "fixed"):
        raise ValueError(f"tables must be 'retrained' or 'fixed', not {tables!r}")
    image = np.asarray(image)
    if tuple(image.shape) != tuple(bundle.input_shape):
        raise ValueError(f"image shape {tuple(image.shape)} != bundle input shape"
                         f" {tuple(bundle.input_shape)}")
    if image.dtype.kind not in "iu":
        raise ValueError(f"image must hold integer activation codes, not {image.dtype}")
    return image


def walk_layers(bundle, image: np.ndarray, compute, *, start: int = 0, x=None,
                outputs: list | None = None) -> Generator[Exchange, list[int], list]:
    """The host's walk over ``bundle.layers[start:]``, shared by :func:`infer` and the
    progressive frame: residual adds, pooling and flattening on the host (integers), a layer with
    ``input`` set reading that earlier output, and ``yield from compute(i, layer, x)`` for every
    compute layer (it returns the layer's output codes). ``image`` is the network input (layer
    index -1), ``x`` the current codes (default: the image), ``outputs`` the outputs of the layers
    before ``start``. Returns every layer's output."""
    outputs = [] if outputs is None else outputs
    x_in = image.astype(np.int64)
    x = x_in if x is None else x
    for i in range(start, len(bundle.layers)):
        layer = bundle.layers[i]
        if layer.kind == "add":
            a, b = (x_in if j == -1 else outputs[j] for j in layer.inputs)
            x = add_codes(a, b, layer.add_m, int(layer.add_s), bundle.abits)
        else:
            if getattr(layer, "input", None) is not None:   # a branch reads an earlier layer
                x = x_in if layer.input == -1 else outputs[layer.input]
            if layer.kind in ("conv", "linear"):
                x = yield from compute(i, layer, x)
            elif layer.kind == "maxpool":
                x = maxpool(x, layer.kernel, layer.stride, layer.padding)
            elif layer.kind == "flatten":
                x = x.reshape(-1)
            else:
                raise ValueError(f"layer {i} ({layer.name}): kind {layer.kind!r} is not supported"
                                 f" by the driver")
        outputs.append(x)
    return outputs


def patches_of(layer, x) -> np.ndarray:
    """The [P, I] reduction inputs of a compute layer: im2col patches (conv) or one row."""
    if layer.kind == "conv":
        return im2col(x, layer.kernel, layer.stride, layer.padding)
    return x.reshape(1, -1)


def infer(bundle, cfg: EngineConfig, image: np.ndarray, k: int, tables: str = "retrained",
          plans: list[LayerPlan] | None = None,
          layer_counters: bool = False,
          tile_positions: int | str | None = "auto",
          baseline: bool = False, target: Target | None = None,
          ) -> Generator[Exchange, list[int], InferenceResult]:
    """Run one image (codes [C,H,W]) through ``target`` (default :data:`ENGINE`) at ``k`` planes;
    see the module doc.

    ``layer_counters``: clear and read the counters around every compute layer instead of around
    the image; ``InferenceResult.layer_counters`` then holds each layer's own figures and
    ``counters`` their sums. ``tile_positions``: see :func:`layer_exchange`.

    ``target=INT8_BASELINE`` (or ``baseline=True``) drives the bit-parallel int8 baseline
    (``hw/baseline.py``: ``MACArray``) instead: the int8 weights are the k-plane weights of the
    golden model, so k <= 7 (:func:`baseline_weight_words`), and every RUN is one pass per chunk
    whatever k is. It has the engine's counters, read as for the engine; its ``ideal_cycles`` count
    one pass per chunk (``P * ceil(I/C) * ceil(O/R)``).
    """
    k = contract.check_k(k, bundle.nbits)
    image = check_image(bundle, image, tables)
    tg = _target(target, baseline)
    cfg = tg.config(cfg)
    plans = plans if plans is not None else check_fits(bundle, cfg)
    tg.check(cfg, plans, k)
    by_index = {p.index: p for p in plans}
    last_compute = plans[-1].index
    outputs: list = []
    state = {"bank": 0}
    counters: dict = {}
    res_layers: dict = {}

    def compute(i, layer, x):
        plan = by_index[i]
        ex, order, state["bank"] = layer_exchange(cfg, plan, layer, patches_of(layer, x),
                                                  bundle.nbits, k, layer.tables[tables],
                                                  state["bank"], tile_positions, target=tg)
        words, cnt = yield from counted_exchange(
            cfg, ex, f"layer {layer.name}", clear=tg.counters and (not outputs or layer_counters),
            read=tg.counters and (layer_counters or i == last_compute))
        if cnt:
            got = read_counters(cfg, cnt, f"layer {layer.name}")
            if layer_counters:
                res_layers[i] = got
                for name, v in got.items():
                    counters[name] = counters.get(name, 0) + v
            else:
                counters.update(got)
        y = assemble(cfg, plan, order, words, tg.planes(k))
        return y.reshape(layer.out_shape) if layer.kind == "conv" else y[:, 0]

    yield from walk_layers(bundle, image, compute, outputs=outputs)
    logits = outputs[-1]
    return InferenceResult(k=k, logits=logits, pred=int(np.argmax(logits)), outputs=outputs,
                           counters=counters,
                           ideal_cycles=sum(p.ideal_cycles(tg.planes(k)) for p in plans),
                           layer_counters=res_layers)
