"""`badged crous …`: the CROUS card CSV import, and the API CROUS (sync, errors, tariffs)."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from .. import clock
from ..crous.cards_csv import CardsFileError
from ..crous.operations import api_errors, import_card_file, sync_now
from . import (
    EXIT_PARTIAL,
    Context,
    fail,
    finish_import,
    in_daemon_or_here,
    main,
    open_report,
    pass_ctx,
    progress_printer,
    report_option,
    user_errors,
)


@main.group()
def crous() -> None:
    """The CROUS: card CSV import; API CROUS sync, its errors, its tariff rules."""


@crous.command("import-cards")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--inverse-csn", is_flag=True,
              help="The batch has its CSNs byte-reversed: reverse NUM_PROTOCOLAIRE and "
                   "NUM_APPLICATIF.")
@click.option("--strict", is_flag=True, help="Import nothing if any row is bad (exit 1).")
@click.option("--progress", is_flag=True,
              help="Progress on stderr every 10 000 rows (default: when stderr is a terminal).")
@report_option
@pass_ctx
@user_errors
def import_cards_command(ctx: Context, file: Path, inverse_csn: bool, strict: bool,
                         progress: bool, report_path: Path | None) -> None:
    """Import a CROUS card CSV (CSN ↔ CROUS card number) into this host's store.

    Good rows are imported in one transaction; bad rows are reported on stderr as
    FILE:LINE: reason (the first 20, no card number or CSN: those go to --report FILE),
    then counted by reason, and the summary goes to stdout. A row contradicting a known link is
    rejected, never overwritten; importing the same file again changes nothing. Exit 0 when
    every row is in, 3 when some were rejected, 1 when nothing was imported (a whole-file
    problem, or --strict with any bad row).
    """
    report_file = open_report(report_path)
    try:
        report = import_card_file(ctx.host, file, inverse_csn=inverse_csn, strict=strict,
                                  progress=progress_printer(file, progress))
    except CardsFileError as exc:
        if report_file is not None:
            report_file.discard()
        fail(str(exc))
    finish_import(report, report_file)


# --- API CROUS ------------------------------------------------------------------------------
# The sync modules (and httpx) are imported only where used: a mail-only school never
# needs them.

def _print_sync(result: dict[str, Any]) -> None:
    if result["dry_run"]:
        click.echo(f"dry run ({', '.join(result['kinds'])}): {result['people']} holder(s) and "
                   f"{result['cards']} card(s) to tell; no call made")
        for call in result["planned"]:
            click.echo(f"  {call['method']:5} {call['path']}  ({call['why']})")
        return
    click.echo(f"sync ({', '.join(result['kinds'])}): {result['done']} told, "
               f"{result['failed']} refused, {result['pending']} left for the next run, "
               f"{result['calls']} call(s) in {result['duration_seconds']:.1f} s: "
               f"{result['outcome']}")
    for f in result["failures"]:
        flag = "blocking" if f["blocking"] else "retried next run"
        status = f["status"] if f["status"] is not None else "-"
        click.echo(f"  {f['subject']} {f['key']}: {f['operation']} {status} "
                   f"{f['code'] or ''} {f['message']} ({flag})", err=True)


@crous.command("sync")
@click.option("--dry-run", is_flag=True, help="Print the planned calls; make none.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@user_errors
def sync_command(ctx: Context, dry_run: bool, as_json: bool) -> None:
    """API CROUS: tell the CROUS the holders, cards and cancels that changed.

    Runs in the daemon when it is up (so runs never overlap), else from here. Exit 0 when
    everything is told, 3 when some were refused or left for the next run, 1 when the run
    was aborted (credentials, CROUS unreachable).
    """
    result = in_daemon_or_here(
        ctx, "crous-sync", dry_run=dry_run, timeout=3600,
        here=lambda: _sync_here(ctx, dry_run), doing="syncing",
        instead="not syncing from here: two runs would tell the CROUS twice; see "
                "`badged crous errors`")
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        _print_sync(result)
    if result["dry_run"]:
        return
    if result["outcome"].startswith("aborted"):
        fail(f"error: sync {result['outcome']}")
    if result["failed"] or result["pending"]:
        sys.exit(EXIT_PARTIAL)


def _sync_here(ctx: Context, dry_run: bool) -> dict[str, Any]:
    from ..crous.api import ApiError
    from ..crous.sync import SyncError

    site = ctx.host.load_site()
    try:
        return sync_now(ctx.host, site, clock.now(), dry_run=dry_run).to_json()
    except (SyncError, ApiError) as exc:
        fail(f"error: {exc}")


@crous.command("errors")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@user_errors
def errors_command(ctx: Context, as_json: bool) -> None:
    """What the API CROUS refused, per person and card: operation, code, tries, blocking."""
    errors = api_errors(ctx.host)
    if as_json:
        click.echo(json.dumps([asdict(e) for e in errors], indent=2, ensure_ascii=False))
        return
    if not errors:
        click.echo("no API CROUS error")
        return
    for e in errors:
        flag = "BLOCKING" if e.blocking else "retried next run"
        status = e.status if e.status is not None else "-"
        click.echo(f"{e.subject} {e.key}: {e.operation} HTTP {status} {e.code or ''} "
                   f"{e.message} [{flag}] {e.tries} tr{'ies' if e.tries > 1 else 'y'}, "
                   f"last {e.last_at}")


@crous.command("tariffs")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@user_errors
def tariffs_command(ctx: Context, as_json: bool) -> None:
    """Fetch the CROUS's tariff rules and print how they differ from the YAML (never applied).

    Exit 0 when they match, 3 when they differ.
    """
    from ..crous.api import ApiError
    from ..crous.tariff_rules import TariffRulesError, fetch_and_compare

    site = ctx.host.load_site()
    try:
        count, differences = fetch_and_compare(site)
    except (ApiError, TariffRulesError) as exc:
        fail(f"error: {exc}")
    if as_json:
        click.echo(json.dumps({"crous_rules": count, "tariffs": site.school.tariffs,
                               "differences": [d.to_json() for d in differences]}, indent=2))
    else:
        click.echo(f"CROUS {site.school.crous}: {count} rule(s); tariffs/{site.school.tariffs}"
                   f".yaml: {len(differences)} difference(s)")
        for d in differences:
            click.echo(f"  {d}")
    if differences:
        sys.exit(EXIT_PARTIAL)
