"""The ``pnn`` command line (alias ``progressivenn``): one subcommand per stage."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import __version__
from .commands import COMMANDS


class CliError(Exception):
    """A user error: printed as one line ``pnn: error: ...`` and exit status 2."""


#: expected failures: bad input, a damaged file, an OS refusal (permission, read-only, disk full,
#: missing file). One line on stderr and exit status 2; ``--debug`` / ``PNN_DEBUG=1`` re-raise them.
EXPECTED = (CliError, ValueError, OSError, EOFError, MemoryError)


def describe(e: BaseException) -> str:
    """One line for an expected failure: an OS error names its file, others say their message."""
    if isinstance(e, OSError) and e.strerror and e.filename is not None:
        where = f"{e.filename} -> {e.filename2}" if e.filename2 else str(e.filename)
        return f"{where}: {e.strerror}"
    text = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, MemoryError):
        return f"out of memory ({text})"
    return text


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows every option's default, except where the help text already states it
    or there is none to show (flags, options without a default)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("default" in text.lower() or default is None or default is False  # not 0
                or default == argparse.SUPPRESS
                or isinstance(action, (argparse._StoreTrueAction, argparse._HelpAction,
                                       argparse._VersionAction))
                or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


def _modules():
    for name in COMMANDS:
        try:
            yield importlib.import_module(f"progressivenn.commands.{name}")
        except ModuleNotFoundError as e:  # a subcommand not written yet
            if e.name != f"progressivenn.commands.{name}":
                raise


def _docs_epilog() -> str | None:
    """Where the documentation the commands refer to (docs/*.md) is, checkout or wheel."""
    from .resources import docs_dir

    try:
        return (f"documentation (engine.md, bundle.md, boards.md, api.md, integration.md, ...): "
                f"{docs_dir()}; Python API: import progressivenn as pnn")
    except FileNotFoundError:
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pnn",
        description="ProgressiveNN: train BWB networks, export bundles, generate and verify a "
                    "bit-serial accelerator, build it for FPGA boards.",
        epilog=_docs_epilog())
    parser.add_argument("--version", action="version", version=f"progressivenn {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of a failure (also PNN_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP,
                           formatter_class=HelpFormatter)
        mod.add_arguments(p)
        for action in p._actions:           # options without help text still show their default
            if action.help is None and action.option_strings and action.default not in (
                    None, False, argparse.SUPPRESS):
                action.help = "(default: %(default)s)"
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the Python traceback of a failure (also PNN_DEBUG=1)")
        p.set_defaults(_run=mod.run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    debug = args.debug or os.environ.get("PNN_DEBUG", "") not in ("", "0")
    try:
        return int(args._run(args) or 0)
    except EXPECTED as e:
        if debug:
            raise
        print(f"pnn {args.command}: error: {describe(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"pnn {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: still one line, the traceback one flag away
        if debug:
            raise
        print(f"pnn {args.command}: internal error: {type(e).__name__}: {describe(e)} (rerun"
              f" with --debug for the traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
