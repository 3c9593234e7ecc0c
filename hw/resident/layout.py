"""Every word of the resident-network engine, described once as ``amaranth.lib.data`` layouts.

The RTL takes views of these layouts (``desc.in_base``), the host packs words with the same objects
(``layout.const({...}).as_bits()``) and unpacks result beats with ``layout.from_bits(raw)``;
``docs/resident.md`` prints them. Nothing here imports torch or the model.

Memories (all synchronous-read, ``lib.memory.Memory``):

- weights: ``wdepth`` words of ``R*C`` bits; bit ``r*C + l`` is row r, lane l of one plane
  (1 reads as +1, 0 as -1), the word layout of the PE array;
- post-processing: ``ppdepth`` entries of ``SW + R*(MW+BW)`` bits (S, then M, B per row: the word
  :class:`~progressivenn.hw.postproc.PostProc` takes);
- program: ``max_layers`` descriptors (:func:`desc_layout`);
- feature maps: ``fmdepth`` words of ``C*A`` bits; a word holds C channels of one pixel
  (channel-packed), lane l at ``[l*A +: A]``.
"""

from __future__ import annotations

from dataclasses import dataclass, asdict

from amaranth.hdl import signed
from amaranth.lib import data, enum

__all__ = [
    "ResidentConfig", "Op", "Kind", "ResKind", "SW",
    "desc_layout", "tap_layout", "cmd_layout", "res_layout", "summary_layout", "counter_layout",
    "addr_width",
]

#: width of the shift field S of a post-processing entry
SW = 6
#: width of small counts (kernel, stride, padding, positions per row/column)
DIMW = 8


def addr_width(depth: int) -> int:
    """Address bits of a memory of ``depth`` words (at least 1)."""
    return max(1, (depth - 1).bit_length())


class Op(enum.Enum, shape=4):
    """Command opcodes (``cmd.op``)."""
    NOP = 0
    WRITE_W = 1       # weights[addr] <- data
    WRITE_PP = 2      # post-processing entry [addr] <- data
    WRITE_PROG = 3    # program descriptor [addr] <- data
    WRITE_FM = 4      # feature map [addr] <- data (the image codes)
    RUN = 5           # run the program with k = data[:5] planes; answers with result beats;
                      # data[5] (``accdepth`` > 0): continue the first convolution (engine.py)
    READ_FM = 6       # answer with one FM_WORD beat holding feature map [addr]
    WRITE_IMG = 7     # every tap bank [addr] <- data (C pixels of a one-channel image)
    WRITE_TAP = 8     # tap table [addr] (lane) <- data (tap_layout)
    WRITE_GATE = 9    # policy wrapper (policy.py): confidence gate [addr] <- data
    RUN_POLICY = 10   # policy wrapper (policy.py): run a precision policy on the image


class Kind(enum.Enum, shape=1):
    """Layer kinds of the program. A linear layer is a convolution whose window is the whole
    input map (flatten is a renaming and costs nothing)."""
    CONV = 0
    POOL = 1


class ResKind(enum.Enum, shape=2):
    """Result beat kinds (``res.kind``)."""
    SUMMARY = 0       # class, k, whole-image cycles
    LOGITS = 1        # R logits of output group ``index``
    COUNTER = 2       # busy cycles of program layer ``index``
    FM_WORD = 3       # a feature-map word read back (READ_FM)


