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
