"""Every command answers --help; usage mistakes exit with code 2."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from curate.cli import main


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from all_commands(command, (*prefix, name))


COMMANDS = list(all_commands(main))


def test_the_documented_commands_exist():
    names = {" ".join(c) for c in COMMANDS}
    assert {"run", "stats", "sql", "stages", "demo", "quality train", "detox train", "tokenizer train",
            "tokenizer extend", "tokenizer export-hf", "tokenize"} <= names


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


@pytest.mark.parametrize("args", [["run"], ["run", "-o", "x", "--bogus"], ["nonexistent"], ["stats"],
                                  ["tokenizer", "train", "--output", "x"]])
def test_usage_errors_exit_2(args):
    assert CliRunner().invoke(main, args).exit_code == 2
