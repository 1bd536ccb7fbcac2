"""The examples of a `genrt` command's --help (its click epilog), as argument lists a test can run."""
from __future__ import annotations

import shlex

import click

from genrt.cli import main


def example_argvs(*command: str) -> list[list[str]]:
    """['genrt', 'faces', '-n', '16', ...] -> ['faces', '-n', '16', ...] for each example line of the command."""
    cmd: click.Command = main
    for name in command:
        cmd = cmd.commands[name]
    lines = [line.strip() for line in (cmd.epilog or "").splitlines() if line.strip().startswith("genrt ")]
    return [shlex.split(line, comments=True)[1:] for line in lines]
