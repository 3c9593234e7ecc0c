"""An executable reading of ``docs/engine.md``: the engine's commands interpreted in Python.

No timing, no streams: just what each command does to the memories and which result beats leave.
It lets the driver be tested on its own (driver + model == golden), so that when driver + RTL
disagree with the golden model the fault is known to be in the RTL. Cycle counters are not modelled
(they read 0).
"""

from __future__ import annotations

from ..hw import isa
from ..hw.isa import Counter, EngineConfig, Op
from ..model import contract
from .transport import Transport

__all__ = ["EngineModel", "ModelTransport"]


class EngineModel:
    def __init__(self, cfg: EngineConfig):
        self.cfg = cfg
        self.wmem = [0] * cfg.wdepth
        self.amem = [[0] * cfg.adepth, [0] * cfg.adepth]
        self.ppmem = [0] * cfg.ppdepth
        self.accmem = [[0] * cfg.rows for _ in range(cfg.accdepth)]
        self.woffs = isa.array_offsets(isa.weight_layout(cfg))     # [R, C] bit of each weight

    def _lanes(self, word: int) -> list[int]:
        return list(isa.act_layout(self.cfg).from_bits(word))

    def _pp(self, entry: int, r: int) -> tuple[int, int, int]:
        """(S, M, B) of row r in table entry ``entry`` (words ``entry*Q ..``, P rows each)."""
        cfg = self.cfg
        s, ms, bs = isa.unpack_pp_word(cfg, self.ppmem[entry * cfg.pp_slices + r // cfg.pp_par])
        return s, ms[r % cfg.pp_par], bs[r % cfg.pp_par]

    def execute(self, cmds: list[int], data: list[int]) -> list[int]:
        cfg = self.cfg
        data = iter(data)
        out: list[int] = []
        for word in cmds:
            f = isa.decode_cmd(word)
            op = f["op"]
            if op in (Op.LOAD_W, Op.LOAD_A, Op.LOAD_PP):
                mem = {Op.LOAD_W: self.wmem, Op.LOAD_PP: self.ppmem}.get(op) or self.amem[f["bank"]]
                for j in range(f["count"]):
                    mem[f["addr"] + j] = next(data)
            elif op == Op.RUN:
                out += self._run(f)
            elif op == Op.READ_COUNTERS:
                out += [isa.encode_counter(cfg, Counter.NAMES.index(name), 0)
                        for name in cfg.counter_names]
            elif op not in (Op.NOP, Op.CLEAR_COUNTERS):
                raise ValueError(f"unknown opcode {op}")
        return out

    def _run(self, f: dict) -> list[int]:
        cfg = self.cfg
        out = []
        amax = (1 << cfg.abits) - 1
        for pos in range(f["npos"]):
            for g in range(f["ngroups"]):
                if f["k_start"]:
                    acc = list(self.accmem[pos * f["ngroups"] + g])
                else:
                    acc = [0] * cfg.rows
                for p in range(f["k_start"], f["k_end"]):
                    acc = [2 * a for a in acc]
                    for c in range(f["nchunks"]):
                        w = self.wmem[(g * f["wplanes"] + p) * f["nchunks"] + c]
                        xs = self._lanes(self.amem[f["bank"]][pos * f["nchunks"] + c])
                        for r in range(cfg.rows):
                            acc[r] += sum(x if (w >> int(self.woffs[r, l])) & 1 else -x
                                          for l, x in enumerate(xs))
                    if f["every_plane"] or p == f["k_end"] - 1:
                        k = p + 1
                        vals = []
                        for r in range(cfg.rows):
                            s, m, b = self._pp((k - 1) * f["ngroups"] + g, r)
                            z = acc[r] * m + b
                            y = (z + contract.round_half(s)) >> s
                            vals.append(min(max(y, 0), amax) if f["relu"] else y)
                        out.append(isa.encode_result(cfg, k, vals))
                if f["save"]:
                    self.accmem[pos * f["ngroups"] + g] = acc
        return out


class ModelTransport(Transport):
    """Runs the driver against :class:`EngineModel` (instant; counters read 0)."""

    def __init__(self, cfg: EngineConfig):
        self.cfg = cfg
        self.model = EngineModel(cfg)

    def run(self, gen):
        from .transport import drive

        return drive(gen, lambda ex: self.model.execute(ex.cmds, ex.data))
