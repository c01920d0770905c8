"""The ``fastnn`` command line: ``fastnn info`` (and the sub-commands listed in COMMANDS)."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

#: sub-command -> module exposing ``add_arguments(parser)``, ``run(args) -> int`` and ``HELP``.
COMMANDS = {
    "info": "fastnn.cli.info",
    "bench": "fastnn.cli.bench",
    "train": "fastnn.cli.train",
    "tune": "fastnn.cli.tune",
    "cache": "fastnn.cli.cache",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastnn", description="fastnn: the course's NumPy neural-network kernels on fast backends"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
