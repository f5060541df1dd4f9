"""The command line: each command's one-line help comes from its module, and --help stays light."""

import subprocess
import sys

from rtperformer import cli


def test_help_lists_each_commands_own_help_line():
    import argparse

    parser = cli.build_parser(["--help"])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    shown = {c.dest: c.help for c in sub._choices_actions}
    assert shown == {name: cli._module(name).HELP for name in cli.COMMANDS}
    assert all(callable(cli._module(n).run) for n in cli.COMMANDS)


def test_help_imports_neither_numpy_nor_torch():
    code = ("import sys\nfrom rtperformer import cli\ncli.build_parser(['--help']).format_help()\n"
            "print(sorted(m for m in ('numpy', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
