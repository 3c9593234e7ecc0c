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
escalates to the next level (another RUN at the new k) or stops. With ``cfg.accdepth`` an
escalation's RUN asks the engine to continue the first convolution from the accumulators it
saved at the previous k (``data[5]``; planes k..k'-1 only) and recomputes every later layer;
without, every layer is recomputed.
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
1490 instead of 1481 at k=2). A frame that visited k_1 < ... < k_m spends ``busy(k_m)`` in the
first convolution with ``cfg.accdepth`` (``sum_i busy(k_i)`` without) and ``sum_i busy(k_i)`` in
every later layer (``docs/dynamic.md``, "Cost"). Widths: gates ``obits + 1`` bits, busy sums 32
bits, cycles 32 bits. The top-2 search takes R logits per cycle (a chain of R comparisons).
"""

from __future__ import annotations

from types import SimpleNamespace

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
    impl : ResidentImpl or None
        Netlist options of the wrapped engine (``ResidentEngine(cfg, impl=...)``; a board's
        ``resident_impl``); results and cycles do not depend on them.

    Members
    -------
    cmd : In(stream.Signature(cmd_layout(cfg)))
    res : Out(stream.Signature(res_layout(cfg)))
        The engine's streams; WRITE_GATE and RUN_POLICY are the wrapper's.
    """

    #: ask the engine to continue the first convolution on an escalation (with ``cfg.accdepth``;
    #: tests turn it off to check that the busy comparison catches a recomputed first layer)
    CONTINUE = True

    def __init__(self, cfg: ResidentConfig = ResidentConfig(), *, impl=None):
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
        self.impl = impl
        super().__init__({
            "cmd": In(stream.Signature(cl)),
            "res": Out(stream.Signature(rl)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.engine = eng = (ResidentEngine(cfg) if self.impl is None
                                     else ResidentEngine(cfg, impl=self.impl))
        cmd = self.cmd.payload
        accept = self.cmd.valid & self.cmd.ready
        op = cmd.op
        c = SimpleNamespace(cfg=cfg, R=cfg.rows, N=cfg.nbits, OW=cfg.obits, GW=gate_width(cfg),
                            eng=eng, cmd=cmd, out=self.res.payload, accept=accept, op=op,
                            own=(op == Op.WRITE_GATE) | (op == Op.RUN_POLICY))
        self._gates(m, c)
        self._program_shape(m, c)
        self._frame_cycles(m, c)
        self._policy_state(c)
        self._top2(m, c)
        self._decision(m, c)
        self._request_check(m, c)
        self._control(m, c)
        return m

    def _gates(self, m, c):
        """WRITE_GATE: the gate registers and their valid bits (network state, kept across a
        reset); 1 cycle."""
        N, GW, cmd = c.N, c.GW, c.cmd
        gates = Array(Signal(GW, name=f"gate{i}", reset_less=True) for i in range(GATE_SLOTS * N))
        gvalid = Signal(GATE_SLOTS * N, reset_less=True)
        gaddr = cmd.addr[:addr_width(GATE_SLOTS * N)]
        with m.If(c.accept & (c.op == Op.WRITE_GATE) & (cmd.addr < GATE_SLOTS * N)):
            m.d.sync += [gates[gaddr].eq(cmd.data[:GW]), gvalid.bit_select(gaddr, 1).eq(1)]
        c.gates, c.gvalid = gates, gvalid

    def _program_shape(self, m, c):
        """Layers, classes and logit groups of the program, watched on the WRITE_PROG of the
        descriptor with ``last`` set."""
        cfg, cmd = c.cfg, c.cmd
        dl = desc_layout(cfg)
        pdesc = data.View(dl, cmd.data[:dl.size])
        nlayers = Signal(range(cfg.max_layers + 1))
        classes = Signal(16)
        ngroups = Signal(12)
        with m.If(c.accept & (c.op == Op.WRITE_PROG) & pdesc.last):
            m.d.sync += [nlayers.eq(cmd.addr + 1), classes.eq(pdesc.nout),
                         ngroups.eq(pdesc.ngroups)]
        c.nlayers, c.classes, c.ngroups = nlayers, classes, ngroups

    def _frame_cycles(self, m, c):
        """The frame's 32-bit cycle count (the engine's definition: first image beat -> SUMMARY);
        a plain RUN leaves the counting to the engine."""
        accept, op = c.accept, c.op
        counting = Signal()
        cycles = Signal(32)
        with m.If(counting):
            m.d.sync += cycles.eq(cycles + 1)
        with m.If(accept & ((op == Op.WRITE_FM) | (op == Op.WRITE_IMG) | (op == Op.RUN_POLICY))
                  & ~counting):
            m.d.sync += [counting.eq(1), cycles.eq(1)]
        with m.If(accept & (op == Op.RUN)):             # a plain RUN: the engine counts
            m.d.sync += counting.eq(0)
        c.counting, c.cycles = counting, cycles

    def _policy_state(self, c):
        """The latched request and the policy's registers (hybrid: carried start level ``hs``,
        0 = none, and the previous accepted prediction)."""
        cfg, N = c.cfg, c.N
        req = Signal(policy_req_layout(cfg))
        k = Signal(5)
        visited = Signal(N)
        escalated = Signal()
        err = Signal(PolicyErr)
        hs = Signal(5)                 # hybrid: carried start level (0: none)
        prev = Signal(12)
        prev_ok = Signal()
        first_run = Signal()
        vars(c).update(req=req, k=k, visited=visited, escalated=escalated, err=err, hs=hs,
                       prev=prev, prev_ok=prev_ok, first_run=first_run)

    def _top2(self, m, c):
        """The engine's result beats: logits buffer, busy sums, and the running top-2 over the R
        logits of a LOGITS beat (a chain of R comparisons; lowest index wins ties) -> ``margin``."""
        cfg, R, OW, GW = c.cfg, c.R, c.OW, c.GW
        er = c.eng.res.payload
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
                ok.eq((er.index * R + r) < c.classes),
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
        vars(c).update(er=er, logbuf=logbuf, busy=busy, t1=t1, t2=t2, h1=h1, h2=h2, pred=pred,
                       c1=c1, c2=c2, ch1=ch1, ch2=ch2, cp=cp, margin=margin)

    def _decision(self, m, c):
        """Combinational inputs of DECIDE and CHECK: the gate comparisons at the current k, the
        next escalation level, the hybrid's next start levels and the first levels of a request."""
        N, k, hs, req, gates, margin = c.N, c.k, c.hs, c.req, c.gates, c.margin
        km1 = (k - 1)[:5]
        g_acc = gates[GateSlot.ACCEPT.value * N + km1]
        g_agr = gates[GateSlot.AGREE.value * N + km1]
        g_dn = gates[GateSlot.DOWN.value * N + km1]
        c.conf = margin >= g_acc
        c.agree = c.prev_ok & (c.pred == c.prev) & (margin >= g_agr)
        c.down = margin >= g_dn
        above_k = Cat(*[Const(i + 1, 5) > k for i in range(N)])
        c.has_up, c.up = _lowest(m, req.levels & above_k, "up")
        above_hs = Cat(*[Const(i + 1, 5) > hs for i in range(N)])
        below_hs = Cat(*[Const(i + 1, 5) < hs for i in range(N)])
        c.has_sup, c.sup = _lowest(m, req.start & above_hs, "sup")
        c.has_sdn, c.sdn = _highest(m, req.start & below_hs, "sdn")
        _, c.lev0 = _lowest(m, req.levels, "lev0")
        _, c.st0 = _lowest(m, req.start, "st0")
        hs_in = Signal()
        m.d.comb += hs_in.eq((hs != 0) & ((req.start & Cat(*[hs == i + 1 for i in range(N)])).any()))
        c.hs_in = hs_in

    def _request_check(self, m, c):
        """``chk``: the :class:`PolicyErr` of the latched request (the gates it needs, for every k
        it may visit); combinational. Also ``rq``, the request on ``cmd``."""
        cfg, N, req, gvalid = c.cfg, c.N, c.req, c.gvalid
        c.rq = data.View(policy_req_layout(cfg), c.cmd.data[:policy_req_layout(cfg).size])
        gv_acc = gvalid[GateSlot.ACCEPT.value * N:(GateSlot.ACCEPT.value + 1) * N]
        gv_agr = gvalid[GateSlot.AGREE.value * N:(GateSlot.AGREE.value + 1) * N]
        gv_dn = gvalid[GateSlot.DOWN.value * N:(GateSlot.DOWN.value + 1) * N]
        hyb_ks = req.levels | req.start
        chk = Signal(PolicyErr)
        with m.If(c.nlayers == 0):
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
        c.chk = chk

    def _control(self, m, c):
        """The wrapper's FSM: IDLE (pass-through) -> CHECK -> (ISSUE -> COLLECT -> DECIDE)+ ->
        SUMMARY -> LOGITS -> COUNTERS, or CHECK -> ERROR."""
        cfg = c.cfg
        ridx = Signal(12)
        summ = Signal(policy_summary_layout(cfg))
        m.d.comb += [summ.cls.eq(c.pred), summ.k.eq(c.k), summ.cycles.eq(c.cycles),
                     summ.err.eq(c.err), summ.visited.eq(c.visited)]
        cnt = Signal(counter_layout(cfg))
        m.d.comb += cnt.busy.eq(c.busy[ridx])
        c.ridx, c.summ, c.cnt = ridx, summ, cnt
        with m.FSM():
            with m.State("IDLE"):
                self._idle(m, c)
            with m.State("CHECK"):
                self._check(m, c)
            with m.State("ISSUE"):
                self._issue(m, c)
            with m.State("COLLECT"):
                self._collect(m, c)
            with m.State("DECIDE"):
                self._decide(m, c)
            with m.State("ERROR"):
                self._error(m, c)
            with m.State("SUMMARY"):
                self._summary(m, c)
            with m.State("LOGITS"):
                self._logits(m, c)
            with m.State("COUNTERS"):
                self._counters(m, c)

    def _idle(self, m, c):
        """Every engine command passes through; the wrapper's own wait for an idle engine; a
        RUN_POLICY is latched."""
        eng = c.eng
        m.d.comb += [
            eng.cmd.valid.eq(self.cmd.valid & ~c.own), eng.cmd.payload.eq(c.cmd),
            self.cmd.ready.eq(eng.cmd.ready),
            self.res.valid.eq(eng.res.valid), c.out.eq(c.er),
            eng.res.ready.eq(self.res.ready),
        ]
        with m.If(c.accept & (c.op == Op.RUN_POLICY)):
            m.d.sync += c.req.eq(c.rq)
            m.next = "CHECK"

    def _check(self, m, c):
        """1 cycle: refuse the request (ERROR) or pick the first k (the hybrid's carried start
        level unless reset or no longer a starting level)."""
        req, k, hs = c.req, c.k, c.hs
        m.d.sync += [c.err.eq(c.chk), c.visited.eq(0), c.escalated.eq(0), c.first_run.eq(1)]
        with m.If(c.chk != PolicyErr.OK):
            m.next = "ERROR"
        with m.Else():
            with m.If(req.reset):
                m.d.sync += c.prev_ok.eq(0)
            with m.Switch(req.policy):
                with m.Case(PolicyId.FIXED):
                    m.d.sync += k.eq(req.k)
                with m.Case(PolicyId.ESCALATE):
                    m.d.sync += k.eq(c.lev0)
                with m.Case(PolicyId.HYBRID):
                    start = Mux(req.reset | ~c.hs_in, c.st0, hs)
                    m.d.sync += [k.eq(start), hs.eq(start)]
            m.next = "ISSUE"

    def _issue(self, m, c):
        """Issue RUN(k) to the engine (an escalation with ``data[5]``: continue the first
        convolution); mark k visited, clear the top-2."""
        eng, k, N = c.eng, c.k, c.N
        run = Cat(k, ~c.first_run) if c.cfg.accdepth and self.CONTINUE else k
        m.d.comb += [eng.cmd.valid.eq(1), eng.cmd.payload.op.eq(Op.RUN),
                     eng.cmd.payload.data.eq(run)]
        with m.If(eng.cmd.ready):
            m.d.sync += [c.visited.eq(c.visited | Cat(*[k == i + 1 for i in range(N)])),
                         c.h1.eq(0), c.h2.eq(0), c.pred.eq(0)]
            m.next = "COLLECT"

    def _collect(self, m, c):
        """Take the engine's answer beats (one per cycle): buffer the logits and update the top-2,
        sum the busy counters; DECIDE after the last layer's counter."""
        cfg, eng, er, busy = c.cfg, c.eng, c.er, c.busy
        m.d.comb += eng.res.ready.eq(1)
        with m.If(eng.res.valid):
            with m.Switch(er.kind):
                with m.Case(ResKind.LOGITS):
                    m.d.sync += [c.logbuf[er.index].eq(er.data[:c.R * c.OW]),
                                 c.t1.eq(c.c1), c.t2.eq(c.c2), c.h1.eq(c.ch1), c.h2.eq(c.ch2),
                                 c.pred.eq(c.cp)]
                with m.Case(ResKind.COUNTER):
                    b = data.View(counter_layout(cfg),
                                  er.data[:counter_layout(cfg).size]).busy
                    m.d.sync += busy[er.index].eq(Mux(c.first_run, b, busy[er.index] + b))
                    with m.If(er.index == c.nlayers - 1):
                        m.next = "DECIDE"

    def _decide(self, m, c):
        """1 cycle: accept the frame (SUMMARY; the hybrid updates its cross-frame state) or
        escalate to the next level (ISSUE)."""
        req, hs = c.req, c.hs
        m.d.sync += c.first_run.eq(0)
        accept_frame = Signal()
        with m.Switch(req.policy):
            with m.Case(PolicyId.FIXED):
                m.d.comb += accept_frame.eq(1)
            with m.Case(PolicyId.ESCALATE):
                m.d.comb += accept_frame.eq(c.conf | ~c.has_up)
            with m.Case(PolicyId.HYBRID):
                m.d.comb += accept_frame.eq(c.conf | c.agree | ~c.has_up)
        with m.If(accept_frame):
            with m.If(req.policy == PolicyId.HYBRID):
                m.d.sync += [c.prev.eq(c.pred), c.prev_ok.eq(1)]
                with m.If(c.escalated):
                    m.d.sync += hs.eq(Mux(c.has_sup, c.sup, hs))
                with m.Elif(c.down):
                    m.d.sync += hs.eq(Mux(c.has_sdn, c.sdn, hs))
            m.next = "SUMMARY"
        with m.Else():
            m.d.sync += [c.k.eq(c.up), c.escalated.eq(1)]
            m.next = "ISSUE"

    def _error(self, m, c):
        """A refused request: one SUMMARY beat naming the error."""
        m.d.comb += [self.res.valid.eq(1), c.out.kind.eq(ResKind.SUMMARY),
                     c.out.data.eq(c.summ)]
        with m.If(self.res.ready):
            m.d.sync += c.counting.eq(0)
            m.next = "IDLE"

    def _summary(self, m, c):
        """The answer's SUMMARY beat."""
        m.d.comb += [self.res.valid.eq(1), c.out.kind.eq(ResKind.SUMMARY),
                     c.out.data.eq(c.summ)]
        with m.If(self.res.ready):
            m.d.sync += [c.counting.eq(0), c.ridx.eq(0)]
            m.next = "LOGITS"

    def _logits(self, m, c):
        """The final k's ``ngroups`` LOGITS beats, from the buffer."""
        ridx = c.ridx
        m.d.comb += [self.res.valid.eq(1), c.out.kind.eq(ResKind.LOGITS),
                     c.out.index.eq(ridx), c.out.data.eq(c.logbuf[ridx])]
        with m.If(self.res.ready):
            with m.If(ridx == c.ngroups - 1):
                m.d.sync += ridx.eq(0)
                m.next = "COUNTERS"
            with m.Else():
                m.d.sync += ridx.eq(ridx + 1)

    def _counters(self, m, c):
        """One COUNTER beat per program layer: its busy cycles summed over the frame's RUNs."""
        ridx = c.ridx
        m.d.comb += [self.res.valid.eq(1), c.out.kind.eq(ResKind.COUNTER),
                     c.out.index.eq(ridx), c.out.data.eq(c.cnt)]
        with m.If(self.res.ready):
            m.d.sync += ridx.eq(ridx + 1)
            with m.If(ridx == c.nlayers - 1):
                m.next = "IDLE"
