"""`badged person …`: add and show people by hand (until the registry import feeds them)."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from ..store import cards, people
from ..store.db import open_store
from . import Context, fail, main, pass_ctx, user_errors


@main.group()
def person() -> None:
    """People who hold cards."""


@person.command("add")
@click.argument("person_id", metavar="ID")
@click.option("--last-name", required=True)
@click.option("--first-name", required=True)
@click.option("--category", type=click.Choice(["student", "staff"]), required=True)
@click.option("--email")
@click.option("--ine", help="Student's national id (INE).")
@click.option("--birth-date", metavar="YYYY-MM-DD")
@pass_ctx
@user_errors
def person_add(ctx: Context, person_id: str, last_name: str, first_name: str, category: str,
               email: str | None, ine: str | None, birth_date: str | None) -> None:
    """Add or update a person by institutional id."""
    conn = open_store(ctx.host.state_dir)
    existing = people.get(conn, person_id)
    record = people.Person(
        id=person_id, last_name=last_name, first_name=first_name, category=category,
        email=email, ine=ine, birth_date=birth_date, source="manual",
    )
    if existing is not None:  # keep what the registry knows and this command does not say
        record = people.Person(**{**asdict(existing), **{k: v for k, v in asdict(record).items()
                                                         if v is not None}})
    people.upsert(conn, record)
    click.echo(f"{'updated' if existing else 'added'} {person_id}")


@person.command("show")
@click.argument("person_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@user_errors
def person_show(ctx: Context, person_id: str, as_json: bool) -> None:
    """Show a person and their cards."""
    conn = open_store(ctx.host.state_dir)
    found = people.get(conn, person_id)
    if found is None:
        fail(f"error: unknown person {person_id!r}")
    held = [asdict(c) for c in cards.for_person(conn, person_id)]
    if as_json:
        click.echo(json.dumps({**asdict(found), "cards": held}, indent=2, ensure_ascii=False))
        return
    for key, value in asdict(found).items():
        if value is not None:
            click.echo(f"{key:<22}{value}")
    for c in held:
        click.echo(f"card                  {c['csn']} {c['state']} "
                   f"(CROUS {c['crous_number'] or '-'})")


@person.command("purge")
@click.option("--dry-run", is_flag=True, help="List who would be purged; change nothing.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@user_errors
def person_purge(ctx: Context, dry_run: bool, as_json: bool) -> None:
    """Erase the records of people who left more than the school's retention_days ago.

    Name, birth date, e-mail and INE go; their cards are unlinked; what the CROUS was told
    stays as counts and checksums. The daemon does the same every day (job people-purge).
    """
    from .. import clock
    from ..crous.exchanges import archive_dir
    from ..enrolment.retention import purge

    site = ctx.host.load_site()
    conn = open_store(ctx.host.state_dir)
    report = purge(conn, site, archive_dir(ctx.host), clock.now(), dry_run=dry_run)
    if report.busy:
        fail(f"error: the outbox is being delivered by {report.busy}: nothing purged, "
             "try again in a minute")
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
        return
    for x in report.leavers:
        click.echo(f"{x.person_id}  left {x.left_on}  {x.cards} card(s)  "
                   f"{x.batches} batch(es)")
    verb = "would purge" if dry_run else "purged"
    click.echo(f"{verb} {report.people} people who left more than {report.retention_days} "
               f"days ago ({report.cards} cards unlinked, {report.batches} batches' files "
               "dropped)")
