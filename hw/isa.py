"""The layout registry: every word on the engine's ports and in its memories, defined once.

Each word is an ``amaranth.lib.data`` layout: the RTL reads and writes it through views
(``cmd.p.run.k_end``, ``beat.body.values[r]``), host code packs and unpacks it with the same layout
(``Layout.const(...)``, ``Layout.from_bits(...)``), the numpy bulk packers of ``sim/driver.py``
take their bit offsets from it (:func:`array_offsets`), and the params JSON and the tables in
``docs/engine.md`` are generated from it (:func:`layout_rows`, :func:`markdown_tables`).

========================  ====================================  ==========================
word                      layout                                 used by
========================  ====================================  ==========================
command (64 bits)         :data:`Command` (:class:`Op` + union)  front-end, driver, model
result / counter beat     :func:`result_layout`                  result stage, driver, model
weight word               :func:`weight_layout`                  exec stage, driver
int8 baseline weight      :func:`baseline_weight_layout`         baseline, driver
activation word           :func:`act_layout`                     exec stage, driver
post-processing word      :func:`pp_layout` / :func:`pp_word_layout`  PostProc, driver, model
PE side-band metadata     :func:`pe_meta_layout`                 exec stage -> result stage
========================  ====================================  ==========================

It needs amaranth (no torch, no model).
"""

from __future__ import annotations

from dataclasses import dataclass, asdict, replace
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np
from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data, enum

__all__ = [
    "Op", "Kind", "Counter", "COUNTER_SETS", "EngineConfig", "CMD_WIDTH", "SW", "KW", "BEAT_BODY_LO",
    "RunArgs", "LoadArgs", "Command", "FIELDS",
    "result_layout", "weight_layout", "baseline_weight_layout", "act_layout", "pp_layout",
    "pp_word_layout", "pe_meta_layout", "pp_meta_layout", "array_offsets", "pack_array_words",
    "layout_rows", "markdown_tables", "word_layouts", "unpack_pp_word",
    "cmd_nop", "cmd_load_w", "cmd_load_a", "cmd_load_pp", "cmd_run", "cmd_read_counters",
    "cmd_clear_counters", "decode_cmd", "encode_result", "encode_counter",
    "pack_weight_word", "pack_act_word", "pack_pp_word", "pack_pp_words", "decode_result",
    "ResultBeat",
    "signed_bits", "to_signed", "to_unsigned", "addr_width", "check_int", "check_args", "refuse",
]

CMD_WIDTH = 64
#: width of the shift field S in a post-processing word
SW = 6
#: width of a plane count k (k_start, k_end, wplanes, the result tag)
KW = 5


class Op(enum.IntEnum, shape=4):
    """Command op codes (``Command.op``)."""
    NOP = 0
    LOAD_W = 1
    LOAD_A = 2
    LOAD_PP = 3
    RUN = 4
    READ_COUNTERS = 5
    CLEAR_COUNTERS = 6


class Kind(enum.IntEnum, shape=1):
    """What a beat on ``res`` carries (``result_layout(cfg).kind``)."""
    RESULT = 0
    COUNTER = 1


class Counter:
    """Counter indices (the tag of a counter beat)."""
    TOTAL = 0
    BUSY = 1
    STALL = 2
    PLANE_PASSES = 3
    DATA_BEATS = 4
    RESULT_BEATS = 5
    NAMES = ("total", "busy", "stall", "plane_passes", "data_beats", "result_beats")


#: ``EngineConfig.counter_set`` -> the counters the engine has
COUNTER_SETS = {"all": Counter.NAMES, "total": ("total",), "none": ()}


