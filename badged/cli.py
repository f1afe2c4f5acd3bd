"""The `badged` command line: parse, call a service, print. No logic lives here.

Exit codes (DESIGN.md §4): 0 ok, 1 user or input error, 2 usage, 3 partial, 4 daemon
unreachable. A user error is one clear message on stderr, never a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import yaml

from . import __version__, logs
from .config.errors import ConfigError, SecretError
from .config.host import Host, host_config_path, load_host
from .config.schema import KIND_NAMES, all_schemas, kind_schema
from .config.show import effective
from .config.tree import load_tree
from .store.db import StoreError

EXIT_OK, EXIT_USER, EXIT_USAGE, EXIT_PARTIAL, EXIT_UNREACHABLE = 0, 1, 2, 3, 4

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = EXIT_USER) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(code)


def user_errors(func: F) -> F:
    """Turn the known user-facing errors into a message and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            for issue in exc.issues:
                click.echo(str(issue), err=True)
            fail(_summary(exc), EXIT_USER)
        except (SecretError, StoreError) as exc:
            fail(f"error: {exc}")

    return wrapper  # type: ignore[return-value]


def _summary(exc: ConfigError) -> str:
    files = len({i.file for i in exc.issues})
    errors = len(exc.issues)
    return f"{errors} error{'s' * (errors != 1)} in {files} file{'s' * (files != 1)}"


class Context:
    """What every command may need: the host file, loaded on first use."""

    def __init__(self, host_config: str | None) -> None:
        self.host_config_path = host_config_path(host_config)
        self._host: Host | None = None

    @property
    def host(self) -> Host:
        if self._host is None:
            self._host = load_host(self.host_config_path)
        return self._host


pass_ctx = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="badged")
@click.option("--host-config", metavar="FILE", envvar=None,
              help="Host file (default: $BADGED_HOST_CONFIG, else /etc/badged/badged.yaml).")
@click.pass_context
def main(ctx: click.Context, host_config: str | None) -> None:
    """badged: badge cards of a school, linked to their holders and to the CROUS."""
    ctx.obj = Context(host_config)


# --- config --------------------------------------------------------------------------------

@main.group()
def config() -> None:
    """Validate, show and describe the config-as-code tree."""


@config.command("validate")
@click.argument("tree", required=False, type=click.Path(file_okay=False, path_type=Path))
@pass_ctx
@user_errors
def config_validate(ctx: Context, tree: Path | None) -> None:
    """Check a config tree (default: the host file's tree and school).

    Prints only errors, as FILE:LINE:COL: path: message, and a one-line summary. Needs no
    reader, network or credentials.
    """
    if tree is None:
        host = ctx.host
        loaded = load_tree(host.tree)
        loaded.site(host.config.school)
    else:
        loaded = load_tree(tree)
    counts = ", ".join(f"{len(getattr(loaded, attr))} {label}" for attr, label in (
        ("schools", "schools"), ("comues", "COMUEs"), ("crous", "CROUS"),
        ("card_profiles", "card profiles"), ("layouts", "layouts"), ("tariffs", "tariffs")))
    click.echo(f"{loaded.root}: valid ({counts})")


@config.command("show")
@click.option("--school", "school_id", metavar="ID", help="School id (default: the host's).")
@click.option("--tree", type=click.Path(file_okay=False, path_type=Path),
              help="Config tree (default: the host file's).")
@click.option("--json", "as_json", is_flag=True, help="JSON output (stable).")
@pass_ctx
@user_errors
def config_show(ctx: Context, school_id: str | None, tree: Path | None, as_json: bool) -> None:
    """Print the effective config of one school, every reference resolved, secrets redacted."""
    root = tree if tree is not None else ctx.host.tree
    if school_id is None:
        school_id = ctx.host.config.school
    data = effective(load_tree(root).site(school_id))
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)


@config.command("schema")
@click.option("--kind", type=click.Choice(KIND_NAMES),
              help="One file kind only (default: all, each under $defs).")
def config_schema(kind: str | None) -> None:
    """Print the JSON Schema of the config files (for editors and CI)."""
    schema = kind_schema(kind) if kind else all_schemas()
    click.echo(json.dumps(schema, indent=2, ensure_ascii=False))


# --- daemon --------------------------------------------------------------------------------

@main.command("run")
@pass_ctx
@user_errors
def run(ctx: Context) -> None:
    """Run the daemon of this host's school (systemd's ExecStart)."""
    from .daemon.runtime import run as run_daemon

    host = ctx.host
    logs.setup(host.config.log_level)
    sys.exit(run_daemon(host))
