"""`badged exchange …`: plan, run and list the files sent to the CROUS."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .. import clock
from ..config.model import ExchangeKind
from ..crous.deadlines import show_day
from ..crous.exchange_operations import (
    batch_history,
    plan_exchanges,
    resend_batch,
    retry_batches,
    run_exchange,
)
from ..crous.exchanges import Plan
from ..crous.mail import DeliveryError, OutboxError
from ..enrolment.lifecycle import actor
from . import EXIT_PARTIAL, Context, fail, in_daemon_or_here, main, pass_ctx, user_errors

KINDS = click.Choice([k.value for k in ExchangeKind])


@main.group()
def exchange() -> None:
    """Files for the CROUS: réinscriptions, primo-entrants, personnels, départs."""


@exchange.command("plan")
@click.argument("kind", type=KINDS, required=False)
@click.option("--summary", is_flag=True,
              help="Counts per kind and reason instead of one line per person.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@user_errors
def exchange_plan(ctx: Context, kind: str | None, summary: bool, as_json: bool) -> None:
    """What would be sent now, to whom and why (a dry run: nothing is written).

    \b
    Examples:
      badged exchange plan --summary
      badged exchange plan reinscriptions
      badged exchange plan departs --json | jq '.[0].lines[].reason'
    """
    plans = plan_exchanges(ctx.host, ctx.host.load_site(),
                           ExchangeKind(kind) if kind else None, clock.now())
    if summary:
        _summary(plans, as_json)
        return
    if as_json:
        click.echo(json.dumps([p.to_json() for p in plans], indent=2, ensure_ascii=False))
        return
    for p in plans:
        to = ", ".join(f"{r['mailbox']} <{r['address']}>" for r in p.recipients) or "-"
        when = f", deadline {show_day(p.deadline)}" if p.deadline else ""
        click.echo(f"{p.kind.value} {p.academic_year}-{p.academic_year + 1}: "
                   f"{len(p.changes.lines)} to send, {p.changes.unchanged} unchanged{when}")
        late = p.lateness()
        if late:
            click.echo(f"  LATE: {late}")
        click.echo(f"  {p.transport} to {to}, file {p.file_name} (layout {p.layout})")
        for line in p.changes.lines:
            click.echo(f"  {line.person_id}: {line.reason}")
        for note in p.notes:
            click.echo(f"  note: {note}")


def _summary(plans: list[Plan], as_json: bool) -> None:
    rows = [{"kind": p.kind.value, "count": len(p.changes.lines),
             "unchanged": p.changes.unchanged, "reasons": p.reason_counts()} for p in plans]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for row in rows:
        click.echo(f"{row['kind']}: {row['count']} to send, {row['unchanged']} unchanged")
        for reason, count in row["reasons"].items():
            click.echo(f"  {count:>6}  {reason}")


@exchange.command("run")
@click.argument("kind", type=KINDS)
@click.option("--timeout", type=float, default=300.0, show_default=True, metavar="S",
              help="Seconds to wait for the daemon's answer.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@user_errors
def exchange_run(ctx: Context, kind: str, timeout: float, as_json: bool) -> None:
    """Build the KIND file now and send it (through the daemon when it runs).

    Exit 0 when nothing is left undelivered, 3 when a batch is still waiting in the outbox
    (failed now, in its backoff, or another process is delivering), 4 when the daemon runs
    but did not answer (nothing is built or sent from here then).

    \b
    Examples:
      badged exchange run reinscriptions
      badged exchange run departs --json
    """
    def here() -> dict[str, Any]:
        return run_exchange(ctx.host, ctx.host.load_site(), ExchangeKind(kind), clock.now(),
                            what="badged exchange run").to_json()

    result = in_daemon_or_here(
        ctx, "exchange-run", kind=kind, timeout=timeout, here=here,
        doing="building and sending",
        instead="not building or sending from here: the daemon does it; see "
                "`badged exchange list`")
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        _print_run(kind, result)
    if result.get("pending") or result.get("failed"):
        sys.exit(EXIT_PARTIAL)


def _print_run(kind: str, result: dict[str, Any]) -> None:
    if result["batch"] is None:
        click.echo(f"{kind}: nothing to send")
    else:
        click.echo(f"{kind}: batch {result['batch']} with {result['count']} line(s) written")
    click.echo(f"outbox: {result['sent']} sent, {result['failed']} failed, "
               f"{result['pending']} pending")
    for error in result["errors"]:
        click.echo(f"  delivery error: {error}", err=True)
    if result.get("busy"):
        click.echo(f"  not delivered by this run: {result['busy']} is delivering the outbox",
                   err=True)
    for w in result.get("waiting", []):
        when = (f"next attempt at {w['next_attempt_at']}" if w["next_attempt_at"]
                else "next attempt at the next delivery run")
        click.echo(f"  batch {w['batch_id']} ({w['kind']}) not delivered yet, "
                   f"{w['attempts']} attempt(s): {when}", err=True)
    if result.get("late"):
        click.echo(f"{kind}: {result['late']}", err=True)
    if result["pending"] or result["failed"]:
        click.echo("some batches are not delivered yet: they stay in the outbox and are "
                   "retried (exit 3)", err=True)


@exchange.command("retry")
@click.argument("batch", type=int, required=False)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@user_errors
def exchange_retry(ctx: Context, batch: int | None, as_json: bool) -> None:
    """Deliver the pending batches now (or only BATCH), ignoring their backoff.

    After the relay, its certificate or the password was fixed: no need to wait up to 3 h
    for the next attempt. Through the daemon when it runs. Exit 1 if one still fails.

    \b
    Examples:
      badged exchange retry
      badged exchange retry 42
    """
    def here() -> dict[str, Any]:
        try:
            return retry_batches(ctx.host, ctx.host.load_site(), clock.now(), batch)
        except OutboxError as exc:
            fail(f"error: {exc}")

    result = in_daemon_or_here(
        ctx, "exchange-retry", timeout=300, here=here, doing="delivering",
        instead="not delivering from here: the daemon does it; see `badged exchange list`",
        **({"batch": batch} if batch is not None else {}))
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(f"retried {len(result['retried'])} batch(es): {result['sent']} sent, "
                   f"{result['failed']} failed, {result['pending']} pending")
        for error in result["errors"]:
            click.echo(f"  delivery error: {error}", err=True)
    if result["failed"]:
        fail("some batches are still not delivered: badged exchange list shows why")


@exchange.command("resend")
@click.argument("batch", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@user_errors
def exchange_resend(ctx: Context, batch: int, as_json: bool) -> None:
    """Send an archived (sent) batch again, with the same Message-ID; recorded.

    For a file the CROUS lost or asks for again. The resend (who, when, outcome) goes to
    the store's events and shows in `badged exchange list`.

    \b
    Example:
      badged exchange resend 42
    """
    def here() -> dict[str, Any]:
        try:
            return resend_batch(ctx.host, ctx.host.load_site(), batch, clock.now(), actor())
        except (OutboxError, DeliveryError) as exc:
            fail(f"error: {exc}")

    result = in_daemon_or_here(
        ctx, "exchange-resend", batch=batch, actor=actor(), timeout=300, here=here,
        doing="sending", instead="not sending from here (it may be sending it now): see "
                                 "`badged exchange list` before trying again")
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(f"batch {batch} sent again, {result['message_id']}")


@exchange.command("list")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@user_errors
def exchange_list(ctx: Context, limit: int, as_json: bool) -> None:
    """History of the batches: checksums, delivery state, last error, resends.

    \b
    Examples:
      badged exchange list --limit 10
      badged exchange list --json | jq '.[] | select(.state == "pending")'
    """
    history = batch_history(ctx.host, limit)
    if as_json:
        click.echo(json.dumps([h.to_json() for h in history], indent=2, ensure_ascii=False))
        return
    for h in history:
        b = h.batch
        state = f"sent {b.sent_at}" if b.state == "sent" else (
            f"{b.state}, {b.attempts} attempt(s)"
            + (f", next {b.next_attempt_at}" if b.next_attempt_at else ""))
        click.echo(f"#{b.id} {b.kind} {b.created_at}: {b.items} line(s), {state}")
        click.echo(f"  to {', '.join(b.recipients)}  {b.message_id}")
        for f in b.files:
            click.echo(f"  {f.name} {f.size} bytes sha256 {f.sha256}")
        if b.last_error and b.state != "sent":
            click.echo(f"  last error: {b.last_error}")
        for r in h.resends:
            click.echo(f"  resent {r['at']} by {r['actor']}: {r['outcome']}")