#: arguments of RUN (bits 5.. of the command)
RunArgs = data.StructLayout({
    "relu": 1, "every_plane": 1, "save": 1,
    "k_start": KW, "k_end": KW, "wplanes": KW,
    "ngroups": 8, "nchunks": 10, "npos": 16,
})
#: arguments of LOAD_W / LOAD_A / LOAD_PP (bits 5.. of the command)
LoadArgs = data.StructLayout({"_pad": 3, "addr": 20, "count": 24})
#: one command word: op, the activation bank (LOAD_A, RUN), then the op's arguments
Command = data.StructLayout({
    "op": Op,
    "bank": 1,
    "p": data.UnionLayout({"run": RunArgs, "load": LoadArgs}),
    "_reserved": CMD_WIDTH - 5 - max(RunArgs.size, LoadArgs.size),
})
assert Command.size == CMD_WIDTH


def _leaves(layout, lo: int = 0):
    """(name, lo, width) of every named leaf field of a struct/union layout, in layout order
    (fields whose name starts with ``_`` are padding)."""
    for name, field in layout:
        if isinstance(name, str) and name.startswith("_"):
            continue
        shape = field.shape
        if isinstance(shape, (data.StructLayout, data.UnionLayout)):
            yield from _leaves(shape, lo + field.offset)
        else:
            yield name, lo + field.offset, field.width


#: (lo, width) of every command field, derived from :data:`Command`
FIELDS = {name: (lo, w) for name, lo, w in _leaves(Command)}


def addr_width(depth: int) -> int:
    """Address bits of a memory of ``depth`` words (at least 1)."""
    return max(1, (depth - 1).bit_length())


def signed_bits(lo: int, hi: int) -> int:
    """Width of the smallest two's-complement integer holding every value in [lo, hi]."""
    w = 1
    while not (-(1 << (w - 1)) <= lo and hi <= (1 << (w - 1)) - 1):
        w += 1
    return w


def to_unsigned(value: int, width: int) -> int:
    """Two's-complement bit pattern of ``value`` in ``width`` bits; refuses values that don't fit."""
    value = int(value)
    if not -(1 << (width - 1)) <= value < (1 << (width - 1)):
        raise ValueError(f"value {value} does not fit in a signed {width}-bit field")
    return value & ((1 << width) - 1)


def to_signed(bits: int, width: int) -> int:
    bits &= (1 << width) - 1
    return bits - (1 << width) if bits >> (width - 1) else bits


def check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    """``value`` when it is an int (not a bool) in [lo, hi]; else ValueError naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < lo \
            or (hi is not None and value > hi):
        rng = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be an integer {rng}, not {value!r}")
    return value


def check_args(component, *checks) -> None:
    """Run :func:`check_int` on each ``(name, value, lo[, hi])`` for ``component``'s constructor;
    a refused component is marked as used (Amaranth warns about components never elaborated)."""
    try:
        for check in checks:
            check_int(*check)
    except ValueError as e:
        refuse(component, e)


def refuse(component, error: Exception):
    """Raise ``error`` from ``component``'s constructor, marking the refused component as used
    (Amaranth warns about components never elaborated): the one place that does so."""
    component._MustUse__silence = True
    raise error


def _cmd(op: Op, bank: int = 0, **args: int) -> int:
    """One command word: ``op``, ``bank`` and the op's arguments (RUN or LOAD fields)."""
    for name, value in (("bank", bank), *args.items()):
        value = int(value)
        if not 0 <= value < (1 << FIELDS[name][1]):
            raise ValueError(f"command field {name}={value} does not fit in {FIELDS[name][1]} bits")
    kind = "run" if op == Op.RUN else "load"
    fields = {"op": op, "bank": int(bank)}
    if args:
        fields["p"] = {kind: {n: int(v) for n, v in args.items()}}
    return Command.const(fields).as_bits()


def cmd_nop() -> int:
    return _cmd(Op.NOP)


def cmd_load_w(addr: int, count: int) -> int:
    return _cmd(Op.LOAD_W, addr=addr, count=count)


def cmd_load_a(bank: int, addr: int, count: int) -> int:
    return _cmd(Op.LOAD_A, bank, addr=addr, count=count)


def cmd_load_pp(addr: int, count: int) -> int:
    return _cmd(Op.LOAD_PP, addr=addr, count=count)