@dataclass(frozen=True)
class ResidentConfig:
    """Parameters of one resident engine build; every width below derives from them.

    ``rows`` R must divide ``cols`` C (an output group of R channels is a slice of one
    channel-packed feature-map word).
    """
    rows: int = 8
    cols: int = 16
    abits: int = 8
    nbits: int = 8
    mbits: int = 18
    bbits: int = 48
    obits: int = 32
    acc_width: int = 32
    wdepth: int = 4096
    ppdepth: int = 256
    fmdepth: int = 2048
    max_layers: int = 16
    max_classes: int = 16
    taps: int = 9
    tapdepth: int = 1024
    fuse_groups: int = 8
    #: two image buffers (feature-map region or tap banks) selected by a toggle flipped at RUN:
    #: the next image may be written while the current one computes (``docs/resident.md``)
    double_buffer: bool = False
    #: the ADD unit (residual adds on chip, ``docs/resident.md`` "Residual adds"): the descriptor
    #: gains ``add``, ``add_ma``, ``add_mb``, ``add_s`` and the engine R multipliers of A x mbits
    #: bits; off, the engine is the chain-only one (the same RTL)
    adds: bool = False
    #: words of the continuation memory (0: none): the first convolution's accumulators of the
    #: last RUN, ``P*ceil(O/R)`` words of ``rows*acc_width`` bits; a RUN with ``data[5]`` set
    #: then continues that layer from them (``docs/dynamic.md``); off, the engine is the same RTL
    accdepth: int = 0
    #: the engine's post-processing lanes are shared by pairs of rows (``ResidentImpl.pp_shared``,
    #: the iCEBreaker's): an output group must spend two cycles in the PE array (planes x
    #: nchunks >= 2), so the host refuses a RUN at k = 1 of a program with a one-chunk convolution
    #: (``sim.resident.run_beats``); the engine RTL is the same either way
    pp_shared: bool = False

    def __post_init__(self):
        def pos(name, lo, hi):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"{name} must be an integer in [{lo}, {hi}], not {v!r}")
        pos("rows", 1, 64)
        pos("cols", 1, 256)
        pos("abits", 1, 16)
        pos("nbits", 1, 16)
        pos("mbits", 2, 32)
        pos("bbits", 2, 96)
        pos("obits", self.abits + 1, 64)
        pos("acc_width", self.abits + (self.cols + 1).bit_length() + 2, 64)
        pos("wdepth", 1, 1 << 20)
        pos("ppdepth", 1, 1 << 16)
        pos("fmdepth", 2, 1 << 20)
        pos("max_layers", 1, 255)
        pos("max_classes", 1, 4096)
        pos("taps", 0, self.cols)
        pos("fuse_groups", 0, 4096)
        pos("tapdepth", self.cols, self.fmdepth)
        if self.taps and (self.cols & (self.cols - 1) or self.tapdepth % self.cols):
            raise ValueError(f"tap banks need cols a power of two ({self.cols}) and tapdepth "
                             f"a multiple of it ({self.tapdepth}); or taps=0")
        if self.double_buffer not in (0, 1):     # bool, or 0/1 (the identify reply's words)
            raise ValueError(f"double_buffer must be True or False, not {self.double_buffer!r}")
        object.__setattr__(self, "double_buffer", bool(self.double_buffer))
        if self.adds not in (0, 1):
            raise ValueError(f"adds must be True or False, not {self.adds!r}")
        object.__setattr__(self, "adds", bool(self.adds))
        if self.adds and self.bbits < self.abits + self.mbits + 1:
            raise ValueError(f"adds: bbits {self.bbits} must hold xb*Mb (abits + mbits + 1 = "
                             f"{self.abits + self.mbits + 1} bits)")
        pos("accdepth", 0, 1 << 20)
        if self.accdepth and self.double_buffer:
            raise ValueError("accdepth (continuation) needs double_buffer off (a RUN would "
                             "flip to the other image)")
        if self.pp_shared not in (0, 1):
            raise ValueError(f"pp_shared must be True or False, not {self.pp_shared!r}")
        object.__setattr__(self, "pp_shared", bool(self.pp_shared))
        if self.cols % self.rows:
            raise ValueError(f"rows {self.rows} must divide cols {self.cols} in resident mode "
                             f"(an output group is a slice of one feature-map word)")

    @property
    def groups_per_word(self) -> int:
        """Output groups of R channels held by one feature-map word (C/R)."""
        return self.cols // self.rows

    @property
    def tap_words(self) -> int:
        """Words of one tap bank (C pixels each)."""
        return self.tapdepth // self.cols

    @property
    def pp_width(self) -> int:
        return SW + self.rows * (self.mbits + self.bbits)

    @property
    def fm_width(self) -> int:
        return self.cols * self.abits

    @property
    def w_width(self) -> int:
        return self.rows * self.cols

    @property
    def logit_groups(self) -> int:
        """Output groups of the logits layer the engine can hold."""
        return -(-self.max_classes // self.rows)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(pp_width=self.pp_width, fm_width=self.fm_width, w_width=self.w_width,
                 desc_width=desc_layout(self).size, cmd_width=cmd_layout(self).size,
                 res_width=res_layout(self).size)
        return d


