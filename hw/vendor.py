"""Collateral for dropping the generated engine into someone else's flow (``docs/integration.md``).

Given the port list of one generated engine (``generate.engine_ports``) this module writes, per
configuration and module-name prefix:

- ``<top>_axis.v``: with ``--axis``, an AXI4-Stream wrapper (``s_axis_cmd_t*``, ``s_axis_data_t*``,
  ``m_axis_res_t*``; TDATA padded to whole bytes) carrying Vivado ``X_INTERFACE_INFO`` attributes;
- ``<top>_inst.v``: an instantiation template of the top;
- ``<top>.sdc`` / ``<top>.xdc``: timing constraints with this configuration's real port widths and
  the combinational input-to-output paths that Yosys finds in the netlist (:func:`comb_paths`);
- ``<top>.core``: a FuseSoC CAPI2 core file;
- ``<top>.vlt``: the Verilator lint waivers of Amaranth's output (:data:`LINT_WAIVERS`), so that
  ``verilator --lint-only -Wall <top>.vlt <top>.v`` is clean.

Standard library only, except :func:`comb_paths` (amaranth's bundled Yosys).
"""

from __future__ import annotations

import json

__all__ = ["AXIS_STREAMS", "LINT_WAIVERS", "axis_name", "axis_wrapper", "inst_template", "sdc",
           "xdc", "fusesoc_core", "verilator_waivers", "comb_paths"]

#: engine stream -> (AXI4-Stream interface name, Vivado mode)
AXIS_STREAMS = {"cmd": ("s_axis_cmd", "slave"), "data": ("s_axis_data", "slave"),
                "res": ("m_axis_res", "master")}
_AXIS_SUFFIX = {"payload": "tdata", "valid": "tvalid", "ready": "tready"}

#: Verilator -Wall warnings of Amaranth's Verilog, each waived for the generated file only, with
#: the reason (repeated in ``docs/integration.md``).
LINT_WAIVERS = {
    "PROCASSINIT": "Amaranth gives every register and combinational signal its reset/default value "
                   "in its declaration and then assigns it in a process; the initial value is the "
                   "intended power-up value, not a second driver.",
    "UNUSEDSIGNAL": "Amaranth keeps named intermediate signals and whole buses of which only some "
                    "bits are read (e.g. command fields an op ignores); synthesis removes them.",
    "WIDTHEXPAND": "Amaranth's netlist is width-exact; it leaves zero/sign extension of narrower "
                   "operands to Verilog's context-determined width rules, which do exactly that.",
    "WIDTHTRUNC": "the same in the other direction: assignments that drop high bits which Amaranth's "
                  "arithmetic has already proven unused (e.g. the top bit of a sum).",
    "CASEINCOMPLETE": "case statements without a default: every output of the process is assigned "
                      "its default before the case, so missing items keep the default (no latch).",
    "DECLFILENAME": "the submodules (``<top>.pe``, ...) live in the same file as the top.",
}


def _vrange(width: int) -> str:
    return f"[{width - 1}:0] " if width > 1 else ""