def cmd_run(*, bank: int, relu: bool, k_start: int, k_end: int, wplanes: int, ngroups: int,
            nchunks: int, npos: int, every_plane: bool = False, save: bool = False) -> int:
    if not 0 <= k_start < k_end:
        raise ValueError(f"RUN needs 0 <= k_start < k_end, not k_start={k_start} k_end={k_end}")
    if k_end > wplanes:
        raise ValueError(f"RUN k_end={k_end} exceeds the {wplanes} weight planes loaded")
    for name, v in (("ngroups", ngroups), ("nchunks", nchunks), ("npos", npos)):
        if v < 1:
            raise ValueError(f"RUN {name} must be >= 1, not {v}")
    return _cmd(Op.RUN, bank, relu=int(relu), every_plane=int(every_plane), save=int(save),
                k_start=k_start, k_end=k_end, wplanes=wplanes, ngroups=ngroups, nchunks=nchunks,
                npos=npos)


def cmd_read_counters() -> int:
    return _cmd(Op.READ_COUNTERS)


def cmd_clear_counters() -> int:
    return _cmd(Op.CLEAR_COUNTERS)


def decode_cmd(word: int) -> dict:
    """All fields of a command word (fields that overlap are all reported)."""
    return {name: (word >> lo) & ((1 << w) - 1) for name, (lo, w) in FIELDS.items()}


