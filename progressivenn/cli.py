"""The ``pnn`` command line (alias ``progressivenn``): one subcommand per stage."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .commands import COMMANDS


class CliError(Exception):
    """A user error: printed as one line ``pnn: error: ...`` and exit status 2."""


def _modules():
    for name in COMMANDS:
        try:
            yield importlib.import_module(f"progressivenn.commands.{name}")
        except ModuleNotFoundError as e:  # a subcommand not written yet
            if e.name != f"progressivenn.commands.{name}":
                raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pnn",
        description="ProgressiveNN: train BWB networks, export bundles, generate and verify a "
                    "bit-serial accelerator, build it for FPGA boards.")
    parser.add_argument("--version", action="version", version=f"progressivenn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except (CliError, ValueError, FileNotFoundError, NotADirectoryError) as e:
        print(f"pnn {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pnn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
