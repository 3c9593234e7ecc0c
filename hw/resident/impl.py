"""How a resident engine is mapped onto an FPGA's memories: options that change the netlist, never
the behaviour (every word in and out, every cycle count, stays the same).

:class:`ResidentConfig` says what the engine computes and is sent to the host in the identify
reply; :class:`ResidentImpl` only says where its memories go, so the host never sees it and the
default (``ResidentImpl()``) elaborates exactly the RTLIL of before. A board picks it
(``BoardSpec.resident_impl``, ``docs/boards.md``): the iCE40UP5K's 30 block RAMs cannot hold the
weights and the program together, its four 256-kbit SPRAMs can hold the weights.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ResidentImpl"]


@dataclass(frozen=True)
class ResidentImpl:
    """Memory mapping of one resident engine build.

    ``prog_ram``: the program memory (``max_layers`` descriptors) carries the Yosys attribute
    ``ram_style = "block"``, so it is built of block RAM instead of ``max_layers x`` descriptor-bit
    flip-flops and their read multiplexer (Yosys' cost model picks flip-flops for so shallow a
    memory).

    ``weights_single_port``: the weight memory has one address for its write and read ports
    (the command's while a WRITE_W is accepted, else the window generator's; read disabled
    during the write), so Yosys can map it to single-port RAM: ``synth_ice40 -spram`` puts it
    in SPRAM (16 bits x 16 K each); it is tagged ``ram_style = "huge"``. Weights are only
    written while the engine is idle, so reads never see the difference.

    ``desc_from_ram`` (needs ``prog_ram``; not with ``double_buffer``): no descriptor register;
    the layer's descriptor is the program memory's read data (its address, the layer number, is
    held through the layer; the data arrives one cycle earlier than the register's, while
    nothing reads it). Saves a descriptor's width of flip-flops (265 at 2 x 8).

    ``pp_read_late``: the post-processing table is read one cycle later and its read data goes
    to the post-processing unit directly instead of through a register of ``pp_width`` bits
    (the same entry in the same cycle; tables are only written while idle).

    ``collisions_undefined`` (a synthesis option: the RTL is the same): the read ports of the
    program, table and feature-map memories are marked for Yosys as returning undefined data when
    a write hits the same address in the same cycle (``COLLISION_X_MASK``), so it adds no logic
    to give the old word (Amaranth's read ports promise it; block RAM does not: a copy of every
    write, an address compare and a multiplexer per read bit, about 700 flip-flops at 2 x 8). The
    engine never reads a word in the cycle it writes it: programs and tables are written only
    while idle (and the descriptor is not used then), a layer writes only its own feature-map
    region and reads earlier ones, the next image goes to the other buffer, and READ_FM reads
    while nothing is written. A hand-made program whose layer writes the region it reads would
    read undefined words on the board.

    ``pp_shared`` (needs ``pp_read_late``; rows even, no ``cfg.adds``): ``rows/2``
    post-processing lanes instead of ``rows``. An output group's accumulators go through them
    in two halves: rows ``0 .. R/2-1`` in the cycle the group leaves the PE array (the lanes'
    input register is left out: latency ``PostProc.LATENCY - 1``), rows ``R/2 .. R-1`` the
    cycle after from a holding register (the table entry is read again in that cycle), so the
    last result of a layer is written in the same cycle as with one lane per row and every
    cycle count stays the same. The write-back, the logits and the argmax take one half per
    cycle. Needs two cycles between groups leaving the array: ``planes x nchunks >= 2`` for
    every convolution (every 3x3 or wider kernel, every layer with more than ``cols`` input
    channels, any layer at ``k >= 2``); a one-chunk convolution (a 1x1 kernel, or a linear
    layer on a 1x1 map, over at most ``cols`` channels) run at ``k = 1`` would lose outputs, so
    the engine requires ``ResidentConfig(pp_shared=True)`` with it: the identify reply carries
    the field and the host refuses such a RUN in one line naming the layer
    (``sim.resident.run_beats``: ``resident: k = 1 would lose outputs of conv1 ...``).

    ``pp_merge_stages``: the post-processing unit merges two pairs of its stages
    (``PostProc(merge_stages=True)``: latency 2 less, about 200 flip-flops less per lane, longer
    paths); the layer's drain is held 2 cycles longer, so every cycle count stays the same.

    ``results_ram`` (needs ``pp_shared``): the logits and the per-layer busy counters are kept
    in a single-port memory of ``rows/2 * obits``-bit words (``ram_style = "huge"``: SPRAM with
    ``synth_ice40 -spram``; word ``2g + h`` is half h of logit group g, word ``2 *
    logit_groups + i`` the busy count of layer i) instead of flip-flops; it is written while the
    RUN computes (a logit half per cycle, a busy count when its layer ends) and read while the
    answer is sent (two reads per LOGITS beat, one per COUNTER beat: the beats are offered a
    few cycles apart, their words and the SUMMARY's cycle count are the same).

    ``narrow_tags``: the output group and lane slice carried along the chunk pipeline (stages
    S1, S2, the PE array and the post-processing) are as wide as the configuration needs
    (``g < max(fmdepth * cols/rows, logit_groups)``: every output word of a layer lies in the
    feature map, every logit group in the logit file; the slice ``< cols/rows``) instead of 12
    and 8 bits.

    ``lean_bridge`` (:class:`.bridge.ResidentBridge`): a packed image beat (WRITE_FM /
    WRITE_IMG from IMAGE frames) drives only the command's op, address and first ``cols *
    abits`` data bits; the data bits above (which those ops ignore) come from the frame payload
    register instead of being forced to 0, so no multiplexer is built for them.

    ``write_regs``: every memory written by commands (weights, tables, program, feature map,
    tap banks) takes its write address, data and enable from its own register, loaded when a
    command for that memory is accepted (a copy per memory, each with its own load enable, so
    synthesis keeps them apart and the placer can put each beside its block RAMs); the word is
    written one cycle after the command is accepted (a feature-map image word waits in its
    register while a layer writes the port, at most until the next image word is accepted,
    which only happens while the port is free). Nothing reads a word that early: a RUN reads
    its first descriptor two cycles after it is accepted, a READ_FM reads one cycle after, and
    image words of the next image (``double_buffer``) go to the buffer the RUN does not read;
    command acceptance, words and cycle counts stay the same. The registers are not reset by
    an engine reset (like the memories), so a write in flight always lands.
    """

    prog_ram: bool = False
    weights_single_port: bool = False
    desc_from_ram: bool = False
    pp_read_late: bool = False
    collisions_undefined: bool = False
    pp_shared: bool = False
    pp_merge_stages: bool = False
    results_ram: bool = False
    narrow_tags: bool = False
    lean_bridge: bool = False
    write_regs: bool = False

    def __post_init__(self):
        for name in ("prog_ram", "weights_single_port", "desc_from_ram", "pp_read_late",
                     "collisions_undefined", "pp_shared", "pp_merge_stages", "results_ram",
                     "narrow_tags", "lean_bridge", "write_regs"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, not {getattr(self, name)!r}")
        if self.desc_from_ram and not self.prog_ram:
            raise ValueError("desc_from_ram needs prog_ram (block RAM read data is registered)")
        if self.pp_shared and not self.pp_read_late:
            raise ValueError("pp_shared needs pp_read_late (the table entry is read again for "
                             "the second half)")
        if self.results_ram and not self.pp_shared:
            raise ValueError("results_ram needs pp_shared (a logit word is half a group)")
