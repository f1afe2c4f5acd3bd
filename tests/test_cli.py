"""The CLI contract: --help everywhere, --version, usage errors exit 2."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from badged import __version__
from badged.cli import main


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):  # the top level loads its commands lazily
        cmd = group.get_command(ctx, name)
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, (*prefix, name))


@pytest.mark.parametrize("command", [(), *all_commands(main)], ids=" ".join)
def test_help_everywhere(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_usage_error_exits_2() -> None:
    assert CliRunner().invoke(main, ["config", "nope"]).exit_code == 2
    assert CliRunner().invoke(main, ["config", "show", "--bogus"]).exit_code == 2


@pytest.mark.parametrize("command", [
    ["status"], ["doctor"], ["enrol"], ["card", "read"], ["card", "show"],
    ["card", "set-state"], ["card", "simulate"], ["reader", "list"],
    ["exchange", "plan"], ["exchange", "run"], ["exchange", "list"], ["exchange", "retry"],
    ["exchange", "resend"], ["population", "import"],
])
def test_everyday_commands_show_examples_in_their_help(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    examples = result.stdout.split("Example", 1)
    assert len(examples) == 2, result.stdout
    assert f"badged {' '.join(command)}" in examples[1], result.stdout
