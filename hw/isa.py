"""Encoders and decoders of every word on the engine's ports (see ``docs/engine.md``).

This module is the single source of truth for the command format, the memory word layouts and the
result beat layout. The RTL (``engine.py``), the Amaranth-simulator tests, the cocotb benches and
the host driver all use it. It needs nothing but the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass, asdict, replace
from typing import Iterable, Sequence

__all__ = [
    "Op", "Counter", "EngineConfig", "CMD_WIDTH", "SW",
    "cmd_nop", "cmd_load_w", "cmd_load_a", "cmd_load_pp", "cmd_run", "cmd_read_counters",
    "cmd_clear_counters", "decode_cmd",
    "pack_weight_word", "pack_act_word", "pack_pp_word", "pack_pp_words", "decode_result",
    "ResultBeat",
    "signed_bits", "to_signed", "to_unsigned", "addr_width", "cmd_field",
]

CMD_WIDTH = 64
#: width of the shift field S in a post-processing word
SW = 6


class Op:
    NOP = 0
    LOAD_W = 1
    LOAD_A = 2
    LOAD_PP = 3
    RUN = 4
    READ_COUNTERS = 5
    CLEAR_COUNTERS = 6


class Counter:
    TOTAL = 0
    BUSY = 1
    STALL = 2
    PLANE_PASSES = 3
    DATA_BEATS = 4
    RESULT_BEATS = 5
    NAMES = ("total", "busy", "stall", "plane_passes", "data_beats", "result_beats")


# (name, lo, width) of every command field
FIELDS = {
    "op": (0, 4),
    "bank": (4, 1),
    "relu": (5, 1),
    "every_plane": (6, 1),
    "save": (7, 1),
    "k_start": (8, 5),
    "k_end": (13, 5),
    "wplanes": (18, 5),
    "ngroups": (23, 8),
    "nchunks": (31, 10),
    "npos": (41, 16),
    "addr": (8, 20),
    "count": (28, 24),
}


def addr_width(depth: int) -> int:
    """Address bits of a memory of ``depth`` words (at least 1)."""
    return max(1, (depth - 1).bit_length())


def cmd_field(word, name: str):
    """Field ``name`` of a command word given as a sliceable value (an Amaranth signal)."""
    lo, w = FIELDS[name]
    return word[lo:lo + w]


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


def _put(word: int, name: str, value: int) -> int:
    lo, width = FIELDS[name]
    value = int(value)
    if not 0 <= value < (1 << width):
        raise ValueError(f"command field {name}={value} does not fit in {width} bits")
    return word | (value << lo)


def _cmd(op: int, **fields: int) -> int:
    word = _put(0, "op", op)
    for name, value in fields.items():
        word = _put(word, name, value)
    return word


def cmd_nop() -> int:
    return _cmd(Op.NOP)


def cmd_load_w(addr: int, count: int) -> int:
    return _cmd(Op.LOAD_W, addr=addr, count=count)


def cmd_load_a(bank: int, addr: int, count: int) -> int:
    return _cmd(Op.LOAD_A, bank=bank, addr=addr, count=count)


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
    return _cmd(Op.RUN, bank=bank, relu=int(relu), every_plane=int(every_plane), save=int(save),
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
    #: post-processing lanes P (0: one per row, P = R). With P < R (P must divide R) the R
    #: accumulators of a result are post-processed P at a time over Q = R/P cycles, results are
    #: issued at most one per Q cycles, and each table entry is Q words of P (M, B) pairs
    pp_lanes: int = 0

    def __post_init__(self):
        def pos_int(name, lo=1, hi=None):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo or (hi is not None and v > hi):
                rng = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
                raise ValueError(f"{name} must be an integer {rng}, not {v!r}")
        pos_int("rows", 1, 256)
        pos_int("cols", 1, 1024)
        pos_int("abits", 1, 16)
        pos_int("nbits", 1, 16)
        pos_int("max_reduction", 1, 1 << 20)
        pos_int("mbits", 2, 32)
        pos_int("bbits", 2, 96)
        pos_int("obits", 2, 64)
        for name in ("wdepth", "adepth", "ppdepth", "accdepth"):
            pos_int(name, 1, 1 << 20)
        pos_int("pp_lanes", 0, self.rows)
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
        """P: accumulators post-processed per cycle (``pp_lanes``, or R when it is 0)."""
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
        """This configuration with one post-processing lane per row (``pp_lanes`` = 0)."""
        return replace(self, pp_lanes=0)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(acc_width=self.acc_width, data_width=self.data_width, res_width=self.res_width,
                 pp_width=self.pp_width, pp_par=self.pp_par, pp_slices=self.pp_slices,
                 pp_entries=self.pp_entries, cmd_width=CMD_WIDTH, shift_width=SW)
        return d


def pack_weight_word(cfg: EngineConfig, bits: Sequence[Sequence[int]]) -> int:
    """``bits[r][l]`` in {0,1} (1 reads as +1) for R rows x up to C lanes -> one weight word."""
    word = 0
    for r, row in enumerate(bits):
        for l, b in enumerate(row):
            if b:
                word |= 1 << (r * cfg.cols + l)
    return word


def pack_act_word(cfg: EngineConfig, xs: Iterable[int]) -> int:
    """Up to C activation codes (unsigned A-bit) -> one activation word; missing lanes are 0."""
    word = 0
    for l, x in enumerate(xs):
        x = int(x)
        if not 0 <= x < (1 << cfg.abits):
            raise ValueError(f"activation code {x} is outside [0, {(1 << cfg.abits) - 1}]")
        word |= x << (l * cfg.abits)
    return word


def pack_pp_word(cfg: EngineConfig, shift: int, ms: Sequence[int], bs: Sequence[int]) -> int:
    """Shift S and up to P pairs (M, B) -> one post-processing word; missing rows are 0."""
    if not 0 <= int(shift) < (1 << SW):
        raise ValueError(f"shift S={shift} does not fit in {SW} bits")
    if len(ms) > cfg.pp_par or len(bs) > cfg.pp_par:
        raise ValueError(f"a post-processing word holds {cfg.pp_par} (M, B) pairs, not"
                         f" {max(len(ms), len(bs))}")
    word = int(shift)
    stride = cfg.mbits + cfg.bbits
    for r, (m, b) in enumerate(zip(ms, bs)):
        word |= to_unsigned(m, cfg.mbits) << (SW + r * stride)
        word |= to_unsigned(b, cfg.bbits) << (SW + r * stride + cfg.mbits)
    return word


def pack_pp_words(cfg: EngineConfig, shift: int, ms: Sequence[int], bs: Sequence[int]) -> list[int]:
    """One table entry: S and up to R pairs (M, B) -> its Q = R/P words (rows ``q*P .. q*P+P-1``
    in word q, each word carrying S); entry e lives at words ``e*Q .. e*Q+Q-1``."""
    if len(ms) > cfg.rows or len(bs) > cfg.rows:
        raise ValueError(f"a table entry holds {cfg.rows} (M, B) pairs, not {max(len(ms), len(bs))}")
    P = cfg.pp_par
    return [pack_pp_word(cfg, shift, list(ms[q * P:(q + 1) * P]), list(bs[q * P:(q + 1) * P]))
            for q in range(cfg.pp_slices)]


@dataclass(frozen=True)
class ResultBeat:
    kind: int          # 0 result, 1 counter
    tag: int           # k for a result, counter index for a counter
    values: tuple      # R signed values (result) or (value,) (counter)


def decode_result(cfg: EngineConfig, word: int) -> ResultBeat:
    kind = word & 1
    tag = (word >> 1) & 0x1F
    if kind:
        return ResultBeat(1, tag, ((word >> 8) & ((1 << 64) - 1),))
    vals = tuple(to_signed(word >> (8 + r * cfg.obits), cfg.obits) for r in range(cfg.rows))
    return ResultBeat(0, tag, vals)
