"""Dynamic precision decided on chip: a precision policy wrapped around the resident engine.

:class:`PolicyEngine` has the resident engine's stream signature (``cmd`` in, ``res`` out, the
words of :mod:`.layout`) and passes every engine command through unchanged. Two more opcodes are
its own (:class:`.layout.Op`):

- ``WRITE_GATE`` (9): ``addr = slot*N + (k-1)``, ``data[:GW]`` = the integer gate
  ``gate(k, target)`` of that slot (``GW = obits + 1`` bits, unsigned). Slots
  (:class:`GateSlot`): ``ACCEPT`` 0 = the policy's threshold t, ``AGREE`` 1 = the hybrid's relaxed
  target ``t_agree``, ``DOWN`` 2 = the stricter target ``t_down``
  (``model/dynamic.py``: ``HybridPolicy``). Gates are network state: kept across a reset.
- ``RUN_POLICY`` (10): ``data`` = :func:`policy_req_layout`: ``policy`` (:class:`PolicyId`:
  FIXED 0, ESCALATE 1, HYBRID 2), ``reset`` (clear the cross-frame state first: the first frame of
  a clip), ``k`` (FIXED), ``levels`` (bit k-1: k is an escalation level), ``start`` (HYBRID: bit
  k-1: k is a starting level). The image must have been written (WRITE_IMG / WRITE_FM) before.

For a RUN_POLICY the wrapper issues ``RUN(k)`` to the engine, takes its result beats, computes
``(pred, margin)`` of the logits exactly as ``model.dynamic.confidence`` (argmax, lowest index on
ties; ``margin = top1 - top2``, integers), compares ``margin >= gate(k, slot)`` and either
escalates to the next level (another RUN, recomputing the whole network at the new k) or stops.
The cross-frame state of the hybrid policy (carried start level, previous accepted prediction)
lives in wrapper registers. The answer is the engine's: one SUMMARY (:func:`policy_summary_layout`:
the engine's ``cls``, ``k`` = the k it stopped at, ``cycles`` from the image's first input beat to
this beat, then ``err`` and ``visited``: bit k-1 set for every k run), ``ceil(classes/R)`` LOGITS
beats (the final k's) and one COUNTER per program layer holding that layer's busy cycles summed
over every RUN of the frame. A refused request (:class:`PolicyErr`: unknown policy, a gate the
policy needs not loaded, a bad k / empty levels, no program loaded) is answered with one SUMMARY
beat whose ``err`` names the problem, and nothing else.

The wrapper learns the number of program layers, classes and logit groups by watching the
WRITE_PROG of the descriptor with ``last`` set (the host writes the program in address order).

Latency (ready consumer): the request is checked in 1 cycle; per visited k the wrapper issues
RUN (1 cycle), the engine computes (``docs/resident.md``), the wrapper consumes the engine's
``1 + ceil(classes/R) + layers`` answer beats one per cycle and decides in 1 cycle. A frame at one
k therefore takes the plain engine's cycles + ``3 + ceil(classes/R) + layers`` (digits: + 9,
1490 instead of 1481 at k=2). Escalation recomputes every layer; ``docs/dynamic.md``'s cost model
continues the first layer instead (not done here). Widths: gates ``obits + 1`` bits, busy sums 32
bits, cycles 32 bits. The top-2 search takes R logits per cycle (a chain of R comparisons).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, Cat, Const, Mux, Array, signed
from amaranth.lib import wiring, stream, data, enum
from amaranth.lib.wiring import In, Out

from .engine import ResidentEngine
from .layout import (ResidentConfig, Op, ResKind, cmd_layout, res_layout, desc_layout,
                     counter_layout, addr_width)

__all__ = ["PolicyEngine", "PolicyId", "PolicyErr", "GateSlot", "policy_req_layout",
           "policy_summary_layout", "gate_width", "GATE_SLOTS"]

#: gate slots per k (ACCEPT, AGREE, DOWN)
GATE_SLOTS = 3


class PolicyId(enum.Enum, shape=3):
    """Policies run on chip (``RUN_POLICY`` ``policy`` field); 3..7 are refused."""
    FIXED = 0
    ESCALATE = 1
    HYBRID = 2


class GateSlot(enum.Enum, shape=2):
    """Which target a gate belongs to (``WRITE_GATE`` ``addr = slot*N + k-1``)."""
    ACCEPT = 0
    AGREE = 1
    DOWN = 2


class PolicyErr(enum.Enum, shape=3):
    """``err`` of a policy SUMMARY."""
    OK = 0
    UNKNOWN_POLICY = 1
    GATE_MISSING = 2
    BAD_REQUEST = 3
    NO_PROGRAM = 4


def gate_width(cfg: ResidentConfig) -> int:
    """Bits of a gate: a margin of two ``obits`` logits is below ``2^obits``."""
    return cfg.obits + 1


def policy_req_layout(cfg: ResidentConfig) -> data.StructLayout:
    """``data`` of a RUN_POLICY command."""
    return data.StructLayout({"policy": PolicyId, "reset": 1, "k": 5,
                              "levels": cfg.nbits, "start": cfg.nbits})


def policy_summary_layout(cfg: ResidentConfig) -> data.StructLayout:
    """``data`` of the SUMMARY answering a RUN_POLICY: the engine's summary fields (same offsets),
    then ``err`` (:class:`PolicyErr`) and ``visited`` (bit k-1: k was run)."""
    return data.StructLayout({"cls": 12, "k": 5, "cycles": 32, "err": PolicyErr,
                              "visited": cfg.nbits})


def _lowest(m, bits, name):
    """(any, level) of the lowest set bit of ``bits`` (bit i is level i+1); named signals."""
    lvl = Signal(5, name=f"{name}_lvl")
    anyb = Signal(name=f"{name}_any")
    m.d.comb += anyb.eq(bits.any())
    cur = Const(0, 5)
    for i in reversed(range(len(bits))):
        nxt = Signal(5, name=f"{name}_l{i}")
        m.d.comb += nxt.eq(Mux(bits[i], i + 1, cur))
        cur = nxt
    m.d.comb += lvl.eq(cur)
    return anyb, lvl


def _highest(m, bits, name):
    """(any, level) of the highest set bit of ``bits``."""
    lvl = Signal(5, name=f"{name}_lvl")
    anyb = Signal(name=f"{name}_any")
    m.d.comb += anyb.eq(bits.any())
    cur = Const(0, 5)
    for i in range(len(bits)):
        nxt = Signal(5, name=f"{name}_h{i}")
        m.d.comb += nxt.eq(Mux(bits[i], i + 1, cur))
        cur = nxt
    m.d.comb += lvl.eq(cur)
    return anyb, lvl


class PolicyEngine(wiring.Component):
    """The resident engine plus an on-chip precision policy (module docstring: protocol).

    Parameters
    ----------
    cfg : ResidentConfig

    Members
    -------
    cmd : In(stream.Signature(cmd_layout(cfg)))
    res : Out(stream.Signature(res_layout(cfg)))
        The engine's streams; WRITE_GATE and RUN_POLICY are the wrapper's.
    """

    def __init__(self, cfg: ResidentConfig = ResidentConfig()):
        if not isinstance(cfg, ResidentConfig):
            self._MustUse__silence = True
            raise TypeError(f"cfg must be a ResidentConfig, not {cfg!r}")
        cl, rl = cmd_layout(cfg), res_layout(cfg)
        need = {"RUN_POLICY data": (policy_req_layout(cfg).size, cl["data"].width),
                "WRITE_GATE data": (gate_width(cfg), cl["data"].width),
                "WRITE_GATE addr": (addr_width(GATE_SLOTS * cfg.nbits), cl["addr"].width),
                "policy SUMMARY": (policy_summary_layout(cfg).size, rl["data"].width)}
        for what, (n, have) in need.items():
            if n > have:
                self._MustUse__silence = True
                raise ValueError(f"policy wrapper: {what} needs {n} bits, the configuration's "
                                 f"word has {have}")
        self.cfg = cfg
        super().__init__({
            "cmd": In(stream.Signature(cl)),
            "res": Out(stream.Signature(rl)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        R, N, OW = cfg.rows, cfg.nbits, cfg.obits
        GW = gate_width(cfg)
        m.submodules.engine = eng = ResidentEngine(cfg)
        dl = desc_layout(cfg)
        cmd, out = self.cmd.payload, self.res.payload
        accept = self.cmd.valid & self.cmd.ready
        op = cmd.op
        own = (op == Op.WRITE_GATE) | (op == Op.RUN_POLICY)

        # ---- gates: network state, kept across a reset -------------------------------------------
        gates = Array(Signal(GW, name=f"gate{i}", reset_less=True) for i in range(GATE_SLOTS * N))
        gvalid = Signal(GATE_SLOTS * N, reset_less=True)
        gaddr = cmd.addr[:addr_width(GATE_SLOTS * N)]
        with m.If(accept & (op == Op.WRITE_GATE) & (cmd.addr < GATE_SLOTS * N)):
            m.d.sync += [gates[gaddr].eq(cmd.data[:GW]), gvalid.bit_select(gaddr, 1).eq(1)]

        # ---- program shape, watched on WRITE_PROG ------------------------------------------------
        pdesc = data.View(dl, cmd.data[:dl.size])
        nlayers = Signal(range(cfg.max_layers + 1))
        classes = Signal(16)
        ngroups = Signal(12)
        with m.If(accept & (op == Op.WRITE_PROG) & pdesc.last):
            m.d.sync += [nlayers.eq(cmd.addr + 1), classes.eq(pdesc.nout),
                         ngroups.eq(pdesc.ngroups)]

        # ---- frame cycles (the engine's definition: first image beat -> SUMMARY) -----------------
        counting = Signal()
        cycles = Signal(32)
        with m.If(counting):
            m.d.sync += cycles.eq(cycles + 1)
        with m.If(accept & ((op == Op.WRITE_FM) | (op == Op.WRITE_IMG) | (op == Op.RUN_POLICY))
                  & ~counting):
            m.d.sync += [counting.eq(1), cycles.eq(1)]
        with m.If(accept & (op == Op.RUN)):             # a plain RUN: the engine counts
            m.d.sync += counting.eq(0)

        # ---- request and policy state ------------------------------------------------------------
        req = Signal(policy_req_layout(cfg))
        k = Signal(5)
        visited = Signal(N)
        escalated = Signal()
        err = Signal(PolicyErr)
        hs = Signal(5)                 # hybrid: carried start level (0: none)
        prev = Signal(12)
        prev_ok = Signal()
        first_run = Signal()

        # ---- result beats of the engine: logits buffer, top-2, busy sums -------------------------
        er = eng.res.payload
        logbuf = Array(Signal(R * OW, name=f"logbuf{i}") for i in range(cfg.logit_groups))
        busy = Array(Signal(32, name=f"busysum{i}") for i in range(cfg.max_layers))
        t1, t2 = Signal(signed(OW)), Signal(signed(OW))
        h1, h2 = Signal(), Signal()
        pred = Signal(12)
        c1, c2, ch1, ch2, cp = t1, t2, h1, h2, pred
        for r in range(R):
            v = er.data[r * OW:(r + 1) * OW].as_signed()
            ok = Signal(name=f"tk_ok{r}")
            gt1, gt2 = Signal(name=f"tk_gt1_{r}"), Signal(name=f"tk_gt2_{r}")
            n1, n2 = Signal(signed(OW), name=f"tk_t1_{r}"), Signal(signed(OW), name=f"tk_t2_{r}")
            nh1, nh2, npred = Signal(name=f"tk_h1_{r}"), Signal(name=f"tk_h2_{r}"), \
                Signal(12, name=f"tk_p{r}")
            m.d.comb += [
                ok.eq((er.index * R + r) < classes),
                gt1.eq(ok & (~ch1 | (v > c1))),
                gt2.eq(ok & ~gt1 & (~ch2 | (v > c2))),
                n1.eq(Mux(gt1, v, c1)),
                npred.eq(Mux(gt1, er.index * R + r, cp)),
                n2.eq(Mux(gt1, c1, Mux(gt2, v, c2))),
                nh1.eq(ch1 | gt1),
                nh2.eq(ch2 | (gt1 & ch1) | gt2),
            ]
            c1, c2, ch1, ch2, cp = n1, n2, nh1, nh2, npred
        margin = Signal(GW)
        m.d.comb += margin.eq(Mux(h2, t1 - t2, 0))

        # ---- decision ---------------------------------------------------------------------------
        km1 = (k - 1)[:5]
        g_acc = gates[GateSlot.ACCEPT.value * N + km1]
        g_agr = gates[GateSlot.AGREE.value * N + km1]
        g_dn = gates[GateSlot.DOWN.value * N + km1]
        conf = margin >= g_acc
        agree = prev_ok & (pred == prev) & (margin >= g_agr)
        down = margin >= g_dn
        above_k = Cat(*[Const(i + 1, 5) > k for i in range(N)])
        has_up, up = _lowest(m, req.levels & above_k, "up")
        above_hs = Cat(*[Const(i + 1, 5) > hs for i in range(N)])
        below_hs = Cat(*[Const(i + 1, 5) < hs for i in range(N)])
        has_sup, sup = _lowest(m, req.start & above_hs, "sup")
        has_sdn, sdn = _highest(m, req.start & below_hs, "sdn")
        _, lev0 = _lowest(m, req.levels, "lev0")
        _, st0 = _lowest(m, req.start, "st0")
        hs_in = Signal()
        m.d.comb += hs_in.eq((hs != 0) & ((req.start & Cat(*[hs == i + 1 for i in range(N)])).any()))

        # checks of a request (the gates it needs, for every k it may visit)
        rq = data.View(policy_req_layout(cfg), cmd.data[:policy_req_layout(cfg).size])
        gv_acc = gvalid[GateSlot.ACCEPT.value * N:(GateSlot.ACCEPT.value + 1) * N]
        gv_agr = gvalid[GateSlot.AGREE.value * N:(GateSlot.AGREE.value + 1) * N]
        gv_dn = gvalid[GateSlot.DOWN.value * N:(GateSlot.DOWN.value + 1) * N]
        hyb_ks = req.levels | req.start
        chk = Signal(PolicyErr)
        with m.If(nlayers == 0):
            m.d.comb += chk.eq(PolicyErr.NO_PROGRAM)
        with m.Elif(req.policy == PolicyId.FIXED):
            with m.If((req.k < 1) | (req.k > N)):
                m.d.comb += chk.eq(PolicyErr.BAD_REQUEST)
        with m.Elif(req.policy == PolicyId.ESCALATE):
            with m.If(req.levels == 0):
                m.d.comb += chk.eq(PolicyErr.BAD_REQUEST)
            with m.Elif((gv_acc & req.levels) != req.levels):
                m.d.comb += chk.eq(PolicyErr.GATE_MISSING)
        with m.Elif(req.policy == PolicyId.HYBRID):
            with m.If((req.levels == 0) | (req.start == 0)):
                m.d.comb += chk.eq(PolicyErr.BAD_REQUEST)
            with m.Elif(((gv_acc & gv_agr & gv_dn) & hyb_ks) != hyb_ks):
                m.d.comb += chk.eq(PolicyErr.GATE_MISSING)
        with m.Else():
            m.d.comb += chk.eq(PolicyErr.UNKNOWN_POLICY)

        # ---- control ----------------------------------------------------------------------------
        ridx = Signal(12)
        summ = Signal(policy_summary_layout(cfg))
        m.d.comb += [summ.cls.eq(pred), summ.k.eq(k), summ.cycles.eq(cycles), summ.err.eq(err),
                     summ.visited.eq(visited)]
        cnt = Signal(counter_layout(cfg))
        m.d.comb += cnt.busy.eq(busy[ridx])

        with m.FSM():
            with m.State("IDLE"):
                # every engine command passes through; the wrapper's own wait for an idle engine
                m.d.comb += [
                    eng.cmd.valid.eq(self.cmd.valid & ~own), eng.cmd.payload.eq(cmd),
                    self.cmd.ready.eq(eng.cmd.ready),
                    self.res.valid.eq(eng.res.valid), out.eq(er),
                    eng.res.ready.eq(self.res.ready),
                ]
                with m.If(accept & (op == Op.RUN_POLICY)):
                    m.d.sync += req.eq(rq)
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.sync += [err.eq(chk), visited.eq(0), escalated.eq(0), first_run.eq(1)]
                with m.If(chk != PolicyErr.OK):
                    m.next = "ERROR"
                with m.Else():
                    with m.If(req.reset):
                        m.d.sync += prev_ok.eq(0)
                    with m.Switch(req.policy):
                        with m.Case(PolicyId.FIXED):
                            m.d.sync += k.eq(req.k)
                        with m.Case(PolicyId.ESCALATE):
                            m.d.sync += k.eq(lev0)
                        with m.Case(PolicyId.HYBRID):
                            start = Mux(req.reset | ~hs_in, st0, hs)
                            m.d.sync += [k.eq(start), hs.eq(start)]
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += [eng.cmd.valid.eq(1), eng.cmd.payload.op.eq(Op.RUN),
                             eng.cmd.payload.data.eq(k)]
                with m.If(eng.cmd.ready):
                    m.d.sync += [visited.eq(visited | Cat(*[k == i + 1 for i in range(N)])), h1.eq(0), h2.eq(0),
                                 pred.eq(0)]
                    m.next = "COLLECT"
            with m.State("COLLECT"):
                m.d.comb += eng.res.ready.eq(1)
                with m.If(eng.res.valid):
                    with m.Switch(er.kind):
                        with m.Case(ResKind.LOGITS):
                            m.d.sync += [logbuf[er.index].eq(er.data[:R * OW]),
                                         t1.eq(c1), t2.eq(c2), h1.eq(ch1), h2.eq(ch2),
                                         pred.eq(cp)]
                        with m.Case(ResKind.COUNTER):
                            b = data.View(counter_layout(cfg),
                                          er.data[:counter_layout(cfg).size]).busy
                            m.d.sync += busy[er.index].eq(Mux(first_run, b, busy[er.index] + b))
                            with m.If(er.index == nlayers - 1):
                                m.next = "DECIDE"
            with m.State("DECIDE"):
                m.d.sync += first_run.eq(0)
                accept_frame = Signal()
                with m.Switch(req.policy):
                    with m.Case(PolicyId.FIXED):
                        m.d.comb += accept_frame.eq(1)
                    with m.Case(PolicyId.ESCALATE):
                        m.d.comb += accept_frame.eq(conf | ~has_up)
                    with m.Case(PolicyId.HYBRID):
                        m.d.comb += accept_frame.eq(conf | agree | ~has_up)
                with m.If(accept_frame):
                    with m.If(req.policy == PolicyId.HYBRID):
                        m.d.sync += [prev.eq(pred), prev_ok.eq(1)]
                        with m.If(escalated):
                            m.d.sync += hs.eq(Mux(has_sup, sup, hs))
                        with m.Elif(down):
                            m.d.sync += hs.eq(Mux(has_sdn, sdn, hs))
                    m.next = "SUMMARY"
                with m.Else():
                    m.d.sync += [k.eq(up), escalated.eq(1)]
                    m.next = "ISSUE"
            with m.State("ERROR"):
                m.d.comb += [self.res.valid.eq(1), out.kind.eq(ResKind.SUMMARY),
                             out.data.eq(summ)]
                with m.If(self.res.ready):
                    m.d.sync += counting.eq(0)
                    m.next = "IDLE"
            with m.State("SUMMARY"):
                m.d.comb += [self.res.valid.eq(1), out.kind.eq(ResKind.SUMMARY),
                             out.data.eq(summ)]
                with m.If(self.res.ready):
                    m.d.sync += [counting.eq(0), ridx.eq(0)]
                    m.next = "LOGITS"
            with m.State("LOGITS"):
                m.d.comb += [self.res.valid.eq(1), out.kind.eq(ResKind.LOGITS),
                             out.index.eq(ridx), out.data.eq(logbuf[ridx])]
                with m.If(self.res.ready):
                    with m.If(ridx == ngroups - 1):
                        m.d.sync += ridx.eq(0)
                        m.next = "COUNTERS"
                    with m.Else():
                        m.d.sync += ridx.eq(ridx + 1)
            with m.State("COUNTERS"):
                m.d.comb += [self.res.valid.eq(1), out.kind.eq(ResKind.COUNTER),
                             out.index.eq(ridx), out.data.eq(cnt)]
                with m.If(self.res.ready):
                    m.d.sync += ridx.eq(ridx + 1)
                    with m.If(ridx == nlayers - 1):
                        m.next = "IDLE"
        return m
