"""The ``rtperformer`` command line: one sub-command per module in rtperformer/commands/.

Each command module defines ``HELP`` (one line, shown by ``rtperformer --help``), ``add_arguments(parser)``
and ``run(args) -> int``. Command modules import only the standard library at the top (everything else
inside ``run``), so reading every ``HELP`` keeps ``rtperformer --help`` fast and a command never pays for
another's imports. A :class:`UserError` anywhere becomes one stderr line and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from rtperformer.errors import UserError

COMMANDS = ("render", "serve", "devices", "data", "train", "eval", "export", "bench")


def _module(name: str):
    return importlib.import_module(f"rtperformer.commands.{name}")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtperformer", description="A streaming PerformanceNet you can play from a MIDI keyboard."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name in COMMANDS:
        mod = _module(name)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        if name == chosen:
            mod.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return int(_module(args.command).run(args) or 0)
    except UserError as exc:
        print(f"rtperformer {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