def desc_layout(cfg: ResidentConfig) -> data.StructLayout:
    """One program descriptor (one program layer). Counts are stored as given; steps are
    precomputed by the host so the address generator needs no multiplier:

    - ``ncw``: words per input pixel ``ceil(Cin/C)``; ``rowstride = in_w*ncw``;
    - ``xstep = sw*ncw``, ``ystep = sh*rowstride``; ``win0`` = address of the window of output
      (0, 0) (``in_base - ph*rowstride - pw*ncw`` modulo the address range: padding taps are
      gated, never read);
    - ``nchunks = kh*kw*ncw`` (conv; pool: ``kh*kw``); ``wgstep = N*nchunks`` (weights of one
      output group); ``ngroups`` = ``ceil(O/R)`` (conv) or ``ncw`` (pool: one word per group);
    - ``out_words`` per output pixel; ``nout`` valid output channels (rows past it are not written);
    - a max-pool with kernel = stride fused into a convolution: output positions are walked in
      ``qh x qw`` tiles (the pool windows; 1x1 when nothing is fused), ``out_h x out_w`` counts
      tiles, ``tsh = qh*sh``, ``tsw = qw*sw``, ``tystep = qh*ystep``, ``txstep = qw*xstep``;
    - ``img_words`` (only with ``double_buffer``): words of one image buffer in the feature map
      (first layer; 0 elsewhere and in tap mode): image buffer 1 follows buffer 0.
    - ``add``, ``add_ma``, ``add_mb``, ``add_s`` (only with ``adds``): a residual add
      ``clamp((xa*Ma + xb*Mb + 2^(S-1)) >> S, 0, 2^A-1)``, walked as a ``POOL`` of ``kh`` taps per
      word: tap 0 reads operand a at ``win0 = base_a``, tap 1 operand b (``rowstride = base_b -
      base_a`` modulo the address range), taps past 1 are gated (``in_h = H + 1``); ``kh =
      max(2, C/R)``; 0 in every other layer.
    """
    faw = addr_width(cfg.fmdepth)
    waw = addr_width(cfg.wdepth)
    ppaw = addr_width(cfg.ppdepth)
    return data.StructLayout({
        "kind": Kind,
        "taps": 1,
        "last": 1,
        "relu": 1,
        "in_h": DIMW, "in_w": DIMW,
        "out_h": DIMW, "out_w": DIMW,
        "kh": DIMW, "kw": DIMW,
        "sh": DIMW, "sw": DIMW,
        "ph": DIMW, "pw": DIMW,
        "qh": DIMW, "qw": DIMW,
        "tsh": DIMW, "tsw": DIMW,
        "ncw": 8,
        "rowstride": faw,
        "txstep": faw,
        "tystep": faw,
        "xstep": faw,
        "ystep": faw,
        "win0": faw,
        "out_base": faw,
        "out_words": 8,
        "nchunks": 16,
        "ngroups": 12,
        "nout": 16,
        "wbase": waw,
        "wgstep": waw + 1,
        "ppbase": ppaw,
        **({"img_words": faw} if cfg.double_buffer else {}),
        **({"add": 1, "add_ma": signed(cfg.mbits), "add_mb": signed(cfg.mbits), "add_s": SW}
           if cfg.adds else {}),
    })


def tap_layout(cfg: ResidentConfig) -> data.StructLayout:
    """One tap-table entry (one lane of a first layer that reads the tap banks): the lane holds
    the window tap (dy, dx), i.e. the pixel ``off = dy*in_w + dx`` after the window's top-left;
    lanes without ``valid`` read 0."""
    return data.StructLayout({"valid": 1, "dy": DIMW, "dx": DIMW,
                              "off": addr_width(cfg.tapdepth)})


def cmd_layout(cfg: ResidentConfig) -> data.StructLayout:
    """One command beat: opcode, address, data (the widest memory word)."""
    width = max(cfg.w_width, cfg.pp_width, desc_layout(cfg).size, cfg.fm_width,
                tap_layout(cfg).size, 8)
    aw = max(addr_width(d) for d in (cfg.wdepth, cfg.ppdepth, cfg.max_layers, cfg.fmdepth))
    return data.StructLayout({"op": Op, "addr": aw, "data": width})


def summary_layout(cfg: ResidentConfig) -> data.StructLayout:
    """Data of a SUMMARY beat: predicted class, k used, cycles from the image's first input beat
    (its first WRITE_FM, or the RUN) to this beat."""
    return data.StructLayout({"cls": 12, "k": 5, "cycles": 32})


def counter_layout(cfg: ResidentConfig) -> data.StructLayout:
    """Data of a COUNTER beat: cycles a program layer issued chunks (its busy cycles)."""
    return data.StructLayout({"busy": 32})


def res_layout(cfg: ResidentConfig) -> data.StructLayout:
    """One result beat. Per RUN: one SUMMARY, then ``ceil(classes/R)`` LOGITS beats (row r of
    beat g is logit ``g*R + r``, signed ``obits`` at ``[r*OW +: OW]``), then one COUNTER beat per
    program layer. A READ_FM answers one FM_WORD beat."""
    width = max(cfg.rows * cfg.obits, cfg.fm_width, summary_layout(cfg).size,
                counter_layout(cfg).size)
    return data.StructLayout({"kind": ResKind, "index": 8, "data": width})
