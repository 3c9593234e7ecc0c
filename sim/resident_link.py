"""Host side of the resident UART bridge (``hw/resident/bridge.py``, ``docs/uart.md``): load a
network once, check it by its hash, then send images and get classes back.

The protocol is plain functions over bytes (:func:`net_frames`, :func:`image_frames`,
:func:`run_frame`, :func:`decode_ident`, :func:`decode_results`) and :class:`ResidentLink` runs it
over any *byte port* (``write(bytes)``, ``read(n)``, optionally ``in_waiting`` and a simulated
``clock()``/``baud``), like ``sim/serial_transport.py`` does for the streamed engine. Byte ports
of a simulated board: :class:`AmaranthBytePort` (the bridge's byte streams in the Amaranth
simulator) and ``sim.serial_transport.AmaranthSerialPort`` (the UART pins).

Never a wrong result: every message is CRC-checked and numbered (a lost, damaged or duplicated
message is a :class:`~.serial_transport.LinkError`), the SUMMARY carries the board's expected frame
number (a dropped host frame is seen) and a status request finds frames dropped before a reply.
Only what is safe to repeat is repeated: the identify, the status request, and a whole inference
(image + RUN: they overwrite the image and recompute it) after a resynchronisation; a network
load that fails is never half-trusted (its hash is cleared on chip by the first write).
"""

from __future__ import annotations

import random
import time
import zlib
from dataclasses import dataclass, field, fields

from ..hw.resident.bridge import (RChannel, RESULT_TAG, MODE_RESIDENT, FLAG_COUNTERS,
                                  FEATURE_POLICY, IDENT_TAIL, CREDIT_UNIT, IMAGE_CHUNK,
                                  kind_bytes)
from ..hw.resident.layout import ResidentConfig, Op, ResKind, cmd_layout
from ..hw.uart import IDENT_MAGIC, PROTOCOL_VERSION, STATUS_BYTES, Tag
from .serial_transport import (ByteLink, LinkError, SimBytePort, UpstreamParser,
                               decode_ident_head, frame)

__all__ = ["ResidentLink", "LinkError", "net_hash", "net_frames", "image_frames", "run_frame",
           "set_net_frame", "logit_groups", "ident_bytes", "decode_ident", "Inference", "AmaranthBytePort",
           "link_cost", "run_images", "run_images_cocotb", "LINK_TOP"]

#: Verilog top of ``ResidentSystem`` with byte streams (the cocotb ports of ``pnn run``)
LINK_TOP = "pnn_resident_link"

#: bytes of the identify reply's body before the config fields
_HEAD = len(IDENT_MAGIC) + 7


def ident_bytes() -> int:
    """Body bytes of a resident identify reply."""
    return _HEAD + 4 * len(fields(ResidentConfig)) + IDENT_TAIL


def decode_ident(body: bytes) -> dict:
    """Fields of a resident identify reply body (``hw.resident.bridge.ident_prefix``)."""
    if not body.startswith(IDENT_MAGIC) or len(body) != ident_bytes():
        raise LinkError(f"not a resident identify reply: {body[:8].hex()}...")
    v, mode, feat, depth, cu = decode_ident_head(body)
    maxp = body[_HEAD - 1]
    if v != PROTOCOL_VERSION:
        raise LinkError(f"board speaks framing version {v}, this host {PROTOCOL_VERSION}")
    if mode != MODE_RESIDENT:
        raise LinkError("the board runs the streamed engine, not resident mode")
    vals = [int.from_bytes(body[_HEAD + 4 * i:_HEAD + 4 * i + 4], "little")
            for i in range(len(fields(ResidentConfig)))]
    cfg = ResidentConfig(**{f.name: x for f, x in zip(fields(ResidentConfig), vals)})
    tail = body[-IDENT_TAIL:]
    return {"version": v, "features": feat, "fifo_depth": depth, "credit_unit": cu,
            "max_payload": maxp, "cfg": cfg, "hash": int.from_bytes(tail[:4], "little"),
            "flags": tail[4], "token": tail[5]}


