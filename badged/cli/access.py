"""`badged access export`: the cards for the door systems (TIL, P2S, Synchronic, generic)."""

from __future__ import annotations

import json
from typing import Any

import click

from .. import clock
from ..access.operations import export_names, plan_exports, run_exports
from . import Context, in_daemon_or_here, main, pass_ctx, user_errors


@main.group("access")
def access_group() -> None:
    """Door-system exports (contrôle d'accès): the valid and blocked cards."""


def _print_plan(p: dict[str, Any], *, dry_run: bool) -> None:
    click.echo(f"{p['export']} ({p['format']}) → {p['destination']}: {p['cards']} card(s), "
               f"{p['valid']} valid, {p['blocked']} blocked")
    counts = ", ".join(f"{len(v)} {k}" for k, v in p["changes"].items() if v)
    click.echo(f"  since the last export: {counts or 'no change'}")
    for what, items in p["changes"].items():
        for item in items:
            state = f" ({item['state']})" if item["state"] else ""
            click.echo(f"    {what} {item['csn']} of {item['person']}{state}")
    verb = "would write" if dry_run else "wrote"
    if p["unchanged"] and p["format"] == "p2s":
        click.echo("  no card to update: no file " + ("would be " if dry_run else "") +
                   "written")
    elif p["unchanged"]:
        click.echo("  identical to the previous export: nothing " +
                   ("would be " if dry_run else "") + "rewritten")
    elif dry_run or p.get("written"):
        for f in p["files"]:
            click.echo(f"  {verb} {f['name']} ({f['bytes']} bytes)")


@access_group.command("export")
@click.argument("name", required=False)
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@click.option("--full", is_flag=True,
              help="Write every card again (P2S: not only the changes; others: even if "
                   "identical to the previous export; a folder already holding these very "
                   "bytes keeps its file).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@user_errors
def access_export(ctx: Context, name: str | None, dry_run: bool, full: bool,
                  as_json: bool) -> None:
    """Export the cards to the door systems now (every export of the school, or NAME)."""
    site = ctx.host.load_site()
    names = export_names(site, name)
    now = clock.now()
    if dry_run:
        plans = [p.to_json() for p in plan_exports(ctx.host, site, names, now, full=full)]
        if as_json:
            click.echo(json.dumps(plans, indent=2, ensure_ascii=False))
        for p in [] if as_json else plans:
            _print_plan(p, dry_run=True)
        return
    def here() -> list[dict[str, Any]]:
        return [r.to_json() for r in run_exports(ctx.host, site, names, now, full=full)]

    results = in_daemon_or_here(
        ctx, "access-export", key="results", name=name, full=full or None, timeout=300,
        here=here, doing="exporting", instead="not exporting from here: the daemon does it")
    if as_json:
        click.echo(json.dumps(results, indent=2, ensure_ascii=False))
    failed = [r for r in results if r["error"]]
    for r in [] if as_json else results:
        _print_plan(r, dry_run=False)
    for r in failed:
        click.echo(f"error: {r['export']}: {r['error']} (the previous export stays in "
                   f"place; retried after a backoff, {r['failures']} failure(s) in a row)",
                   err=True)
    if failed:
        raise SystemExit(1)
