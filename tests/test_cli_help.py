"""``--help`` shows the default of every option that has one, in every subcommand."""

import argparse

import pytest

from progressivenn.cli import build_parser


def _subparsers():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


@pytest.mark.parametrize("name", sorted(_subparsers()))
def test_help_shows_defaults(name):
    p = _subparsers()[name]
    text = " ".join(p.format_help().split())
    for action in p._actions:
        if (not action.option_strings or action.default is None or action.default is False
                or action.default == argparse.SUPPRESS   # a default of 0 is shown too
                or isinstance(action, argparse._HelpAction)):
            continue
        formatter = p._get_formatter()
        shown = formatter._expand_help(action) if action.help else ""
        assert "default" in shown.lower(), f"pnn {name} {action.option_strings[0]}: {shown!r}"
    assert "(default: %(default)s)" not in text


def test_array_options_declared_once():
    """``pnn verilog``, ``pnn build`` and ``pnn asic`` take the same array-size options
    (array_args): same names, destinations and help text; verilog defaults to EngineConfig's,
    build to the board's, asic to the bundle's or EngineConfig's."""
    from progressivenn.commands.array_args import ARRAY_OPTIONS
    from progressivenn.hw.isa import EngineConfig

    subs = _subparsers()
    for field, opt, _, text in ARRAY_OPTIONS:
        v, b = (next(a for a in subs[n]._actions if opt in a.option_strings)
                for n in ("verilog", "build"))
        assert v.dest == b.dest == field and v.help.startswith(text) and b.help.startswith(text)
        assert v.default == getattr(EngineConfig(), field) and b.default is None
        a = next(a for a in subs["asic"]._actions if opt in a.option_strings)   # as verilog
        assert a.dest == field and a.help.startswith(text) and a.default is None
    verilog_opts = {o for a in subs["verilog"]._actions for o in a.option_strings}
    asic_opts = {o for a in subs["asic"]._actions for o in a.option_strings}
    assert verilog_opts - asic_opts == {"--name", "--axis"}   # asic: every engine option