def _cmd_bytes(cfg) -> int:
    return -(-cmd_layout(cfg).size // 8)


def net_hash(prog, extra=()) -> int:
    """32-bit hash of a compiled network as loaded (every load beat, ``extra`` beats such as a
    policy's gates, the image setup): CRC-32, never 0 (0 means "no network" on the board)."""
    n = _cmd_bytes(prog.cfg)
    op, unit = image_setup(prog)
    h = zlib.crc32(b"".join(w.to_bytes(n, "little") for w in [*prog.load_beats(), *extra])
                   + bytes([op]) + unit.to_bytes(2, "little"))
    return h or 1


def image_setup(prog) -> tuple:
    """(op, codes per pixel) of the on-chip image packer for this program."""
    if prog.taps:
        return Op.WRITE_IMG.value, prog.cfg.cols
    return Op.WRITE_FM.value, prog.in_shape[0]


def logit_groups(prog, features: int = 0) -> list:
    """Data bytes of each LOGITS message of ``prog``'s answer: every group full but the last,
    trimmed to the classes it holds (what SET_NET tells the bridge)."""
    cfg = prog.cfg
    full = kind_bytes(cfg, features)[ResKind.LOGITS.value]
    ng = prog.layers[-1].desc["ngroups"]
    tail = min(full, -(-(prog.classes - (ng - 1) * cfg.rows) * cfg.obits // 8))
    return [full] * (ng - 1) + [tail]


def set_net_frame(prog, *, counters: bool, seq: int, extra=()) -> bytes:
    op, unit = image_setup(prog)
    groups = logit_groups(prog)
    payload = (net_hash(prog, extra).to_bytes(4, "little")
               + bytes([FLAG_COUNTERS if counters else 0, op]) + unit.to_bytes(2, "little")
               + bytes([len(groups) - 1, groups[-1]]))
    return _raw_frame(RChannel.SET_NET, payload, seq)


def net_frames(prog, seq: int) -> list:
    """CMD frames loading the network, numbered from ``seq``."""
    return [frame(RChannel.CMD, w, seq=(seq + i) & 0xFF) for i, w in enumerate(prog.load_beats())]


def image_codes(prog, image) -> bytes:
    """The image as the packer takes it: one byte per code, pixel after pixel (channels inner)."""
    import numpy as np

    x = np.asarray(image, dtype=np.int64)
    cin, h, w = prog.in_shape
    if x.shape != (cin, h, w):
        raise ValueError(f"image must be {[cin, h, w]}, not {list(x.shape)}")
    if x.size and (x.min() < 0 or x.max() > (1 << prog.cfg.abits) - 1):
        raise ValueError(f"image codes must be in [0, {(1 << prog.cfg.abits) - 1}]")
    return bytes(x.transpose(1, 2, 0).reshape(-1).astype(np.uint8).tolist())


def _word_ends(prog, n: int) -> list:
    """Code counts after which the packer writes a word (the cuts allowed between frames)."""
    op, unit = image_setup(prog)
    C = prog.cfg.cols
    ends, lane, ch = [], 0, 0
    for i in range(n):
        if lane == C - 1 or ch == unit - 1 or i == n - 1:
            ends.append(i + 1)
            lane = 0
        else:
            lane += 1
        ch = 0 if ch == unit - 1 else ch + 1
    return ends


def image_frames(prog, image, seq: int, max_payload: int) -> list:
    """IMAGE / IMAGE_MORE frames of one image, cut at word ends, numbered from ``seq``."""
    codes = image_codes(prog, image)
    out, start = [], 0
    ends = _word_ends(prog, len(codes))
    while start < len(codes):
        cut = max((e for e in ends if start < e <= start + max_payload), default=None)
        if cut is None:
            raise ValueError(f"one word of the image needs more than {max_payload} bytes")
        chunk = codes[start:cut]
        out.append(_raw_frame(RChannel.IMAGE if not out else RChannel.IMAGE_MORE, chunk,
                              (seq + len(out)) & 0xFF))
        start = cut
    return out


def _raw_frame(channel: int, payload: bytes, seq: int) -> bytes:
    """A frame carrying exactly ``payload`` (trailing zero codes are codes: not dropped)."""
    from ..hw.uart import FRAME_SYNC, crc16

    body = bytes([channel, seq & 0xFF, len(payload)]) + payload
    return bytes([FRAME_SYNC]) + body + crc16(body).to_bytes(2, "big")


def run_frame(prog, k: int, seq: int) -> bytes:
    from .resident import run_beats

    return frame(RChannel.CMD, run_beats(prog, k)[0], seq=seq)


@dataclass
class Inference:
    """One image's answer: class, k used, cycles (first image beat to SUMMARY), logits, per-layer
    busy cycles (empty unless counters were asked for)."""
    cls: int
    k: int
    cycles: int
    logits: list
    busy: list = field(default_factory=list)


def link_cost(prog, *, counters: bool = False, credit_unit: int = CREDIT_UNIT,
              max_payload: int = IMAGE_CHUNK, k: int = 1) -> dict:
    """Bytes on the link per image at ``k`` (both directions, framing, credits included), computed
    from the frames and messages the protocol uses (the tests check it against bytes counted on a
    port); defaults: the bridge's credit unit and IMAGE payload."""
    import numpy as np

    img = np.zeros(prog.in_shape, dtype=np.int64)
    down = sum(len(f) for f in image_frames(prog, img, 0, max_payload)) + len(run_frame(prog, k, 0))
    kb = kind_bytes(prog.cfg)
    up = 6 + 1 + kb[ResKind.SUMMARY.value]
    up += sum(6 + 1 + n for n in logit_groups(prog))
    if counters:
        up += len(prog.layers) * (6 + 1 + kb[ResKind.COUNTER.value])
    credits = 6 * down / credit_unit
    cin, h, w = prog.in_shape
    return {"down": down, "up": up, "credits": round(credits, 2),
            "total": round(down + up + credits, 2), "image_code_bytes": cin * h * w}


class ResidentLink(ByteLink):
    """A resident board (or its simulation) over a byte port.

    Parameters
    ----------
    port : str or byte port
        A device name (opened with pyserial at ``baud``) or an object with ``write``/``read``.
    baud : int
        The line rate of a real port (default 3 Mbaud, what `pnn build` gives every board).
        Sets the deadline's allowance per byte; a port with ``baud`` and ``clock()`` (simulated)
        gives both, and then every time below is the port's simulated seconds.
    timeout : float
        Base of every deadline: an operation must end within ``timeout + 4 * 10 / baud * bytes``
        from its start; no byte received extends it.
    probe : float
        Seconds of silence, once all is sent, before a status request asks what the board got.
    retries : int
        Identify requests before :meth:`connect` gives up; inferences repeated after a link
        error (each after a resynchronisation).
    counters : bool
        Ask for the per-layer busy counters with every result.

    ``link`` counts: bytes each way, messages, bad candidates, garbage, probes, retries.
    """

    def __init__(self, port, *, baud: int = 3_000_000, timeout: float = 10.0, probe: float = 0.5,
                 retries: int = 3, counters: bool = False):
        super().__init__(port, baud=baud, timeout=timeout, probe=probe, retries=retries,
                         pyserial_hint="pip install pyserial (make setup installs it)")
        self.counters = counters
        self.info = None
        self.prog = None
        self.extra = []
        self.link["retries"] = 0

    def _lost(self) -> None:
        self.info = None

    def _result(self, msg) -> bool:
        if msg.tag < RESULT_TAG:
            return False
        self.results.append(msg)
        return True

    def _parser(self, info) -> UpstreamParser:
        p = UpstreamParser(0)
        p.lengths = {Tag.CREDIT: 0, Tag.IDENTIFY: ident_bytes(), Tag.STATUS: STATUS_BYTES}
        if info is not None:
            for kv, n in kind_bytes(info["cfg"], info["features"]).items():
                p.lengths[RESULT_TAG + kv] = 1 + n
            if self.prog is not None and self.prog.cfg == info["cfg"]:
                tail = 1 + logit_groups(self.prog)[-1]      # the last LOGITS group, trimmed
                full = p.lengths[RESULT_TAG + ResKind.LOGITS.value]
                if tail != full:
                    p.lengths[RESULT_TAG + ResKind.LOGITS.value] = (full, tail)
        return p

    # ---- connection ---------------------------------------------------------------------------
    def connect(self, *, reset: bool = True) -> dict:
        """Reset the engine (not the network), identify the board, restart the credit count.
        Returns :func:`decode_ident`'s fields (``cfg``: the board's ResidentConfig)."""
        self.parser = self._parser(self.info)
        reply, rest = self._identify(
            lambda tok: frame(RChannel.RESET, seq=tok) if reset else b"", 128,
            "a resident bitstream")
        info = decode_ident(reply.body)
        self.info = info
        self.parser = self._parser(info)          # now the result lengths are known
        self._start(reply, rest, info["fifo_depth"], info["credit_unit"])
        return info

    def _transact(self, frames: list, n_results, *, status: bool, carry: bool = False) -> list:
        """Send ``frames`` and collect ``n_results`` result messages (:meth:`ByteLink._transact`)."""
        return super()._transact(b"".join(frames), len(frames), n_results, status=status,
                                 carry=carry)

    # ---- network ------------------------------------------------------------------------------
    def load(self, prog, *, force: bool = False, extra=()) -> bool:
        """Make the board hold ``prog`` (and the ``extra`` command beats after it: a policy's
        gates): skipped when its identify reply already shows their hash. Returns True when the
        network was (re)loaded."""
        if self.info is None:
            self.connect()
        cfg = self.info["cfg"]
        if cfg != prog.cfg:
            raise ValueError(f"the board's engine was built for {cfg}, the program for "
                             f"{prog.cfg}")
        self.prog = prog
        self.extra = list(extra)
        self.parser.lengths = self._parser(self.info).lengths
        want = net_hash(prog, self.extra)
        flags = FLAG_COUNTERS if self.counters else 0
        if self.info["hash"] == want and not force:
            if self.info["flags"] != flags:
                self._transact([set_net_frame(prog, counters=self.counters, seq=self.seq,
                                              extra=self.extra)], 0, status=True)
                self.info["flags"] = flags
            return False
        frames = [frame(RChannel.CMD, w, seq=(self.seq + i) & 0xFF)
                  for i, w in enumerate([*prog.load_beats(), *self.extra])]
        frames.append(set_net_frame(prog, counters=self.counters,
                                    seq=(self.seq + len(frames)) & 0xFF, extra=self.extra))
        for i in range(0, len(frames), 64):      # a status every 64 frames: errors seen early
            self._transact(frames[i:i + 64], 0, status=True)
        self.info.update(hash=want, flags=flags)
        return True

    # ---- images -------------------------------------------------------------------------------
    def n_results(self) -> int:
        return 1 + self.prog.layers[-1].desc["ngroups"] + (len(self.prog.layers)
                                                           if self.counters else 0)

    def infer(self, image, k: int) -> Inference:
        """Classify one image with ``k`` planes (:meth:`load` first). A link error is retried,
        after a resynchronisation, up to ``retries`` times (safe: an image and a RUN overwrite
        and recompute); the network's hash is checked again each time."""
        return self.infer_many([image], k)[0]

    def infer_many(self, images, k: int) -> list:
        """Classify ``images`` in order with ``k`` planes, keeping the next image in flight:
        image n+1 and its RUN are sent right after RUN(n), before result n is read, so the link
        carries image n+1 while the board computes image n (a ``double_buffer`` engine writes
        it meanwhile; a single-buffered one holds its bytes in the bridge FIFO until it is idle).
        Answers come back in order. A link error resynchronises and repeats from the first image
        without an answer, up to ``retries`` times in a row (safe: images and RUNs overwrite and
        recompute); the network's hash is checked again each time."""
        if self.prog is None:
            raise RuntimeError("load a network first")
        images, out, failures = list(images), [], 0
        while len(out) < len(images):
            done = len(out)
            try:
                if self.info is None:
                    self.connect()
                    if self.info["hash"] != net_hash(self.prog, self.extra):
                        raise LinkError("the board lost the network (hash differs): load again")
                self._pipeline(images[done:], k, out)
            except LinkError as e:
                failures = 1 if len(out) > done else failures + 1
                if failures > self.retries:
                    raise
                self.link["retries"] += 1
                self.link["last_error"] = str(e)
                self.info = None
        return out

    def _pipeline(self, images, k: int, out: list) -> None:
        """Send the images two deep (``infer_many``), appending each answer to ``out``."""
        prog, n = self.prog, self.n_results()
        seq = self.seq

        def frames_of(image):
            nonlocal seq
            fr = image_frames(prog, image, seq, self.info["max_payload"])
            fr.append(run_frame(prog, k, (seq + len(fr)) & 0xFF))
            seq = (seq + len(fr)) & 0xFF
            return fr, seq

        pending, batch = [], []
        for image in images[:2]:
            fr, end = frames_of(image)
            batch += fr
            pending.append(end)
        nxt = 2
        while pending:
            end = pending.pop(0)
            msgs = self._transact(batch, n, status=False, carry=bool(pending))
            out.append(decode_results(prog, msgs, end))
            batch = []
            if nxt < len(images):
                batch, e = frames_of(images[nxt])
                pending.append(e)
                nxt += 1

    def request(self, image, beat: int) -> list:
        """Send an image and one request command beat (e.g. the policy wrapper's RUN_POLICY);
        return the answer as raw result beats (``res_layout``). The answer ends after a SUMMARY
        whose ``err`` field (the policy wrapper's) is not 0, else after the full set of beats.
        Never repeated: a request may change state on chip (the policy's cross-frame state)."""
        from ..hw.resident.layout import res_layout

        prog = self.prog
        rl = res_layout(prog.cfg)
        full = 1 + prog.layers[-1].desc["ngroups"] + (len(prog.layers) if self.counters else 0)

        err = None
        if self.info["features"] & FEATURE_POLICY:
            from ..hw.resident.policy import policy_summary_layout
            err = policy_summary_layout(prog.cfg)["err"]

        def count(got):
            if err is not None and got and got[0].tag == RESULT_TAG + ResKind.SUMMARY.value:
                raw = int.from_bytes(got[0].body[1:], "little")
                if (raw >> err.offset) & ((1 << err.width) - 1):    # refused: SUMMARY only
                    return 1
            return full
        if self.info is None:
            raise LinkError("not connected")
        frames = image_frames(prog, image, self.seq, self.info["max_payload"])
        frames.append(frame(RChannel.CMD, beat, seq=(self.seq + len(frames)) & 0xFF))
        msgs = self._transact(frames, count, status=False)
        if msgs[0].body[0] != self.seq & 0xFF:
            raise LinkError(f"serial link: the board ran after frame #{msgs[0].body[0]}, "
                            f"{self.seq} were sent")
        return [rl.const({"kind": ResKind(m.tag - RESULT_TAG),
                          "index": 0 if m.tag == RESULT_TAG else m.body[0],
                          "data": int.from_bytes(m.body[1:], "little")}).as_bits() for m in msgs]

    def read_fm(self, addrs) -> list:
        """Feature-map words at ``addrs`` (READ_FM), as integers."""
        cl = cmd_layout(self.prog.cfg)
        frames = [frame(RChannel.CMD, cl.const({"op": Op.READ_FM, "addr": a, "data": 0})
                        .as_bits(), seq=(self.seq + i) & 0xFF) for i, a in enumerate(addrs)]
        msgs = self._transact(frames, len(frames), status=False)
        for msg in msgs:
            if msg.tag != RESULT_TAG + ResKind.FM_WORD.value:
                raise LinkError(f"serial link: {msg!r} where a feature-map word was expected")
        return [int.from_bytes(m.body[1:], "little") for m in msgs]

    def read_status(self) -> dict:
        """The board's counters (bad frames, frames out of sequence, expected seq, errors)."""
        self._transact([], 0, status=True)
        return dict(self.status)



def decode_results(prog, msgs: list, seq: int) -> Inference:
    """Result messages of one RUN -> :class:`Inference`; checks their kinds, indices and that the
    board had every frame up to ``seq`` (the SUMMARY's header byte)."""
    cfg = prog.cfg
    OW, R = cfg.obits, cfg.rows
    s = msgs[0]
    if s.tag != RESULT_TAG + ResKind.SUMMARY.value:
        raise LinkError(f"serial link: {s!r} where a SUMMARY was expected")
    if s.body[0] != seq & 0xFF:
        raise LinkError(f"serial link: the board ran after frame #{s.body[0]}, {seq} were sent")
    raw = int.from_bytes(s.body[1:], "little")
    cls, kk, cycles = raw & 0xFFF, (raw >> 12) & 0x1F, (raw >> 17) & 0xFFFFFFFF
    ng = prog.layers[-1].desc["ngroups"]
    logits = []
    for g, msg in enumerate(msgs[1:1 + ng]):
        if msg.tag != RESULT_TAG + ResKind.LOGITS.value or msg.body[0] != g:
            raise LinkError(f"serial link: {msg!r} where LOGITS {g} was expected")
        raw = int.from_bytes(msg.body[1:], "little")
        for r in range(R):
            if g * R + r < prog.classes:
                v = (raw >> (r * OW)) & ((1 << OW) - 1)
                logits.append(v - (1 << OW) if v >> (OW - 1) else v)
    busy = []
    for i, msg in enumerate(msgs[1 + ng:]):
        if msg.tag != RESULT_TAG + ResKind.COUNTER.value or msg.body[0] != i:
            raise LinkError(f"serial link: {msg!r} where COUNTER {i} was expected")
        busy.append(int.from_bytes(msg.body[1:], "little"))
    return Inference(cls, kk, cycles, logits, busy)


def run_images(link: ResidentLink, bundle, indices, k: int, *, tables: str = "retrained",
               force_load: bool = False, log=lambda *a: None, policy: str | None = None,
               threshold: int = 0, overlap: bool = True) -> dict:
    """What ``pnn run`` does on any port: connect, compile ``bundle`` for the board's
    configuration, load it unless the board holds it, classify the test images ``indices`` with
    ``k`` planes (``overlap``: the next image in flight, :meth:`ResidentLink.infer_many`; else one
    at a time) and check each against the golden model (class, logits and k). Returns the
    report (``docs/run.md``): accuracy, golden accuracy, agreement, cycles, wall-clock rate, link
    bytes per image measured and computed, per-image ``results``."""
    import numpy as np

    from ..model.golden import run_network
    from .resident import compile_program, shared_lanes_refusal

    t0 = time.perf_counter()
    info = link.connect()
    cfg = info["cfg"]
    prog = compile_program(bundle, cfg, tables)
    why = None if policy is not None else shared_lanes_refusal(prog, k)
    if why:           # refused before loading (run_beats would refuse each RUN)
        raise ValueError(why)
    log(f"pnn run: resident engine {cfg.rows}x{cfg.cols}, N={cfg.nbits}")
    if policy is not None:
        return _run_policy(link, bundle, prog, indices, policy, threshold, tables=tables,
                           force_load=force_load, log=log, t0=t0)
    loaded = link.load(prog, force=force_load)
    load_s = time.perf_counter() - t0
    log(f"pnn run: network {'loaded' if loaded else 'already on the board (hash matches)'} in "
        f"{load_s:.2f} s")
    x = np.asarray(bundle.test_x, dtype=np.int64)
    uniq = sorted(set(indices))
    gold = run_network(bundle, x[uniq], k, tables)
    gpos = {v: i for i, v in enumerate(uniq)}
    rows = []
    before = link.link["sent"] + link.link["received"]
    clock0 = link.clock()
    t1 = time.perf_counter()
    if overlap:
        answers = link.infer_many([x[i] for i in indices], k)
    else:
        answers = [link.infer(x[i], k) for i in indices]
    run_s = time.perf_counter() - t1
    link_s = link.clock() - clock0
    for i, r in zip(indices, answers):
        g = gpos[i]
        glog = [int(v) for v in gold.logits[g]]
        row = {"image": int(i), "label": int(bundle.test_y[i]), "pred": r.cls,
               "golden": int(gold.pred[g]), "k": r.k, "cycles": r.cycles,
               "agree": r.cls == int(gold.pred[g]) and r.logits == glog and r.k == k}
        if link.counters:
            row["busy"] = r.busy
        rows.append(row)
        log(f"  image {i:5d}  label {row['label']:3d}  pred {r.cls:3d}  golden "
            f"{row['golden']:3d}  {'ok' if row['agree'] else 'DIFFERS'}  {r.cycles} cycles")
    n = len(rows)
    return {
        "k": k, "images": n, "tables": tables,
        "config": {f: getattr(cfg, f) for f in ("rows", "cols", "nbits", "abits")},
        "network_loaded": loaded, "load_seconds": round(load_s, 3),
        "accuracy": sum(r["pred"] == r["label"] for r in rows) / n,
        "golden_accuracy": sum(r["golden"] == r["label"] for r in rows) / n,
        "agree": sum(r["agree"] for r in rows), "all_agree": all(r["agree"] for r in rows),
        "cycles_per_image": max(r["cycles"] for r in rows),
        "overlap": overlap,
        "wall_inferences_per_s": round(n / run_s, 3) if run_s > 0 else None,
        "port_seconds_per_image": link_s / n,
        "link_bytes_per_image": round((link.link["sent"] + link.link["received"] - before) / n,
                                      1),
        "link_cost": link_cost(prog, counters=link.counters, credit_unit=info["credit_unit"],
                               max_payload=info["max_payload"], k=k),
        "link": dict(link.link), "results": rows,
    }


def _build_link(cfg: ResidentConfig, simulator: str, root, engine: str | None = None):
    """Generate and build the Verilog of ``ResidentSystem(cfg, 100e6, None, engine=engine)``
    (once per configuration, engine and simulator; ``engine="policy"``: the policy wrapper)."""
    from amaranth.back import verilog

    from ..hw.resident.system import ResidentSystem
    from .runner import (VERILATOR_ARGS, build_if_stale, find_simulator, verilator_sources,
                         write_if_changed, _build_dir, _build_lock)

    find_simulator(simulator)
    kind = "resident-link-policy" if engine == "policy" else "resident-link"
    build_dir = _build_dir(cfg, simulator, root, kind=kind).resolve()
    with _build_lock(build_dir) as lock:
        lock(True)
        (build_dir / "rtl").mkdir(parents=True, exist_ok=True)
        src = write_if_changed(build_dir / "rtl" / f"{LINK_TOP}.v", verilog.convert(
            ResidentSystem(cfg, 100e6, None, engine=engine), name=LINK_TOP))
        # Icarus in Verilog-2005 mode runs the declaration initialisers of Yosys's
        # ``always @*`` trigger registers as events at time 0 (under -g2012 it does not, and a
        # combinational block whose inputs never change, an FSM's idle state, stays X)
        build_if_stale(simulator, verilator_sources(simulator, [src]), LINK_TOP, build_dir,
                       VERILATOR_ARGS if simulator == "verilator" else ["-g2005"], [])
    return build_dir


def run_images_cocotb(bundle_path, cfg: ResidentConfig, indices, k: int, *,
                      simulator: str = "icarus", tables: str = "retrained",
                      counters: bool = False, build_root="build/sim", timeout: float = 0.02,
                      probe: float = 2e-4, policy: str | None = None,
                      threshold: int = 950) -> dict:
    """:func:`run_images` inside Icarus or Verilator (``sim/resident_link_cocotb.py``) on the
    generated Verilog of the resident system; returns its report plus build/sim seconds and
    the simulated cycles. ``timeout``/``probe`` are simulated seconds (10 ns cycles).
    ``policy``: the system with the policy wrapper, the images as one clip (:func:`run_images`)."""
    import json
    from pathlib import Path

    from .runner import new_run_dir, run_cocotb, _build_lock

    t0 = time.perf_counter()
    build_dir = _build_link(cfg, simulator, build_root, "policy" if policy else None)
    build_s = time.perf_counter() - t0
    test_dir = new_run_dir(build_root, "resident-link")
    out = test_dir / "report.json"
    conf = {"bundle": str(Path(bundle_path).resolve()), "indices": [int(i) for i in indices],
            "k": k, "tables": tables, "counters": counters, "force_load": False,
            "timeout": timeout, "probe": probe, "policy": policy, "threshold": threshold,
            "out": str(out)}
    conf_path = test_dir / "config.json"
    conf_path.write_text(json.dumps(conf, indent=1))
    t1 = time.perf_counter()
    with _build_lock(build_dir) as lock:
        lock(False)
        rep = run_cocotb(simulator, "progressivenn.sim.resident_link_cocotb", LINK_TOP, build_dir,
                         test_dir, {"PNN_RUN_CONFIG": str(conf_path)}, out)
    rep.update(simulator=simulator, build_seconds=round(build_s, 2),
               sim_seconds=round(time.perf_counter() - t1, 2), run_dir=str(test_dir))
    return rep


def _run_policy(link, bundle, prog, indices, name: str, threshold: int, *, tables, force_load,
                log, t0) -> dict:
    """``run_images`` with the on-chip policy: gates calibrated on the golden logits of every test
    image of the bundle, the images as one clip (the policy's cross-frame state carries from
    image to image), every frame compared with the golden policy (``compare_frames``)."""
    import numpy as np

    from ..model import dynamic as dyn
    from ..model.golden import run_network
    from .resident_policy import compare_frames, decode_policy, gate_beats, request_beat

    if not link.info["features"] & FEATURE_POLICY:
        raise ValueError("the board has no policy wrapper (its identify reply says so); run "
                         "with --k, or build the board with ResidentSystem(engine='policy')")
    N = int(bundle.nbits)
    x = np.asarray(bundle.test_x, dtype=np.int64)
    logits = np.stack([run_network(bundle, x, kk, tables).logits.numpy()
                       for kk in range(1, N + 1)])              # [N, images, classes]
    labels = np.asarray(bundle.test_y, dtype=np.int64)
    gates = dyn.Calibration.from_table(dyn.LogitTable(logits[:, None], labels[None]))
    pol = dyn.make_policy(name, N, gates, threshold)
    link.counters = True                     # the busy counters are compared with the path's
    loaded = link.load(prog, force=force_load, extra=gate_beats(prog, pol))
    load_s = time.perf_counter() - t0
    log(f"pnn run: network and {pol.name} gates {'loaded' if loaded else 'already there'}")
    idx = list(indices)
    before = link.link["sent"] + link.link["received"]
    t1 = time.perf_counter()
    res = []
    for j, i in enumerate(idx):
        res.append(decode_policy(prog, link.request(x[i], request_beat(prog, pol, j == 0))))
        r = res[-1]
        log(f"  image {i:5d}  label {int(labels[i]):3d}  pred {r.cls:3d}  k path "
            f"{list(r.path)}  {r.cycles} cycles  {r.err.name}")
    run_s = time.perf_counter() - t1
    table = dyn.LogitTable(logits[:, None, idx], labels[None, idx])
    cmp = compare_frames([res], table, pol, prog)
    paths, preds = dyn.run_policy(pol, table)
    rows = [{"image": int(i), "label": int(labels[i]), "pred": r.cls, "golden": int(p),
             "k": r.k, "path": list(r.path), "golden_path": list(gp), "cycles": r.cycles,
             "err": r.err.name, "agree": r.cls == p and tuple(r.path) == tuple(gp)}
            for i, r, p, gp in zip(idx, res, preds, paths)]
    n = len(rows)
    ok = cmp["decisions_differ"] + cmp["logit_mismatches"] + cmp["busy_mismatches"] == 0
    return {
        "policy": pol.describe(), "images": n, "tables": tables,
        "config": {f: getattr(prog.cfg, f) for f in ("rows", "cols", "nbits", "abits")},
        "network_loaded": loaded, "load_seconds": round(load_s, 3),
        "accuracy": cmp["accuracy"], "golden_accuracy": cmp["golden_accuracy"],
        "agree": sum(r["agree"] for r in rows), "all_agree": ok,
        "decisions_differ": cmp["decisions_differ"], "logit_mismatches": cmp["logit_mismatches"],
        "busy_mismatches": cmp["busy_mismatches"], "first_difference": cmp["first_difference"],
        "avg_final_k": cmp["avg_final_k"], "escalations": cmp["escalations"],
        "cycles_per_image": max(r["cycles"] for r in rows),
        "avg_cycles": cmp["avg_cycles"],
        "wall_inferences_per_s": round(n / run_s, 3) if run_s > 0 else None,
        "link_bytes_per_image": round((link.link["sent"] + link.link["received"] - before) / n,
                                      1),
        "link_cost": link_cost(prog, counters=True, credit_unit=link.info["credit_unit"],
                               max_payload=link.info["max_payload"]),
        "link": dict(link.link), "results": rows,
    }


class AmaranthBytePort(SimBytePort):
    """A byte port whose other end is the ``i``/``o`` byte streams of ``dut`` (a
    :class:`~progressivenn.hw.resident.system.ResidentSystem` built with ``baud=None``) in the
    Amaranth simulator: no UART bit timing, one byte per cycle each way at most.

    ``clock()`` is simulated seconds at ``1 / period`` Hz; ``baud`` is the equivalent line rate of
    one byte per cycle (for the host's deadlines). ``gap``: probability of an idle cycle before a
    byte sent (random stalls). ``read`` advances the simulation until a byte arrives or
    ``max_cycles`` pass (:class:`~.serial_transport.SimBytePort`)."""

    def __init__(self, dut, *, gap: float = 0.0, seed: int = 0, max_cycles: int = 200_000,
                 period: float = 1e-8):
        from amaranth.sim import Simulator

        self.dut = dut
        self.gap = gap
        self.rng = random.Random(seed)
        self.period = period
        self._queues(max_cycles, 64)
        self.sim = Simulator(dut)
        self.sim.add_clock(period)
        self.sim.add_testbench(self._io, background=True)

    async def _io(self, ctx):
        dut = self.dut
        ctx.set(dut.o.ready, 1)
        while True:
            send = bool(self.tx_queue) and not (self.gap and self.rng.random() < self.gap)
            ctx.set(dut.i.valid, send)
            if send:
                ctx.set(dut.i.payload, self.tx_queue[0])
            _, _, irdy, ovld, opay = await ctx.tick().sample(dut.i.ready, dut.o.valid,
                                                            dut.o.payload)
            if send and irdy:
                del self.tx_queue[0]
            if ovld:
                self.rx_buf.append(opay)