@dataclass(frozen=True)
class EngineConfig:
    """Parameters of one engine instance and every width derived from them."""

    rows: int = 8
    cols: int = 16
    abits: int = 8
    nbits: int = 8
    max_reduction: int = 4096
    mbits: int = 18
    bbits: int = 48
    obits: int = 32
    wdepth: int = 1024
    adepth: int = 512
    ppdepth: int = 128
    accdepth: int = 256
    #: post-processing lanes P (None: one per row, P = R; 0 is read as None). With P < R (P must
    #: divide R) the R accumulators of a result are post-processed P at a time over Q = R/P
    #: cycles, results are issued at most one per Q cycles, and each table entry is Q words of P
    #: (M, B) pairs
    pp_lanes: int | None = None
    #: width of each performance counter; below 64 a counter saturates at 2^bits - 1 (the driver
    #: refuses a saturated reading) — 32 saves ~200 logic cells where the chip is full (iCE40)
    counter_bits: int = 64
    #: which performance counters the engine has (:data:`COUNTER_SETS`): ``"all"`` the six of
    #: ``Counter.NAMES``, ``"total"`` the cycle counter only (READ_COUNTERS sends its one beat),
    #: ``"none"`` none (READ_COUNTERS sends no beat; the driver then neither clears nor reads
    #: them, and a host that needs a cycle count is refused) -- the fixed cost at small arrays
    counter_set: str = "all"

    def __post_init__(self):
        def pos_int(name, lo=1, hi=None):
            check_int(name, getattr(self, name), lo, hi)
        pos_int("rows", 1, 256)
        pos_int("cols", 1, 1024)
        pos_int("abits", 1, 16)
        pos_int("nbits", 1, 16)
        pos_int("max_reduction", 1, 1 << 20)
        pos_int("mbits", 2, 32)
        pos_int("bbits", 2, 96)
        pos_int("obits", 2, 64)
        pos_int("counter_bits", 16, 64)
        if self.counter_set not in COUNTER_SETS:
            raise ValueError(f"counter_set must be one of {', '.join(COUNTER_SETS)},"
                             f" not {self.counter_set!r}")
        for name in ("wdepth", "adepth", "ppdepth", "accdepth"):
            pos_int(name, 1, 1 << 20)
        if self.pp_lanes is not None:
            pos_int("pp_lanes", 0, self.rows)
            if self.pp_lanes in (0, self.rows):     # one lane per row: the default
                object.__setattr__(self, "pp_lanes", None)
        if self.rows % self.pp_par:
            raise ValueError(f"pp_lanes {self.pp_lanes} must divide rows {self.rows}")
        if self.ppdepth < self.pp_slices:
            raise ValueError(f"ppdepth {self.ppdepth} cannot hold one table entry of"
                             f" {self.pp_slices} words (rows {self.rows} / pp_lanes {self.pp_lanes})")
        if self.obits < self.abits + 1:
            raise ValueError(f"obits {self.obits} cannot hold a ReLU output of abits {self.abits}"
                             f" bits (needs obits >= abits + 1)")
        if self.acc_width + self.mbits > 95:
            raise ValueError(
                f"acc_width {self.acc_width} + mbits {self.mbits} exceeds the 95-bit product limit;"
                f" lower max_reduction ({self.max_reduction}), nbits or abits")
        if self.nchunks_max > (1 << FIELDS["nchunks"][1]) - 1:
            raise ValueError(f"max_reduction {self.max_reduction} needs {self.nchunks_max} chunks of"
                             f" {self.cols} lanes, more than the RUN command can address")

    # ---- derived widths -------------------------------------------------------------------------
    @property
    def counter_names(self) -> tuple:
        """The counters this engine has, in index order (their beats' tags are their indices in
        ``Counter.NAMES``)."""
        return COUNTER_SETS[self.counter_set]

    @property
    def acc_bound(self) -> int:
        """Largest |acc_k| any layer can produce: (2^N-1) * I_max * (2^A-1)."""
        return ((1 << self.nbits) - 1) * self.max_reduction * ((1 << self.abits) - 1)

    @property
    def acc_width(self) -> int:
        return signed_bits(-self.acc_bound, self.acc_bound)

    @property
    def nchunks_max(self) -> int:
        return -(-self.max_reduction // self.cols)

    @property
    def pp_par(self) -> int:
        """P: accumulators post-processed per cycle (``pp_lanes``, or R when it is None)."""
        return self.pp_lanes or self.rows

    @property
    def pp_slices(self) -> int:
        """Q = R/P: words per post-processing table entry, cycles per result."""
        return self.rows // self.pp_par

    @property
    def pp_entries(self) -> int:
        """Table entries (one per (k, group)) the post-processing memory holds."""
        return self.ppdepth // self.pp_slices

    @property
    def pp_width(self) -> int:
        return SW + self.pp_par * (self.mbits + self.bbits)

    @property
    def data_width(self) -> int:
        return max(self.cols * self.abits, self.rows * self.cols, self.pp_width)

    @property
    def res_data_width(self) -> int:
        return max(self.rows * self.obits, 64)

    @property
    def res_width(self) -> int:
        return 8 + self.res_data_width

    def full_rate_pp(self) -> "EngineConfig":
        """This configuration with one post-processing lane per row (``pp_lanes`` = None)."""
        return replace(self, pp_lanes=None)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(acc_width=self.acc_width, data_width=self.data_width, res_width=self.res_width,
                 pp_width=self.pp_width, pp_par=self.pp_par, pp_slices=self.pp_slices,
                 pp_entries=self.pp_entries, cmd_width=CMD_WIDTH, shift_width=SW)
        return d


# ---- word layouts that depend on the configuration -----------------------------------------------

@lru_cache(maxsize=None)
def result_layout(cfg: EngineConfig) -> data.StructLayout:
    """One beat on ``res`` (``cfg.res_width`` bits): kind, a 5-bit tag (k of a result, index of a
    counter), then R signed ``obits`` values (a result) or one unsigned 64-bit value (a counter)."""
    return data.StructLayout({
        "kind": Kind,
        "tag": KW,
        "_pad": 2,
        "body": data.UnionLayout({
            "values": data.ArrayLayout(signed(cfg.obits), cfg.rows),
            "counter": 64,
        }),
    })


#: bit offset of a beat's body (values or counter): the same for every configuration
BEAT_BODY_LO = result_layout(EngineConfig())["body"].offset


def weight_layout(cfg: EngineConfig) -> data.ArrayLayout:
    """One weight-plane word: R rows of C lane bits (1 reads as +1, 0 as -1)."""
    return data.ArrayLayout(data.ArrayLayout(1, cfg.cols), cfg.rows)


def baseline_weight_layout(cfg: EngineConfig, wbits: int = 8) -> data.ArrayLayout:
    """One weight word of the int8 baseline: R rows of C signed ``wbits``-bit weights."""
    return data.ArrayLayout(data.ArrayLayout(signed(wbits), cfg.cols), cfg.rows)


def act_layout(cfg: EngineConfig) -> data.ArrayLayout:
    """One activation word: C unsigned A-bit codes."""
    return data.ArrayLayout(unsigned(cfg.abits), cfg.cols)


@lru_cache(maxsize=None)
def pp_word_layout(lanes: int, mbits: int, bbits: int, shift_width: int = SW) -> data.StructLayout:
    """One post-processing word: the shift S, then ``lanes`` pairs (M signed, B signed)."""
    return data.StructLayout({
        "shift": shift_width,
        "lanes": data.ArrayLayout(data.StructLayout({"m": signed(mbits), "b": signed(bbits)}),
                                  lanes),
    })


def pp_layout(cfg: EngineConfig) -> data.StructLayout:
    """The post-processing word of ``cfg`` (``cfg.pp_par`` lanes, ``cfg.pp_width`` bits)."""
    return pp_word_layout(cfg.pp_par, cfg.mbits, cfg.bbits)


@lru_cache(maxsize=None)
def pe_meta_layout(accaddr_width: int) -> data.StructLayout:
    """Side-band metadata of one chunk through the exec stage (the PE array's tag): post-process
    after this chunk (``emit``), save the accumulators (``save``, at ``accaddr``), ReLU, planes
    done ``k``."""
    return data.StructLayout({"emit": 1, "save": 1, "relu": 1, "k": KW, "accaddr": accaddr_width})


#: side-band metadata of one slice through the post-processing lanes: k and "last slice"
pp_meta_layout = data.StructLayout({"k": KW, "last": 1})


# ---- host packing and unpacking with the layouts ----------------------------------------------------

def pack_value(layout: data.StructLayout, **fields):
    """One Amaranth value holding a whole ``layout`` word built from ``fields`` (unnamed fields
    and gaps are zero), for a single assignment: ``sig.eq(pack_value(layout, a=x, b=y))``.

    Why: filling a struct signal field by field in ``m.d.comb`` makes Yosys write one
    ``assign`` per slice, and Icarus resolves a net with several partial drivers strength by
    strength (``vec8``) each time any of them changes; a per-cycle word built so made the streamed
    engine simulate 1.65x slower on Icarus.
    """
    from amaranth.hdl import Cat, Const, Value
    unknown = set(fields) - {name for name, _ in layout}
    if unknown:
        raise ValueError(f"pack_value: no field {sorted(unknown)[0]!r} in the layout")
    parts, at = [], 0
    for name, field in sorted(layout, key=lambda nf: nf[1].offset):
        if field.offset > at:
            parts.append(Const(0, field.offset - at))
        v = fields.get(name, 0)
        v = Const(v, field.width) if isinstance(v, int) else Value.cast(v)
        if len(v) > field.width:
            raise ValueError(f"pack_value: {len(v)}-bit value for the {field.width}-bit {name!r}")
        parts.append(v.as_unsigned() if len(v) == field.width
                     else Cat(v.as_unsigned(), Const(0, field.width - len(v))))
        at = field.offset + field.width
    if layout.size > at:
        parts.append(Const(0, layout.size - at))
    return Cat(*parts)


def array_offsets(layout) -> np.ndarray:
    """Bit offset of every element of a (nested) ``ArrayLayout``, shaped like the array
    (``[R, C]`` for :func:`weight_layout`); the element width is that of the innermost shape."""
    if not isinstance(layout, data.ArrayLayout):
        return np.zeros((), dtype=np.int64)
    inner = array_offsets(layout.elem_shape)
    return np.stack([layout[i].offset + inner for i in range(layout.length)])


def _leaf_width(layout) -> int:
    while isinstance(layout, data.ArrayLayout):
        layout = layout.elem_shape
    return Shape.cast(layout).width


def pack_array_words(layout, values: np.ndarray) -> list[int]:
    """``values`` [n, *array shape] integers -> n words of the (nested) ``ArrayLayout``, each
    element two's-complement in its width (bit positions from :func:`array_offsets`)."""
    offs = array_offsets(layout).reshape(-1)
    ew = _leaf_width(layout)
    vals = np.asarray(values, dtype=np.int64).reshape(len(values), offs.size)
    bits = (vals[:, :, None] >> np.arange(ew)) & 1                    # [n, elems, ew], LSB first
    full = np.zeros((len(values), layout.size), dtype=np.uint8)
    full[:, (offs[:, None] + np.arange(ew)).reshape(-1)] = bits.reshape(len(values), -1)
    packed = np.packbits(full, axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def pack_weight_word(cfg: EngineConfig, bits: Sequence[Sequence[int]]) -> int:
    """``bits[r][l]`` in {0,1} (1 reads as +1) for R rows x up to C lanes -> one weight word."""
    full = np.zeros((1, cfg.rows, cfg.cols), dtype=np.int64)
    for r, row in enumerate(bits):
        full[0, r, :len(row)] = [1 if b else 0 for b in row]
    return pack_array_words(weight_layout(cfg), full)[0]


def pack_act_word(cfg: EngineConfig, xs: Iterable[int]) -> int:
    """Up to C activation codes (unsigned A-bit) -> one activation word; missing lanes are 0."""
    xs = [int(x) for x in xs]
    for x in xs:
        if not 0 <= x < (1 << cfg.abits):
            raise ValueError(f"activation code {x} is outside [0, {(1 << cfg.abits) - 1}]")
    full = np.zeros((1, cfg.cols), dtype=np.int64)
    full[0, :len(xs)] = xs
    return pack_array_words(act_layout(cfg), full)[0]


def pack_pp_word(cfg: EngineConfig, shift: int, ms: Sequence[int], bs: Sequence[int]) -> int:
    """Shift S and up to P pairs (M, B) -> one post-processing word; missing rows are 0."""
    if not 0 <= int(shift) < (1 << SW):
        raise ValueError(f"shift S={shift} does not fit in {SW} bits")
    if len(ms) > cfg.pp_par or len(bs) > cfg.pp_par:
        raise ValueError(f"a post-processing word holds {cfg.pp_par} (M, B) pairs, not"
                         f" {max(len(ms), len(bs))}")
    for m, b in zip(ms, bs):       # refuse what does not fit (the layout would truncate)
        to_unsigned(m, cfg.mbits), to_unsigned(b, cfg.bbits)
    lanes = [{"m": int(m), "b": int(b)} for m, b in zip(ms, bs)]
    lanes += [{"m": 0, "b": 0}] * (cfg.pp_par - len(lanes))
    return pp_layout(cfg).const({"shift": int(shift), "lanes": lanes}).as_bits()


def pack_pp_words(cfg: EngineConfig, shift: int, ms: Sequence[int], bs: Sequence[int]) -> list[int]:
    """One table entry: S and up to R pairs (M, B) -> its Q = R/P words (rows ``q*P .. q*P+P-1``
    in word q, each word carrying S); entry e lives at words ``e*Q .. e*Q+Q-1``."""
    if len(ms) > cfg.rows or len(bs) > cfg.rows:
        raise ValueError(f"a table entry holds {cfg.rows} (M, B) pairs, not {max(len(ms), len(bs))}")
    P = cfg.pp_par
    return [pack_pp_word(cfg, shift, list(ms[q * P:(q + 1) * P]), list(bs[q * P:(q + 1) * P]))
            for q in range(cfg.pp_slices)]


def unpack_pp_word(cfg: EngineConfig, word: int) -> tuple[int, list[int], list[int]]:
    """(S, [M of each lane], [B of each lane]) of one post-processing word."""
    w = pp_layout(cfg).from_bits(word)
    return w.shift, [lane.m for lane in w.lanes], [lane.b for lane in w.lanes]


@dataclass(frozen=True)
class ResultBeat:
    kind: int          # Kind.RESULT or Kind.COUNTER
    tag: int           # k for a result, counter index for a counter
    values: tuple      # R signed values (result) or (value,) (counter)


def decode_result(cfg: EngineConfig, word: int) -> ResultBeat:
    beat = result_layout(cfg).from_bits(word)
    if beat.kind == Kind.COUNTER:
        return ResultBeat(Kind.COUNTER, beat.tag, (beat.body.counter,))
    return ResultBeat(Kind.RESULT, beat.tag, tuple(beat.body.values))


def encode_result(cfg: EngineConfig, k: int, values: Sequence[int]) -> int:
    """The result beat of R ``values`` (signed ``obits``) at k planes."""
    for v in values:
        to_unsigned(v, cfg.obits)
    return result_layout(cfg).const({"kind": Kind.RESULT, "tag": k,
                                     "body": {"values": [int(v) for v in values]}}).as_bits()


def encode_counter(cfg: EngineConfig, index: int, value: int) -> int:
    """The counter beat of counter ``index`` holding ``value``."""
    return result_layout(cfg).const({"kind": Kind.COUNTER, "tag": index,
                                     "body": {"counter": value}}).as_bits()


# ---- generated descriptions (params JSON, docs/engine.md) -------------------------------------------

def layout_rows(layout, prefix: str = "", lo: int = 0) -> list[dict]:
    """Every field of ``layout`` as ``{"field", "lo", "hi", "width", "type"}``: an array is one row
    ``name[i]`` (its element type and stride), union members are listed at the same offset."""
    if isinstance(layout, data.ArrayLayout):
        return [{"field": f"{prefix}[i]", "lo": lo, "hi": lo + layout.size - 1,
                 "width": layout.size, "type": _array_desc(layout)}]
    rows = []
    for name, field in layout:
        if name.startswith("_"):
            continue
        shape, at = field.shape, lo + field.offset
        if isinstance(shape, data.Layout):
            rows += layout_rows(shape, f"{prefix}{name}" + ("" if isinstance(
                shape, data.ArrayLayout) else "."), at)
        else:
            rows.append({"field": f"{prefix}{name}", "lo": at, "hi": at + field.width - 1,
                         "width": field.width, "type": _shape_desc(shape)})
    return rows


def _shape_desc(shape) -> str:
    if hasattr(shape, "__members__"):
        return f"enum {shape.__name__}: " + ", ".join(f"{m.name}={m.value}" for m in shape)
    if isinstance(shape, data.StructLayout):
        return "{" + ", ".join(f"{n}: {_shape_desc(f.shape)}" for n, f in shape) + "}"
    if isinstance(shape, data.ArrayLayout):
        return f"({_array_desc(shape)})"
    s = Shape.cast(shape)
    return f"{'signed' if s.signed else 'unsigned'} {s.width}"


def _array_desc(layout: data.ArrayLayout) -> str:
    stride = layout.size // layout.length
    return f"{layout.length} x {_shape_desc(layout.elem_shape)}, element i at lo + {stride}*i"


def word_layouts(cfg: EngineConfig) -> dict:
    """Name -> layout of every word of an engine with configuration ``cfg``."""
    return {"command": Command, "result beat": result_layout(cfg),
            "weight word": weight_layout(cfg), "activation word": act_layout(cfg),
            "post-processing word": pp_layout(cfg),
            "PE side-band metadata": pe_meta_layout(addr_width(cfg.accdepth))}


def markdown_tables(cfg: EngineConfig) -> str:
    """The field tables of ``docs/engine.md`` ("Word layouts"), generated from the layouts."""
    out = []
    for title, layout in word_layouts(cfg).items():
        out.append(f"**{title}** ({layout.size} bits)\n")
        out.append("| field | bits | type |")
        out.append("|---|---|---|")
        for r in layout_rows(layout):
            out.append(f"| `{r['field']}` | `[{r['hi']}:{r['lo']}]` | {r['type']} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":      # regenerate the "Word layouts" tables of docs/engine.md
    print(markdown_tables(EngineConfig()))
