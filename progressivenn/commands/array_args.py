"""The array-size options (``--rows``, ``--cols``, ``--pp-lanes``) declared once for the commands
that size an engine's PE array (``pnn verilog``, ``pnn build``). Not a subcommand."""

from __future__ import annotations

#: (EngineConfig field, option, metavar, help)
ARRAY_OPTIONS = (
    ("rows", "--rows", "R", "R: output channels computed in parallel"),
    ("cols", "--cols", "C", "C: reduction lanes (activations per cycle)"),
    ("pp_lanes", "--pp-lanes", "P", "post-processing lanes P, dividing R; 0: one per row (a result"
                                    " then takes R/P cycles and a table entry R/P words)"),
)


def add_array_arguments(p, defaults=None, *, override: str | None = None) -> None:
    """Add the array-size options to parser ``p``: with ``defaults`` (an EngineConfig) as their
    defaults, or, with ``override`` (e.g. ``"the board's"``), defaulting to None: "override
    <override> value"."""
    for field, opt, metavar, text in ARRAY_OPTIONS:
        if override is not None:
            p.add_argument(opt, dest=field, type=int, default=None, metavar=metavar,
                           help=f"{text}; default: {override}")
        else:
            value = getattr(defaults, field)
            shown = "one per row" if field == "pp_lanes" and not value else value
            p.add_argument(opt, dest=field, type=int, default=value, metavar=metavar,
                           help=f"{text} (default {shown})")