def _bytes(width: int) -> int:
    return 8 * -(-width // 8)


def axis_name(port: str) -> str:
    """``cmd__payload`` -> ``s_axis_cmd_tdata``; other ports keep their names."""
    stream, _, member = port.partition("__")
    if stream in AXIS_STREAMS and member in _AXIS_SUFFIX:
        return f"{AXIS_STREAMS[stream][0]}_{_AXIS_SUFFIX[member]}"
    return port


def axis_ports(ports: list[dict]) -> list[dict]:
    """The wrapper's port list: AXI names, TDATA widths rounded up to whole bytes."""
    out = []
    for p in ports:
        q = dict(p, name=axis_name(p["name"]), core=p["name"])
        if q["name"].endswith("_tdata"):
            q["width"] = _bytes(p["width"])
        out.append(q)
    return out


def axis_wrapper(top: str, core: str, ports: list[dict]) -> str:
    """Verilog of module ``top``: the core ``core`` with AXI4-Stream port names and Vivado
    interface attributes. No logic but wiring (latency 0); unused TDATA pad bits of the slave
    streams are ignored, those of ``m_axis_res_tdata`` are zero."""
    busifs = ":".join(name for name, _ in AXIS_STREAMS.values())
    decls, conns, pads = [], [], []
    for p in axis_ports(ports):
        attr = ""
        if p["name"] == "clk":
            attr = (f'(* X_INTERFACE_INFO = "xilinx.com:signal:clock:1.0 clk CLK", '
                    f'X_INTERFACE_PARAMETER = "ASSOCIATED_BUSIF {busifs}, ASSOCIATED_RESET rst" *) ')
        elif p["name"] == "rst":
            attr = ('(* X_INTERFACE_INFO = "xilinx.com:signal:reset:1.0 rst RST", '
                    'X_INTERFACE_PARAMETER = "POLARITY ACTIVE_HIGH" *) ')
        elif p["name"] != p["core"]:
            intf = p["name"].rsplit("_", 1)[0]
            attr = (f'(* X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 {intf} '
                    f'{p["name"].rsplit("_", 1)[1].upper()}" *) ')
        decls.append(f"  {attr}{p['dir']} wire {_vrange(p['width'])}{p['name']}")
        core_w = next(q["width"] for q in ports if q["name"] == p["core"])
        if p["width"] != core_w:
            sel = f"{p['name']}[{core_w - 1}:0]"
            if p["dir"] == "output":
                pads.append(f"  assign {p['name']}[{p['width'] - 1}:{core_w}] = "
                            f"{p['width'] - core_w}'d0;")
                sel = f"{p['name']}[{core_w - 1}:0]"
            conns.append(f"    .{p['core']}({sel})")
        else:
            conns.append(f"    .{p['core']}({p['name']})")
    unused = [p["name"] for p in axis_ports(ports)
              if p["dir"] == "input" and p["width"] != next(q["width"] for q in ports
                                                             if q["name"] == p["core"])]
    lines = [f"// {top}: {core} with AXI4-Stream port names (generated by `pnn verilog --axis`).",
             "// Wiring only: no registers, latency 0. TDATA widths are rounded up to whole bytes;",
             "// the pad bits of the slave streams are ignored, those of m_axis_res_tdata are 0.",
             "`default_nettype none"]
    if unused:
        lines.append("/* verilator lint_off UNUSEDSIGNAL */ // the TDATA pad bits: "
                     + ", ".join(unused))
    lines.append(f"module {top} (")
    lines.append(",\n".join(decls))
    lines.append(");")
    if unused:
        lines.append("/* verilator lint_on UNUSEDSIGNAL */")
    lines += pads
    lines.append(f"  {core} u_core (")
    lines.append(",\n".join(conns))
    lines.append("  );")
    lines.append("endmodule")
    lines.append("`default_nettype wire")
    return "\n".join(lines) + "\n"


def inst_template(top: str, ports: list[dict]) -> str:
    """A Verilog instantiation template: wire declarations and the instance of ``top``."""
    lines = [f"// Instantiation template of {top} (generated by `pnn verilog`); copy into your",
             "// design and connect. A stream beat moves on a rising clk edge where valid and",
             "// ready are both high; rst is synchronous, active high.",
             ""]
    for p in ports:
        if p["name"] not in ("clk", "rst"):
            lines.append(f"wire {_vrange(p['width'])}{top}_{p['name']};"
                         f"{'':<4}// {p['dir']}, {p['width']} bit(s)")
    lines.append("")
    lines.append(f"{top} u_{top} (")
    conns = []
    for p in ports:
        net = {"clk": "clk", "rst": "rst"}.get(p["name"], f"{top}_{p['name']}")
        conns.append(f"  .{p['name']}({net})")
    lines.append(",\n".join(conns))
    lines.append(");")
    return "\n".join(lines) + "\n"


def _port_table(ports: list[dict]) -> list[str]:
    return [f"#   {p['name']:<20} {p['dir']:<6} {p['width']}" for p in ports]


def _io_groups(ports: list[dict]) -> tuple[str, str]:
    def names(direction):
        return " ".join(p["name"] if p["width"] == 1 else f"{p['name']}[*]"
                        for p in ports if p["dir"] == direction and p["name"] != "clk")
    return names("input"), names("output")


def _constraints(top: str, ports: list[dict], paths: list[list[str]], period_ns: float,
                 vivado: bool) -> str:
    ins, outs = _io_groups(ports)
    head = [f"# {top}.{'xdc' if vivado else 'sdc'} -- timing constraints of {top} (generated by "
            "`pnn verilog` for this configuration).",
            "#",
            "# ONE synchronous clock domain: every register and memory port is clocked by clk "
            "(rising edge);",
            "# rst is a SYNCHRONOUS, active-high reset (synchronize it if it comes from a pin or "
            "another domain;",
            "# do not false-path it). No multicycle or false paths inside the core.",
            "#",
            "# Ports of this configuration (name, direction, width in bits):"]
    head += _port_table(ports)
    head.append("#")
    if paths:
        head.append("# Combinational input -> output paths through the core (found by Yosys in "
                    "this netlist): an")
        head.append("# output below depends on the input in the same cycle, so the logic around "
                    "the core must")
        head.append("# not close a loop through them; they are timed by the I/O budgets below.")
        head += [f"#   {a} -> {b}" for a, b in paths]
    else:
        head.append("# Combinational input -> output paths through the core: none (every output "
                    "is a register).")
    head.append("#")
    head.append("# Set the period to your target. Used inside your design only the clock matters; "
                "the I/O")
    head.append("# budgets (40% of the period outside the core) matter when the ports are device "
                "pins (out of context).")
    body = []
    if vivado:
        budget = f"{0.4 * period_ns:.3f}"
        body.append(f"create_clock -name {top}_clk -period {period_ns:.3f} [get_ports clk]")
        body.append(f"set_input_delay  -clock {top}_clk -max {budget} [get_ports {{{ins}}}]")
        body.append(f"set_input_delay  -clock {top}_clk -min 0.000 [get_ports {{{ins}}}]")
        body.append(f"set_output_delay -clock {top}_clk -max {budget} [get_ports {{{outs}}}]")
        body.append(f"set_output_delay -clock {top}_clk -min 0.000 [get_ports {{{outs}}}]")
    else:
        body.append(f"set CLK_PERIOD_NS {period_ns:.3f}")
        body.append(f"create_clock -name {top}_clk -period $CLK_PERIOD_NS [get_ports clk]")
        body.append("set IO_BUDGET [expr {0.4 * $CLK_PERIOD_NS}]")
        body.append(f"set_input_delay  -clock {top}_clk -max $IO_BUDGET [get_ports {{{ins}}}]")
        body.append(f"set_input_delay  -clock {top}_clk -min 0.0        [get_ports {{{ins}}}]")
        body.append(f"set_output_delay -clock {top}_clk -max $IO_BUDGET [get_ports {{{outs}}}]")
        body.append(f"set_output_delay -clock {top}_clk -min 0.0        [get_ports {{{outs}}}]")
    return "\n".join(head + [""] + body) + "\n"


def sdc(top, ports, paths, period_ns: float = 10.0) -> str:
    """SDC (Quartus, Libero, Radiant, OpenSTA) for ``top`` with ``ports`` and comb ``paths``."""
    return _constraints(top, ports, paths, period_ns, vivado=False)


def xdc(top, ports, paths, period_ns: float = 10.0) -> str:
    """XDC (Vivado): the same constraints with literal numbers."""
    return _constraints(top, ports, paths, period_ns, vivado=True)


def fusesoc_core(top: str, files: list[str], description: str) -> str:
    """A FuseSoC CAPI2 ``.core`` naming the Verilog files, constraints, lint waivers and top."""
    verilog = "\n".join(f"      - {f}: {{file_type: verilogSource}}" for f in files)
    return f"""CAPI=2:
# generated by `pnn verilog`; `fusesoc library add {top} <this folder>` then
# `fusesoc run --target=lint progressivenn:pnn:{top}`
name: progressivenn:pnn:{top}:0.1.0
description: "{description}"

filesets:
  rtl:
    files:
{verilog}
  lint_waivers:
    files:
      - {top}.vlt: {{file_type: vlt}}
  sdc:
    files:
      - {top}.sdc: {{file_type: SDC}}
  xdc:
    files:
      - {top}.xdc: {{file_type: xdc}}

targets:
  default: &default
    filesets: [rtl]
    toplevel: {top}
  lint:
    <<: *default
    default_tool: verilator
    filesets: [rtl, lint_waivers]
    tools:
      verilator:
        mode: lint-only
        verilator_options: [-Wall]
  synth:
    <<: *default
    default_tool: vivado
    filesets: [rtl, xdc]
"""


def verilator_waivers(top: str, files: list[str]) -> str:
    """A Verilator configuration file waiving :data:`LINT_WAIVERS` in the generated ``files``
    only (each rule with its reason)."""
    lines = ["`verilator_config",
             f"// Lint waivers of {top} (generated by `pnn verilog`); usage (note the .vlt",
             f"// first): verilator --lint-only -Wall {top}.vlt {' '.join(files)}",
             "// Each rule is waived in the generated files only, for the reason given."]
    for rule, why in LINT_WAIVERS.items():
        lines.append(f"// {rule}: {why}")
        for f in files:
            lines.append(f'lint_off -rule {rule} -file "*/{f}"')
            lines.append(f'lint_off -rule {rule} -file "{f}"')
    return "\n".join(lines) + "\n"


# ---- combinational paths ---------------------------------------------------------------------

_SEQ_PREFIXES = ("$dff", "$sdff", "$adff", "$aldff", "$dffsr", "$ff", "$_DFF", "$_SDFF")


def comb_paths(rtlil_text: str, top: str) -> list[list[str]]:
    """``[input, output]`` port pairs joined by a purely combinational path in ``top``, given the
    design as RTLIL (``amaranth.back.rtlil.convert``).

    Yosys (amaranth's) flattens the design; the bit-level net graph is walked from every input bit
    through combinational cells (each input of a cell reaches each of its outputs, a conservative
    structural reading, as static timing sees it), stopping at flip-flops and synchronous memory
    read ports."""
    from amaranth._toolchain.yosys import find_yosys

    yosys = find_yosys(lambda ver: ver >= (0, 40))    # the one amaranth's Verilog backend uses
    script = (f"read_rtlil <<rtlil\n{rtlil_text}\nrtlil\nhierarchy -top {top}\nproc\n"
              f"flatten\nopt_clean\nwrite_json\n")
    text = yosys.run(["-q", "-"], script, ignore_warnings=True)
    netlist = json.loads(text[text.index("{"):])
    mod = netlist["modules"][top]
    fanout: dict[int, set[int]] = {}
    for cell in mod["cells"].values():
        ctype, conns, dirs = cell["type"], cell["connections"], cell["port_directions"]
        if ctype.startswith(_SEQ_PREFIXES):
            continue
        if ctype.startswith("$mem"):
            params = cell["parameters"]
            nrd = int(str(params.get("RD_PORTS", "0")), 2)
            clk_en = str(params.get("RD_CLK_ENABLE", "0" * max(nrd, 1)))
            if nrd == 0 or "0" not in clk_en[-nrd:]:
                continue              # every read port synchronous: no combinational path
            srcs = [b for b in conns.get("RD_ADDR", []) if isinstance(b, int)]
            dsts = [b for b in conns.get("RD_DATA", []) if isinstance(b, int)]
        else:
            srcs = [b for p, bits in conns.items() if dirs.get(p) == "input"
                    for b in bits if isinstance(b, int)]
            dsts = [b for p, bits in conns.items() if dirs.get(p) == "output"
                    for b in bits if isinstance(b, int)]
        for s in srcs:
            fanout.setdefault(s, set()).update(dsts)
    # nets with several names are one bit id already; outputs driven straight by inputs too
    out_bits = {}
    for name, port in mod["ports"].items():
        if port["direction"] == "output":
            for b in port["bits"]:
                if isinstance(b, int):
                    out_bits.setdefault(b, set()).add(name)
    pairs = set()
    for name, port in mod["ports"].items():
        if port["direction"] != "input" or name == "clk":
            continue
        seen = set()
        todo = [b for b in port["bits"] if isinstance(b, int)]
        while todo:
            b = todo.pop()
            if b in seen:
                continue
            seen.add(b)
            for o in out_bits.get(b, ()):
                pairs.add((name, o))
            todo.extend(fanout.get(b, ()))
    return [list(p) for p in sorted(pairs)]
