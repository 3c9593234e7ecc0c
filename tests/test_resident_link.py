"""The resident UART bridge (hw/resident/bridge.py) and its host (sim/resident_link.py) in the
Amaranth simulator: identify with the config and the network hash, load skipped when the hash
matches and cleared by a network write, IMAGE codes packed on chip (feature-map and tap-bank
images), results, counters and feature maps read back against the golden model; faults injected
both ways never give a wrong result; the link cost per image."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from progressivenn.hw.resident.bridge import (ResidentBridge, RChannel, ident_prefix, kind_bytes,
                                              IDENT_TAIL)
from progressivenn.hw.resident.layout import ResidentConfig, Op, ResKind, cmd_layout, res_layout
from progressivenn.hw.resident.system import ResidentSystem
from progressivenn.hw.uart import Tag
from progressivenn.model.golden import run_network
from progressivenn.sim import resident as rs
from progressivenn.sim.compare import compare_outputs, golden_outputs
from progressivenn.sim.resident_link import (AmaranthBytePort, LinkError, ResidentLink, run_images,
                                             decode_ident, image_frames, link_cost, net_hash,
                                             logit_groups,
                                             _word_ends, frame)
from progressivenn.sim.resident_runner import resident_config
from progressivenn.sim.serial_transport import AmaranthSerialPort, FaultyPort

from bundles import random_bundle

torch.set_num_threads(1)

CYCLE = 1e-8
CFG = ResidentConfig(rows=2, cols=4, nbits=3, abits=8, wdepth=512, ppdepth=64, fmdepth=256,
                     taps=4, tapdepth=64, max_layers=8, max_classes=4)


def tiny(seed=0, images=3, input_shape=(2, 4, 4)):
    return random_bundle(seed, nbits=3, images=images, input_shape=input_shape, channels=(3, 2),
                         classes=3)


def _link(cfg=CFG, *, rate=0.0, seed=0, counters=False, down=True, up=True):
    port = AmaranthBytePort(ResidentSystem(cfg, 100e6, None), seed=seed, max_cycles=3000,
                            gap=0.1)
    faulty = FaultyPort(port, rate=rate, seed=seed, down=down, up=up)
    faulty.armed = False
    link = ResidentLink(faulty, timeout=60_000 * CYCLE, probe=3_000 * CYCLE, counters=counters)
    return port, faulty, link


def _golden(bundle, i, k):
    g = run_network(bundle, np.asarray(bundle.test_x[i:i + 1], dtype=np.int64), k)
    return int(g.pred[0]), [int(v) for v in g.logits[0]]


def test_protocol_pieces():
    b = tiny()
    prog = rs.compile_program(b, CFG)
    # the identify reply's constant part carries every config field; the host rebuilds it
    br = ResidentBridge(CFG)
    br._MustUse__silence = True
    body = br.ident + (1234).to_bytes(4, "little") + bytes([1, 7])
    info = decode_ident(body)
    assert info["cfg"] == CFG and info["hash"] == 1234 and info["token"] == 7
    assert info["max_payload"] == br.max_payload and info["fifo_depth"] == 512
    assert len(br.ident) + IDENT_TAIL == len(body)
    with pytest.raises(LinkError, match="resident"):
        decode_ident(body[:10])
    # images are cut at word ends only; a frame never ends inside a word
    ends = _word_ends(prog, 32)                  # 2 channels a pixel: a word per pixel
    assert ends == list(range(2, 33, 2))
    frames = image_frames(prog, b.test_x[0], 0, 5)
    assert [f[3] for f in frames] == [4] * 8 and frames[0][1] == RChannel.IMAGE
    assert {f[1] for f in frames[1:]} == {RChannel.IMAGE_MORE}
    with pytest.raises(ValueError, match="image must be"):
        image_frames(prog, b.test_x[0][:1], 0, 64)
    # the hash follows the network: other tables, another hash
    assert net_hash(prog) != net_hash(rs.compile_program(b, CFG, "fixed")) != 0
    assert kind_bytes(CFG) == {0: 7, 1: 8, 2: 4, 3: 4}
    with pytest.raises(ValueError, match="abits"):
        ResidentBridge(ResidentConfig(abits=9, obits=32))


def test_round_trip_load_infer_readback_hash():
    """One simulated board: identify, load, infer (with counters) at two k, read a hidden map
    back, reconnect (load skipped), a network write clears the hash, bad frames counted."""
    b = tiny()
    port, _, link = _link(counters=True)
    info = link.connect()
    assert info["cfg"] == CFG and info["hash"] == 0 and info["flags"] == 0
    prog = rs.compile_program(b, info["cfg"])
    assert link.load(prog) is True
    for i, k in ((0, 1), (1, 3)):
        sent = link.link["sent"] + link.link["received"]
        r = link.infer(b.test_x[i], k)
        cost = link.link["sent"] + link.link["received"] - sent
        assert (r.cls, r.logits) == _golden(b, i, k) and r.k == k
        assert r.busy == rs.expected_busy(prog, k)
        # the bytes counted on the port are the protocol's cost (credits: whole messages)
        want = link_cost(prog, counters=True, credit_unit=info["credit_unit"],
                         max_payload=info["max_payload"], k=k)
        assert abs(cost - want["total"]) <= 6, (cost, want)
    # the hidden layers' maps, read back with READ_FM, against golden (image 1, k=3)
    addrs = [a for pl in prog.layers[:-1] for a in range(pl.out_base, pl.out_base +
                                                          np.prod(pl.out_shape[1:]) * pl.out_words)]
    words = link.read_fm(addrs)
    rl = res_layout(CFG)
    beats = [rl.const({"kind": ResKind.FM_WORD, "index": 0, "data": w}).as_bits() for w in words]
    res = rs.RunResult(r.cls, 3, r.cycles, r.logits, r.busy, rs.decode_readback(prog, beats))
    got = rs.layer_outputs(b, prog, res)
    exp = [e[0] for e in golden_outputs(b, b.test_x[1:2], 3)]
    seen = [j for j, v in enumerate(got) if v is not None]
    cmp = compare_outputs(b, [got[j] for j in seen], [exp[j] for j in seen], k=3, image=1)
    assert cmp.mismatches == 0 and cmp.compared > 0
    # reconnect: the engine is reset, the network kept and recognised by its hash
    info = link.connect()
    assert info["hash"] == net_hash(prog) and info["flags"] == 1
    assert link.load(prog) is False
    assert link.infer(b.test_x[2], 2).cls == _golden(b, 2, 2)[0]
    # one network write: the hash is gone, the host would reload
    w = cmd_layout(CFG).const({"op": Op.WRITE_W, "addr": 0, "data": 0}).as_bits()
    link._transact([frame(RChannel.CMD, w, seq=link.seq)], 0, status=True)
    assert link.connect()["hash"] == 0
    st = link.read_status()
    assert st["bad_frames"] == 0 and st["seq_errors"] == 0 and st["expect"] == link.seq
    # a damaged frame and an out-of-sequence one reach nothing, an unknown type neither; the
    # status counts them; the image sent next is still computed right
    link.connect()
    link.load(prog)
    good = image_frames(prog, b.test_x[0], link.seq, 64)[0]
    bad = bytearray(good)
    bad[6] ^= 0x10
    link._write(bytes(bad) + frame(RChannel.CMD, 0, seq=(link.seq + 5) & 0xFF)
                + frame(9, 0, seq=link.seq))
    st = link.read_status()
    assert (st["bad_frames"], st["seq_errors"]) == (2, 1) and st["expect"] == link.seq
    assert link.infer(b.test_x[0], 3).logits == _golden(b, 0, 3)[1]


def _faulty_run(direction, n, seed, rate=0.004, *, overlap=False, cfg=CFG):
    """``n`` images through a port that damages bytes; ``overlap``: three images at a time
    through ``infer_many`` (the next image in flight), at k=2."""
    b = tiny(images=n)
    port, faulty, link = _link(cfg, rate=rate, seed=seed, down=direction != "up",
                               up=direction != "down")
    link.retries = 6
    link.connect()
    prog = rs.compile_program(b, cfg)
    link.load(prog)
    faulty.armed = True
    good = detected = 0
    step = 3 if overlap else 1
    for i in range(0, n, step):
        idx = list(range(i, min(n, i + step)))
        ks = [2] * len(idx) if overlap else [1 + i % 3]
        try:
            got = (link.infer_many([b.test_x[j] for j in idx], 2) if overlap else
                   [link.infer(b.test_x[i], ks[0])])
        except (LinkError, TimeoutError):
            detected += 1
            link.info = None
            continue
        for j, k, r in zip(idx, ks, got):
            assert (r.cls, r.logits, r.k) == (*_golden(b, j, k), k), f"wrong result, image {j}"
            good += 1
    return faulty.total(), good, detected, link.link["retries"]


def test_faults_never_give_a_wrong_result():
    """Bytes flipped, dropped, duplicated, inserted both ways: right results or a LinkError."""
    faults, good, detected, retries = _faulty_run("both", 3, seed=3)
    assert faults >= 1 and good >= 1, (faults, good, detected, retries)


@pytest.mark.slow
@pytest.mark.parametrize("double_buffer", [False, True], ids=["single", "double"])
def test_faults_with_overlap_never_give_a_wrong_result(double_buffer):
    """The same with the next image in flight (on a single-buffered engine the next image waits
    in the bridge FIFO): answers in order, each right, or a LinkError; a fault repeats only the
    images not yet answered."""
    faults, good, detected, retries = _faulty_run(
        "both", 3, seed=5, overlap=True, cfg=replace(CFG, double_buffer=double_buffer))
    assert faults >= 1 and good >= 1, (faults, good, detected, retries)


@pytest.mark.slow
@pytest.mark.parametrize("direction", ["down", "up"])
def test_faults_never_give_a_wrong_result_many(direction):
    faults, good, detected, retries = _faulty_run(direction, 16, seed=11, rate=0.01)
    assert faults >= 5 and good >= 8 and retries >= 1, (faults, good, detected, retries)


@pytest.mark.slow
def test_faults_with_overlap_many():
    faults, good, detected, retries = _faulty_run(
        "both", 12, seed=13, rate=0.01, overlap=True, cfg=replace(CFG, double_buffer=True))
    assert faults >= 5 and good >= 6 and retries >= 1, (faults, good, detected, retries)


@pytest.mark.slow
def test_overlap_hides_the_link():
    """Issue #11: images sent two deep (``run_images(overlap=True)``) on a double-buffered engine,
    the host line slowed (80% idle cycles before each byte sent): every answer agrees with golden,
    in order, no retry, and the simulated time per image is below one image at a time."""
    b = tiny(images=3)
    per_image = {}
    for overlap in (False, True):
        port = AmaranthBytePort(ResidentSystem(replace(CFG, double_buffer=True), 100e6, None),
                                max_cycles=3000, gap=0.8)
        link = ResidentLink(port, timeout=60_000 * CYCLE, probe=3_000 * CYCLE)
        rep = run_images(link, b, [0, 1, 2, 1], 2, overlap=overlap)
        assert rep["all_agree"] and rep["link"]["retries"] == 0 and rep["overlap"] == overlap
        assert [r["image"] for r in rep["results"]] == [0, 1, 2, 1]
        per_image[overlap] = rep["port_seconds_per_image"] / CYCLE
    assert per_image[True] < 0.9 * per_image[False], per_image


@pytest.mark.slow
def test_tap_bank_image_over_the_uart_pins():
    """A one-channel image (packed into WRITE_IMG beats for the tap banks) through the UART pins,
    bit by bit."""
    cfg = ResidentConfig(rows=2, cols=16, nbits=3, abits=8, wdepth=512, ppdepth=64, fmdepth=256,
                         taps=9, tapdepth=64, max_layers=8, max_classes=4)
    b = tiny(input_shape=(1, 6, 6), images=1)
    port = AmaranthSerialPort(ResidentSystem(cfg, 100e6, 25_000_000), max_cycles=4000)
    link = ResidentLink(port, timeout=200_000 * CYCLE, probe=20_000 * CYCLE)
    info = link.connect()
    prog = rs.compile_program(b, info["cfg"])
    assert prog.taps
    link.load(prog)
    for k in (1, 3):
        r = link.infer(b.test_x[0], k)
        assert (r.cls, r.logits) == _golden(b, 0, k)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28)], ids=["digits", "mnist"])
def test_link_budget(shape):
    """Issue #11: the digits and the MNIST reference networks on the default 8x16 resident engine
    and bridge: bytes per image on the link at every k, both ways with framing, CRC and credits,
    <= image codes + 128 (the old framing, IMAGE frames of 64 codes, a credit per 64 bytes, full
    LOGITS messages, took 784 + 260.7 for MNIST)."""
    from test_resident import DIGITS, MNIST, chain_bundle

    b = chain_bundle(0, DIGITS if shape[1] == 8 else MNIST, input_shape=shape, nbits=8)
    prog = rs.compile_program(b, resident_config(rows=8, cols=16, bundle=b))
    br = ResidentBridge(prog.cfg)
    br._MustUse__silence = True
    image = shape[1] * shape[2]
    for k in range(1, 9):
        cost = link_cost(prog, credit_unit=br.credit_unit, max_payload=br.max_payload, k=k)
        assert cost["image_code_bytes"] == image
        assert cost["total"] <= image + 128, (k, cost)
    # the last LOGITS group holds 2 of 8 classes: 2 logits sent, not 8
    assert logit_groups(prog) == [32, 8]
    with_counters = link_cost(prog, counters=True, credit_unit=br.credit_unit,
                              max_payload=br.max_payload)
    assert with_counters["up"] == cost["up"] + len(prog.layers) * 11


@pytest.mark.slow
def test_policy_wrapper_behind_the_bridge():
    """ResidentSystem(engine="policy"): the identify reply says so, the SUMMARY messages are the
    wrapper's (wider), and a plain RUN through the wrapper still agrees with golden."""
    b = tiny()
    port = AmaranthBytePort(ResidentSystem(CFG, 100e6, None, engine="policy"), max_cycles=3000)
    link = ResidentLink(port, timeout=60_000 * CYCLE, probe=3_000 * CYCLE)
    info = link.connect()
    assert info["features"] == 1
    from progressivenn.hw.resident.policy import policy_summary_layout
    assert link.parser.lengths[0x10] == 1 + -(-policy_summary_layout(CFG).size // 8)
    prog = rs.compile_program(b, info["cfg"])
    link.load(prog)
    r = link.infer(b.test_x[0], 2)
    assert (r.cls, r.logits) == _golden(b, 0, 2)
