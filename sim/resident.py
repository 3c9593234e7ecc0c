"""Host side of resident mode: compile a bundle into a layer program and memory images, check that
it fits a configuration, pack images and requests, decode results, read every layer back.

Word formats come from :mod:`progressivenn.hw.resident.layout` (``amaranth.lib.data`` layouts
shared with the RTL); ``docs/resident.md`` describes the memory map and the cycle model.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from ..hw.resident.layout import (ResidentConfig, Op, Kind, ResKind, desc_layout, cmd_layout,
                                  res_layout, summary_layout, counter_layout, tap_layout,
                                  addr_width, DIMW)

__all__ = [
    "ResidentFitError", "ProgLayer", "ResidentProgram", "compile_program",
    "image_beats", "run_beats", "readback_beats", "decode_run", "RunResult", "layer_outputs",
    "expected_busy", "run_amaranth", "link_bytes_per_image", "decode_readback",
    "result_beat_count", "memory_usage", "shared_lanes_refusal",
]


class ResidentFitError(ValueError):
    """The bundle does not fit the resident configuration (or uses what resident mode lacks)."""


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass
class ProgLayer:
    """One program layer: the bundle layer it computes, its descriptor and where its output is."""
    index: int            # bundle layer whose output the region holds (a fused pool's)
    name: str
    kind: str             # "conv" (conv or linear) | "pool" | "add"
    desc: dict            # field values of desc_layout
    out_shape: tuple      # (C, H, W) of the output map (logits: (classes, 1, 1))
    out_base: int
    out_words: int        # words per output pixel
    planes_fixed: bool    # pool: one pass whatever k

    def busy(self, k: int) -> int:
        """Chunks this layer issues with k planes: P*ngroups*planes*nchunks (P output positions:
        ``out_h*out_w`` tiles of ``qh*qw``)."""
        d = self.desc
        return d["out_h"] * d["out_w"] * d["qh"] * d["qw"] * d["ngroups"] \
            * (1 if self.planes_fixed else k) * d["nchunks"]


@dataclass
class ResidentProgram:
    cfg: ResidentConfig
    layers: list                     # ProgLayer
    weights: list                    # int words, address = index
    pp: list                         # int entries
    in_shape: tuple                  # (C, H, W)
    in_base: int
    in_words: int                    # words per input pixel
    fm_words: int                    # feature-map words used
    classes: int
    tables: str
    taps: list                       # tap table (tap_layout values) when the image is in tap banks
    usage: dict = field(default_factory=dict)   # memory -> (needed, available)

    @property
    def prog_words(self) -> list:
        lay = desc_layout(self.cfg)
        return [lay.const(pl.desc).as_bits() for pl in self.layers]

    def load_beats(self) -> list:
        """Command beats that load the whole network (weights, tables, program)."""
        cl = cmd_layout(self.cfg)
        out = [cl.const({"op": Op.WRITE_W, "addr": a, "data": w}).as_bits()
               for a, w in enumerate(self.weights)]
        out += [cl.const({"op": Op.WRITE_PP, "addr": a, "data": w}).as_bits()
                for a, w in enumerate(self.pp)]
        out += [cl.const({"op": Op.WRITE_PROG, "addr": a, "data": w}).as_bits()
                for a, w in enumerate(self.prog_words)]
        tl = tap_layout(self.cfg)
        out += [cl.const({"op": Op.WRITE_TAP, "addr": a, "data": tl.const(t).as_bits()}).as_bits()
                for a, t in enumerate(self.taps)]
        return out


def _fit(memory: str, need: int, avail: int, unit: str = "words"):
    if need > avail:
        raise ResidentFitError(f"resident: {memory} needs {need:,} {unit}, {avail:,} available")


def _check_field(layer: str, name: str, value: int, bits: int):
    if not 0 <= value < (1 << bits):
        raise ResidentFitError(f"resident: {layer}: {name} {value} does not fit the descriptor's "
                               f"{bits}-bit field")


def _tap_mode(cfg: ResidentConfig, layer) -> bool:
    """Does this first layer read tap banks (one input channel, whole window in one chunk)?"""
    if not cfg.taps or layer.kind != "conv" or int(layer.in_shape[0]) != 1:
        return False
    (kh, kw), (_, h, w) = layer.kernel, layer.in_shape
    return kh * kw <= cfg.taps and h * w <= cfg.tapdepth


def _weight_words(u, cols, R: int, N: int) -> list:
    """Weight words of one layer: word ``(g*N + p)*nchunks + c`` holds plane ``N-1-p`` of rows
    ``g*R..``; bit ``r*C + l`` is the code bit of column ``cols[c, l]`` (-1: 0)."""
    O = u.shape[0]
    nchunks, C = cols.shape
    valid = cols >= 0
    out = []
    for g in range(_cdiv(O, R)):
        for p in range(N):
            bits = (u >> (N - 1 - p)) & 1
            for c in range(nchunks):
                word = 0
                for r in range(R):
                    o = g * R + r
                    if o >= O:
                        continue
                    row = np.where(valid[c], bits[o, np.where(valid[c], cols[c], 0)], 0)
                    for lane in np.flatnonzero(row):
                        word |= 1 << (r * C + int(lane))
                out.append(word)
    return out


def _check_bundle(bundle, cfg: ResidentConfig, tables: str):
    """Refuse a table set, bit widths or a multiplier width the configuration cannot run."""
    if tables not in ("retrained", "fixed"):
        raise ValueError(f"tables must be 'retrained' or 'fixed', not {tables!r}")
    N, A = cfg.nbits, cfg.abits
    if int(bundle.nbits) != N or int(bundle.abits) != A:
        raise ResidentFitError(f"resident: the bundle has N={bundle.nbits}, A={bundle.abits}; the "
                               f"configuration N={N}, A={A}")
    if int(bundle.mbits) > cfg.mbits:
        raise ResidentFitError(f"resident: the bundle's M needs {bundle.mbits} bits, the "
                               f"configuration has {cfg.mbits}")


def _pp_words(t, O: int, ngroups: int, cfg: ResidentConfig) -> list:
    """Post-processing entries of one layer, entry ``g*N + k-1``: shift ``S[k-1]`` in the low 6
    bits, then per row r of group g its M and B (0 beyond the ``O`` output channels)."""
    out = []
    stride = cfg.mbits + cfg.bbits
    blim = 1 << (cfg.bbits - 1)
    for g in range(ngroups):
        for kk in range(1, cfg.nbits + 1):
            word = int(t.S[kk - 1])
            for r in range(cfg.rows):
                o = g * cfg.rows + r
                mv = int(t.M[kk - 1][o]) if o < O else 0
                bv = int(t.B[kk - 1][o]) if o < O else 0
                if not -blim <= bv < blim:
                    raise ResidentFitError(f"resident: a B of {bv} needs {bv.bit_length() + 1} "
                                           f"bits, the configuration has bbits={cfg.bbits}")
                word |= (mv & ((1 << cfg.mbits) - 1)) << (6 + r * stride)
                word |= (bv & ((1 << cfg.bbits) - 1)) << (6 + r * stride + cfg.mbits)
            out.append(word)
    return out


def _reduction_cols(ch: int, kh: int, kw: int, C: int, taps: bool):
    """Columns of the reduction (torch order (cin, kh, kw)) per chunk and lane, -1: none; tap mode:
    one chunk, lane l = tap l; else chunk (dy*kw + dx)*ncw + cw, lane l -> channel cw*C + l."""
    if taps:
        cols = np.full((1, C), -1)
        cols[0, :kh * kw] = np.arange(kh * kw)
        return cols
    ncw = _cdiv(ch, C)
    return np.array([[(cw * C + lane) * kh * kw + dy * kw + dx
                      if cw * C + lane < ch else -1 for lane in range(C)]
                     for dy in range(kh) for dx in range(kw) for cw in range(ncw)])


def _pool_layer(layer, ch: int, ncw: int) -> dict:
    """Geometry of a max-pool layer: one chunk per tap, one group per channel word."""
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    return dict(kh=kh, kw=kw, sh=sh, sw=sw, ph=0, pw=0, ho=int(layer.out_shape[1]),
                wo=int(layer.out_shape[2]), nchunks=kh * kw, ngroups=ncw, out_words=ncw,
                nout=ch, kind=Kind.POOL, last=False, relu=False, oc=ch, taps=False,
                wbase=0, ppbase=0)


def _conv_layer(li: int, layer, cur: tuple, cfg: ResidentConfig, tables: str, last: bool,
                weights: list, pp: list, taps: bool = False) -> dict:
    """Geometry of a convolution (a linear layer: a window over the whole flattened map); its
    weight words and post-processing entries are appended to ``weights`` and ``pp``. ``taps``:
    the first layer reads the tap banks."""
    _, ch, hh, ww = cur
    u = np.asarray(layer.codes, dtype=np.int64)
    O = int(u.shape[0])
    if layer.kind == "conv":
        (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
        ho, wo = int(layer.out_shape[1]), int(layer.out_shape[2])
    else:
        kh, kw, sh, sw, ph, pw, ho, wo = hh, ww, 1, 1, 0, 0, 1, 1
    if u.shape[1] != ch * kh * kw:
        raise ResidentFitError(f"resident: layers[{li}] ({layer.name}): reduction "
                               f"{u.shape[1]} != {ch}*{kh}*{kw}")
    bound = ((1 << cfg.nbits) - 1) * u.shape[1] * ((1 << cfg.abits) - 1)
    if bound >= 1 << (cfg.acc_width - 1):
        raise ResidentFitError(f"resident: layers[{li}] ({layer.name}): |acc| up to "
                               f"{bound:,} needs more than acc_width {cfg.acc_width} bits")
    cols = _reduction_cols(ch, kh, kw, cfg.cols, taps)
    ngroups = _cdiv(O, cfg.rows)
    wbase, ppbase = len(weights), len(pp)
    weights += _weight_words(u, cols, cfg.rows, cfg.nbits)
    pp += _pp_words(layer.tables[tables], O, ngroups, cfg)
    return dict(kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw, ho=ho, wo=wo, nchunks=len(cols),
                ngroups=ngroups, out_words=_cdiv(O, cfg.cols), nout=O, kind=Kind.CONV,
                last=last, relu=bool(layer.relu), oc=O, taps=taps, wbase=wbase, ppbase=ppbase)


def _add_layer(where: str, layer, regions: list, cfg: ResidentConfig) -> dict:
    """Geometry of a residual add of the maps in ``regions`` (base, channels, height, width):
    the pool walk of ``max(2, C/R)`` taps per word (tap 0 operand a, tap 1 operand b; the ADD
    unit then post-processes the word's C/R output groups), written like a convolution."""
    if not cfg.adds:
        raise ResidentFitError(f"resident: {where}: a residual add needs the engine's ADD unit "
                               f"(ResidentConfig(adds=True))")
    (_, ch, hh, ww), (base_b, *shape_b) = regions
    if (ch, hh, ww) != tuple(shape_b):
        raise ResidentFitError(f"resident: {where}: the operands are stored as {(ch, hh, ww)} "
                               f"and {tuple(shape_b)} maps")
    ncw = _cdiv(ch, cfg.cols)
    taps = max(2, cfg.groups_per_word)
    return dict(kh=taps, kw=1, sh=1, sw=1, ph=0, pw=0, ho=hh, wo=ww, nchunks=taps, ngroups=ncw,
                out_words=ncw, nout=ch, kind=Kind.POOL, last=False, relu=True, oc=ch, taps=False,
                wbase=0, ppbase=0,
                add=(int(layer.add_m[0]), int(layer.add_m[1]), int(layer.add_s), base_b))


def _sources(layer, li: int) -> tuple:
    """Bundle indices of the layers whose outputs ``layer`` (at ``li``) reads; -1: the image."""
    if layer.kind == "add":
        return tuple(int(v) for v in layer.inputs)
    return (li - 1 if getattr(layer, "input", None) is None else int(layer.input),)


def _tap_table(kh: int, kw: int, ww: int, cfg: ResidentConfig) -> list:
    """Tap table of a first layer read by tap banks: tap t = (t // kw, t % kw) of the window."""
    return [{"valid": 1, "dy": t // kw, "dx": t % kw, "off": (t // kw) * ww + t % kw}
            if t < kh * kw else {"valid": 0, "dy": 0, "dx": 0, "off": 0}
            for t in range(cfg.taps)]


def _descriptor(where: str, g: dict, cur: tuple, out_base: int, cfg: ResidentConfig,
                img_words: int = 0) -> dict:
    """The program descriptor (``desc_layout``) of one layer of geometry ``g`` reading the map
    ``cur`` (base, channels, height, width); refuses a value its field cannot hold.
    ``img_words``: words of one image buffer (double-buffered input, first layer only)."""
    base, ch, hh, ww = cur
    fmask = (1 << addr_width(cfg.fmdepth)) - 1
    ncw = _cdiv(ch, cfg.cols)
    rowstride = ww * ncw
    sh, sw, ph, pw, qh, qw = g["sh"], g["sw"], g["ph"], g["pw"], g["qh"], g["qw"]
    conv = g["kind"] == Kind.CONV
    d = {
        "kind": g["kind"], "taps": int(g["taps"]), "last": int(g["last"]),
        "relu": int(g["relu"]),
        "in_h": hh, "in_w": ww, "out_h": g["ho"], "out_w": g["wo"],
        "kh": g["kh"], "kw": g["kw"], "sh": sh, "sw": sw, "ph": ph, "pw": pw,
        "ncw": ncw, "rowstride": rowstride & fmask,
        "xstep": (sw * ncw) & fmask, "ystep": (sh * rowstride) & fmask,
        "qh": qh, "qw": qw, "tsh": qh * sh, "tsw": qw * sw,
        "txstep": (qw * sw * ncw) & fmask, "tystep": (qh * sh * rowstride) & fmask,
        "win0": (base - ph * rowstride - pw * ncw) & fmask,
        "out_base": out_base, "out_words": g["out_words"], "nchunks": g["nchunks"],
        "ngroups": g["ngroups"], "nout": g["nout"],
        "wbase": g["wbase"] if conv else 0,
        "wgstep": cfg.nbits * g["nchunks"] if conv else 0,
        "ppbase": g["ppbase"] if conv else 0,
    }
    if cfg.double_buffer:
        d["img_words"] = img_words
    if cfg.adds:
        ma, mb, sh_add, base_b = g.get("add") or (0, 0, 0, None)
        d.update(add=int(base_b is not None), add_ma=ma, add_mb=mb, add_s=sh_add)
        if base_b is not None:      # tap 1 reads operand b; taps past it are gated
            d["rowstride"] = (base_b - base) & fmask
            d["in_h"] = hh + 1
    for name, bits in (("in_h", DIMW), ("in_w", DIMW), ("out_h", DIMW), ("out_w", DIMW),
                       ("kh", DIMW), ("kw", DIMW), ("sh", DIMW), ("sw", DIMW), ("ph", DIMW),
                       ("pw", DIMW), ("qh", DIMW), ("qw", DIMW), ("tsh", DIMW),
                       ("tsw", DIMW), ("ncw", 8), ("out_words", 8), ("nchunks", 16),
                       ("ngroups", 12), ("nout", 16)):
        _check_field(where, name, d[name], bits)
    return d


def compile_program(bundle, cfg: ResidentConfig, tables: str = "retrained", *,
                    fuse: bool = True) -> ResidentProgram:
    """Compile a bundle (conv, maxpool, flatten, linear, add; any layer may read any earlier
    layer's output or the image: ``LayerSpec.input`` / ``inputs``) into a layer program.

    Memory map: feature map words ``[0, in_words*H*W)`` hold the image (unless the first layer
    reads it from the tap banks), then every conv/pool/add layer's output in program order
    (every layer keeps its own region, so all can be read back and any later layer can read
    it); weights of program layer after program layer; post-processing entries per (layer,
    group, k). A layer reads its source's region (a flatten is the region of its input). A
    max-pool with kernel = stride is fused into the convolution before it when nothing else
    reads that convolution. Refuses, with one line naming the memory and the words needed vs
    available, a bundle that does not fit ``cfg``; a residual add needs ``cfg.adds``.
    """
    _check_bundle(bundle, cfg, tables)
    cin, h, w = (int(v) for v in bundle.input_shape)
    in_words = _cdiv(cin, cfg.cols)
    L = bundle.layers
    nl = len(L)
    if L[-1].kind not in ("conv", "linear"):
        raise ResidentFitError(f"resident: layers[{nl - 1}] ({L[-1].name}): the last layer must "
                               f"be a convolution or linear layer (the logits)")
    srcs = [_sources(layer, li) for li, layer in enumerate(L)]
    readers = {}
    for li, src in enumerate(srcs):
        for j in src:
            readers.setdefault(j, []).append(li)
    later = [li for li in readers.get(-1, []) if li > 0]
    if later and cfg.double_buffer:
        raise ResidentFitError(f"resident: layers[{later[0]}] ({L[later[0]].name}) reads the "
                               f"image: not with a double-buffered input")
    # a one-channel image read by tap banks has no feature-map region (unless a later layer
    # reads the image too); double-buffered input: image buffer 1 follows buffer 0
    taps0 = _tap_mode(cfg, L[0]) and not later
    tap_table = []
    img_words = 0 if taps0 else in_words * h * w
    fm_next = img_words * (2 if cfg.double_buffer else 1)
    regions = {-1: (0, cin, h, w)}      # bundle index -> (base, channels, height, width)
    layers, weights, pp = [], [], []
    skip = set()
    for li, layer in enumerate(L):
        if li in skip:
            continue
        where = f"layers[{li}] ({layer.name})"
        if layer.kind == "flatten":             # a renaming: the region of its input
            regions[li] = regions[srcs[li][0]]
            continue
        cur = regions[srcs[li][0]]
        if layer.kind == "maxpool":
            g = _pool_layer(layer, cur[1], _cdiv(cur[1], cfg.cols))
        elif layer.kind in ("conv", "linear"):
            g = _conv_layer(li, layer, cur, cfg, tables, li == nl - 1, weights, pp,
                            taps=li == 0 and taps0)
        elif layer.kind == "add":
            g = _add_layer(where, layer, [regions[j] for j in srcs[li]], cfg)
        else:
            raise ResidentFitError(f"resident: {where}: kind {layer.kind!r} is not supported in "
                                   f"resident mode")
        out_base = 0 if g["last"] else fm_next
        # a following max-pool with kernel = stride that alone reads this convolution is fused:
        # positions are walked in tiles of the pool window and the write-back keeps the maximum
        g["qh"] = g["qw"] = 1
        nxt = L[li + 1] if li + 1 < nl else None
        pool_index = None
        if (fuse and g["kind"] == Kind.CONV and not g["last"] and nxt is not None
                and nxt.kind == "maxpool" and tuple(nxt.kernel) == tuple(nxt.stride)
                and readers.get(li) == [li + 1] and g["ngroups"] <= cfg.fuse_groups):
            g["qh"], g["qw"] = (int(v) for v in nxt.kernel)
            g["ho"], g["wo"] = int(nxt.out_shape[1]), int(nxt.out_shape[2])
            pool_index = li + 1
            skip.add(li + 1)
        if g["taps"]:       # the window generator walks positions only; the lanes hold the taps
            tap_table = _tap_table(g["kh"], g["kw"], cur[3], cfg)
            g["kh"] = g["kw"] = 1
        d = _descriptor(where, g, cur, out_base, cfg, 0 if layers else img_words)
        name = layer.name if pool_index is None else f"{layer.name}+{nxt.name}"
        shape = (g["oc"], g["ho"], g["wo"])
        kind = "add" if "add" in g else "pool" if g["kind"] == Kind.POOL else "conv"
        layers.append(ProgLayer(li if pool_index is None else pool_index, name, kind, d, shape,
                                out_base, g["out_words"], g["kind"] == Kind.POOL))
        if not g["last"]:
            fm_next += g["out_words"] * g["ho"] * g["wo"]
            regions[li if pool_index is None else pool_index] = (out_base, *shape)
    prog = ResidentProgram(cfg, layers, weights, pp, (cin, h, w), 0, in_words, fm_next,
                           int(bundle.num_classes), tables, tap_table)
    prog.usage = memory_usage(prog)
    for mem, (need, avail) in prog.usage.items():
        _fit(mem, need, avail, "descriptors" if mem == "program memory" else
             "classes" if mem == "logit register file" else "words")
    return prog


def memory_usage(prog: ResidentProgram) -> dict:
    """``{memory: (words needed, words available)}`` of a compiled program (with
    ``cfg.accdepth``: the continuation memory holds the first convolution's accumulators,
    :func:`continuation_words`)."""
    cfg = prog.cfg
    out = {
        "weight memory": (len(prog.weights), cfg.wdepth),
        "post-processing memory": (len(prog.pp), cfg.ppdepth),
        "feature-map memory": (prog.fm_words, cfg.fmdepth),
        "program memory": (len(prog.layers), cfg.max_layers),
        "logit register file": (prog.classes, cfg.max_classes),
    }
    if cfg.accdepth:
        out["continuation memory"] = (continuation_words(prog), cfg.accdepth)
    return out


def continuation_words(prog: ResidentProgram) -> int:
    """Accumulator words of the first convolution (``P*ngroups``: one per output position and
    group of R channels), what ``cfg.accdepth`` must hold to continue it."""
    first = next((pl for pl in prog.layers if not pl.planes_fixed), None)
    return first.busy(1) // first.desc["nchunks"] if first else 0


# ---- per-image traffic --------------------------------------------------------------------------

def image_beats(prog: ResidentProgram, image) -> list:
    """WRITE_FM beats holding one image ``[C, H, W]`` (channel-packed words)."""
    cfg = prog.cfg
    C, A = cfg.cols, cfg.abits
    x = np.asarray(image, dtype=np.int64)
    cin, h, w = prog.in_shape
    if x.shape != (cin, h, w):
        raise ValueError(f"image must be {[cin, h, w]}, not {list(x.shape)}")
    if x.size and (x.min() < 0 or x.max() > (1 << A) - 1):
        raise ValueError(f"image codes must be in [0, {(1 << A) - 1}]")
    cl = cmd_layout(cfg)
    if prog.taps:                    # C pixels a beat, into every tap bank
        flat = x.reshape(-1)
        return [cl.const({"op": Op.WRITE_IMG, "addr": a, "data": sum(
            int(v) << (lane * A) for lane, v in enumerate(flat[a * C:(a + 1) * C]))}).as_bits()
            for a in range(_cdiv(flat.size, C))]
    out = []
    for y in range(h):
        for xx in range(w):
            for cw in range(prog.in_words):
                word = 0
                for lane in range(C):
                    ci = cw * C + lane
                    if ci < cin:
                        word |= int(x[ci, y, xx]) << (lane * A)
                addr = prog.in_base + (y * w + xx) * prog.in_words + cw
                out.append(cl.const({"op": Op.WRITE_FM, "addr": addr, "data": word}).as_bits())
    return out


def run_beats(prog: ResidentProgram, k: int) -> list:
    """The RUN request with ``k`` planes."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= prog.cfg.nbits:
        raise ValueError(f"k must be an integer in [1, {prog.cfg.nbits}], not {k!r}")
    why = shared_lanes_refusal(prog, k)
    if why:
        raise ValueError(why)
    return [cmd_layout(prog.cfg).const({"op": Op.RUN, "addr": 0, "data": k}).as_bits()]


def shared_lanes_refusal(prog: ResidentProgram, k: int) -> str | None:
    """With ``cfg.pp_shared`` (post-processing lanes shared by pairs of rows) a group's second
    half goes through the lanes the cycle after its first, so groups must leave the PE array at
    least two cycles apart: ``k x nchunks >= 2`` for every convolution. The one line saying which
    layer would lose outputs at ``k`` planes, or None."""
    if not prog.cfg.pp_shared:
        return None
    for pl in prog.layers:
        n = pl.desc["nchunks"]
        if pl.kind == "conv" and k * n < 2:
            return (f"resident: k = {k} would lose outputs of {pl.name} (program layer "
                    f"{prog.layers.index(pl)}): {n} chunk x {k} plane per output group, the "
                    f"engine's shared post-processing lanes (pp_shared) need 2; use k >= 2")
    return None


def result_beat_count(prog: ResidentProgram) -> int:
    return 1 + prog.layers[-1].desc["ngroups"] + len(prog.layers)


def readback_beats(prog: ResidentProgram) -> list:
    """READ_FM beats for every word of every hidden layer's output region, in program order."""
    cl = cmd_layout(prog.cfg)
    out = []
    for pl in prog.layers[:-1]:
        _, ho, wo = pl.out_shape
        for a in range(pl.out_base, pl.out_base + ho * wo * pl.out_words):
            out.append(cl.const({"op": Op.READ_FM, "addr": a, "data": 0}).as_bits())
    return out


def link_bytes_per_image(prog: ResidentProgram) -> float:
    """Bytes both ways per image as the resident UART link carries them (``docs/uart.md``):
    the IMAGE frames and the RUN frame down, the SUMMARY and LOGITS messages up, framing, CRC
    and the credit messages included, counters not requested; the same figure as
    :func:`progressivenn.sim.resident_link.link_cost`'s ``total`` (average: credits are sent
    every ``credit_unit`` bytes). The same at every k."""
    from .resident_link import link_cost

    return link_cost(prog)["total"]


@dataclass
class RunResult:
    cls: int
    k: int
    cycles: int
    logits: list
    busy: list                  # per program layer
    maps: list = field(default_factory=list)   # per hidden program layer [C, H, W] (read back)
    #: ``run_amaranth(overlap=True)``: beats of the next RUN's image accepted while this RUN
    #: computed (before its SUMMARY was offered), of ``next_beats``
    next_early: int = 0
    next_beats: int = 0


def decode_run(prog: ResidentProgram, beats: list) -> RunResult:
    """Decode the result beats of one RUN (SUMMARY, LOGITS..., COUNTER...)."""
    cfg = prog.cfg
    rl, sl, cl = res_layout(cfg), summary_layout(cfg), counter_layout(cfg)
    views = [rl.from_bits(b) for b in beats]
    if not views or views[0].kind != ResKind.SUMMARY:
        raise ValueError("the first result beat of a RUN must be a SUMMARY")
    s = sl.from_bits(_field_bits(rl, beats[0], "data") & ((1 << sl.size) - 1))
    ng = prog.layers[-1].desc["ngroups"]
    logits = []
    OW, R = cfg.obits, cfg.rows
    for g, v in enumerate(views[1:1 + ng]):
        if v.kind != ResKind.LOGITS or v.index != g:
            raise ValueError(f"result beat {1 + g}: expected LOGITS {g}, got {v.kind} {v.index}")
        raw = _field_bits(rl, beats[1 + g], "data")
        for r in range(R):
            if g * R + r < prog.classes:
                val = (raw >> (r * OW)) & ((1 << OW) - 1)
                logits.append(val - (1 << OW) if val >> (OW - 1) else val)
    busy = []
    for i, v in enumerate(views[1 + ng:]):
        if v.kind != ResKind.COUNTER or v.index != i:
            raise ValueError(f"result beat {1 + ng + i}: expected COUNTER {i}")
        busy.append(int(cl.from_bits(_field_bits(rl, beats[1 + ng + i], "data")
                                     & ((1 << cl.size) - 1)).busy))
    return RunResult(int(s.cls), int(s.k), int(s.cycles), logits, busy)


def _field_bits(layout, raw: int, name: str) -> int:
    f = layout[name]
    return (raw >> f.offset) & ((1 << f.width) - 1)


def decode_readback(prog: ResidentProgram, beats: list) -> list:
    """FM_WORD beats (from :func:`readback_beats`) -> one ``[C, H, W]`` array per hidden layer."""
    cfg = prog.cfg
    rl = res_layout(cfg)
    C, A = cfg.cols, cfg.abits
    maps, i = [], 0
    for pl in prog.layers[:-1]:
        ch, ho, wo = pl.out_shape
        a = np.zeros((ch, ho, wo), dtype=np.int64)
        for y in range(ho):
            for x in range(wo):
                for cw in range(pl.out_words):
                    v = rl.from_bits(beats[i])
                    if v.kind != ResKind.FM_WORD:
                        raise ValueError(f"read-back beat {i} is {v.kind}, not FM_WORD")
                    raw = _field_bits(rl, beats[i], "data")
                    i += 1
                    for lane in range(C):
                        ci = cw * C + lane
                        if ci < ch:
                            a[ci, y, x] = (raw >> (lane * A)) & ((1 << A) - 1)
        maps.append(a)
    return maps


def layer_outputs(bundle, prog: ResidentProgram, res: RunResult) -> list:
    """The engine's outputs in the golden model's per-bundle-layer form (flatten included);
    ``None`` for a convolution whose pool was fused into it (its output is never stored: compile
    with ``fuse=False`` to see it)."""
    by_index = {pl.index: m for pl, m in zip(prog.layers[:-1], res.maps)}
    out = []
    for li, layer in enumerate(bundle.layers):
        if li == len(bundle.layers) - 1:
            v = np.asarray(res.logits, dtype=np.int64)
        elif layer.kind == "flatten":
            src = _sources(layer, li)[0]
            v = None if src < 0 or out[src] is None else out[src].reshape(-1)
        else:
            v = by_index.get(li)
            if v is not None and len(layer.out_shape) == 1:
                v = v.reshape(-1)
        out.append(v)
    return out


def expected_busy(prog: ResidentProgram, k: int) -> list:
    return [pl.busy(k) for pl in prog.layers]


# ---- Amaranth simulation ------------------------------------------------------------------------

def run_amaranth(prog: ResidentProgram, images, ks, *, readback: bool = True, seed: int = 0,
                 p_idle: float = 0.0, p_stall: float = 0.0, max_cycles: int = 10_000_000,
                 overlap: bool = False) -> list:
    """Simulate the resident engine (Amaranth simulator): load the network once, then for every
    image and every k: write the image, RUN, collect the results (and, with ``readback``, every
    hidden layer's feature map). Returns ``[[RunResult per k] per image]``.
    ``p_idle``/``p_stall``: probability of an idle cycle before a command beat / of holding
    ``res.ready`` low per cycle (random back-pressure). ``overlap`` (a ``double_buffer``
    configuration): the next RUN's image is written right after a RUN, before its results are
    read (``RunResult.next_early`` counts its beats accepted before the SUMMARY was offered)."""
    from amaranth.sim import Simulator

    from ..hw.resident.engine import ResidentEngine

    eng = ResidentEngine(prog.cfg)
    rng = random.Random(seed)
    results = []
    nres = result_beat_count(prog)
    rb = readback_beats(prog) if readback else []

    async def put(ctx, word):
        while p_idle and rng.random() < p_idle:
            await ctx.tick()
        ctx.set(eng.cmd.valid, 1)
        ctx.set(eng.cmd.payload.as_value(), word)
        res_valid, = await ctx.tick().sample(eng.res.valid).until(eng.cmd.ready)
        ctx.set(eng.cmd.valid, 0)
        return res_valid

    async def get(ctx, n):
        got = []
        while len(got) < n:
            while p_stall and rng.random() < p_stall:
                ctx.set(eng.res.ready, 0)
                await ctx.tick()
            ctx.set(eng.res.ready, 1)
            payload, = await ctx.tick().sample(eng.res.payload.as_value()).until(eng.res.valid)
            got.append(int(payload))
        ctx.set(eng.res.ready, 0)
        return got

    runs = [(i, k) for i in range(len(images)) for k in ks]

    async def bench(ctx):
        for word in prog.load_beats():
            await put(ctx, word)
        for j, (i, k) in enumerate(runs):
            if j % len(ks) == 0:
                per_k = []
                results.append(per_k)
            if not overlap or j == 0:
                for word in image_beats(prog, images[i]):
                    await put(ctx, word)
            for word in run_beats(prog, k):
                await put(ctx, word)
            nxt = []        # per beat of the next image: accepted before the SUMMARY was offered
            if overlap and j + 1 < len(runs):
                for word in image_beats(prog, images[runs[j + 1][0]]):
                    nxt.append(not await put(ctx, word))
            res = decode_run(prog, await get(ctx, nres))
            res.next_early, res.next_beats = sum(nxt), len(nxt)
            if readback:
                beats = []
                for word in rb:
                    await put(ctx, word)
                    beats += await get(ctx, 1)
                res.maps = decode_readback(prog, beats)
            per_k.append(res)

    sim = Simulator(eng)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results
