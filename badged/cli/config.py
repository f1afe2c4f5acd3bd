"""`badged config …`: validate, show and describe the config-as-code tree."""

from __future__ import annotations

import json
from pathlib import Path

import click
import yaml

from ..config.schema import KIND_NAMES, all_schemas, kind_schema
from ..config.show import effective
from ..config.tree import load_tree
from . import Context, main, pass_ctx, user_errors


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
