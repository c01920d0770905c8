"""The ``fastnn`` command line: ``fastnn info`` (and the sub-commands listed in COMMANDS).

``fastnn --version`` prints the version; ``python -m fastnn`` is the same command. A wrong
option of a sub-command is reported with that sub-command's usage (``usage: fastnn train ...``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import List, Optional

#: sub-command -> module exposing ``add_arguments(parser)``, ``run(args) -> int`` and ``HELP``.
COMMANDS = {
    "info": "fastnn.cli.info",
    "bench": "fastnn.cli.bench",
    "train": "fastnn.cli.train",
    "tune": "fastnn.cli.tune",
    "cache": "fastnn.cli.cache",
    "check": "fastnn.cli.check",
}


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="fastnn", description="fastnn: the course's NumPy neural-network kernels on fast backends"
    )
    parser.add_argument("--version", action="version", version=f"fastnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _parser=p)
    return parser


def parse(parser: argparse.ArgumentParser, argv: Optional[List[str]] = None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, except that arguments a sub-command does not know are reported
    by that sub-command's parser (its usage line), not the top-level one (argparse's default:
    sub-parsers parse with ``parse_known_args`` and leave the complaint to the top)."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        owner = getattr(args, "_parser", None) or parser
        owner.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parse(parser, argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `fastnn info | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that Python's final flush does not complain
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
