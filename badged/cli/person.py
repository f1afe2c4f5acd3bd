"""`badged person …`: add and show people by hand (until the registry import feeds them)."""

from __future__ import annotations

import json

import click

from ..enrolment.people import add_person, person_record
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
    updated = add_person(ctx.host, person_id, last_name=last_name, first_name=first_name,
                         category=category, email=email, ine=ine, birth_date=birth_date)
    click.echo(f"{'updated' if updated else 'added'} {person_id}")


@person.command("show")
@click.argument("person_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@user_errors
def person_show(ctx: Context, person_id: str, as_json: bool) -> None:
    """Show a person and their cards."""
    found = person_record(ctx.host, person_id)
    if found is None:
        fail(f"error: unknown person {person_id!r}")
    if as_json:
        click.echo(json.dumps(found.to_json(), indent=2, ensure_ascii=False))
        return
    for key, value in found.person.items():
        if value is not None:
            click.echo(f"{key:<22}{value}")
    for c in found.cards:
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
    from ..enrolment.people import purge_leavers

    report = purge_leavers(ctx.host, ctx.host.load_site(), clock.now(), dry_run=dry_run)
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
