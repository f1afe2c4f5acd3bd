"""`badged status`: the running daemon's state, through its control socket.

Exit 0 healthy, 1 degraded (or the host file cannot run: say why), 4 not running.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta

import click

from ..config.errors import ConfigError
from ..daemon.control import ControlClient, DaemonUnreachable, socket_path
from . import EXIT_OK, EXIT_UNREACHABLE, EXIT_USER, Context, fail, main, pass_ctx, user_errors


def client(ctx: Context) -> ControlClient:
    return ControlClient(socket_path(ctx.host.runtime_dir))


@main.command("status")
@click.option("--json", "as_json", is_flag=True, help="The daemon's full state as JSON.")
@pass_ctx
@user_errors
def status(ctx: Context, as_json: bool) -> None:
    """Show the daemon's state: health, readers, pcscd, jobs, outbox, stock, deadlines.

    Exit 0 healthy; 1 degraded (pcscd down, a reader or the SAM missing, a job failing, a
    batch pending past its retry time or its CROUS deadline), or a host file the daemon
    cannot run; 4 not running.

    \b
    Examples:
      badged status
      badged status --json | jq .problems
    """
    try:
        answer = client(ctx).request("status", timeout=10)
    except DaemonUnreachable as exc:
        _not_running(ctx, exc)
    answer.pop("ok", None)
    problems = answer.get("problems", [])
    if as_json:
        click.echo(json.dumps(answer, indent=2, sort_keys=True))
    else:
        _text(answer)
    sys.exit(EXIT_USER if problems else EXIT_OK)


def _not_running(ctx: Context, exc: DaemonUnreachable) -> None:
    """Not running: because the host file or tree cannot run (exit 1), or just stopped."""
    try:
        ctx.host.load_site()
    except ConfigError as config:
        for issue in config.issues:
            click.echo(str(issue), err=True)
        fail(f"error: badged cannot run this host file ({ctx.host_config_path}): fix the "
             "errors above (badged config validate)")
    fail(f"error: {exc}", EXIT_UNREACHABLE)


def _text(answer: dict) -> None:
    click.echo(f"badged {answer['version']} (pid {answer['pid']}): {answer['summary']}")
    click.echo(f"  health: {answer.get('health', 'healthy').upper()}")
    for problem in answer.get("problems", []):
        click.echo(f"  problem: {problem}")
    for name, up in sorted(answer["readers"].items()):
        click.echo(f"  reader {name}: {'up' if up else 'DOWN'}")
    for name, up in sorted(answer["sams"].items()):
        click.echo(f"  SAM {name}: {'up' if up else 'MISSING'}")
    for job in answer["jobs"]:
        last = _when(job["last_success"])
        nxt = _when(job["next_run"])
        error = f", last error: {job['last_error']}" if job["last_error"] else ""
        click.echo(f"  job {job['name']}: last success {last}, next {nxt}{error}")
    pending = answer.get("outbox", [])
    click.echo(f"  outbox: {len(pending)} batch(es) pending")
    for batch in pending:
        nxt = f", next attempt {batch['next_attempt_at']}" if batch["next_attempt_at"] else ""
        error = f", last error: {batch['last_error']}" if batch["last_error"] else ""
        click.echo(f"    batch {batch['id']} {batch['kind']}: {batch['attempts']} "
                   f"attempt(s){nxt}{error}")
    stock = answer.get("stock")
    if stock:
        low = " (LOW)" if stock["low"] else ""
        click.echo(f"  card stock: {stock['level']}{low}, threshold {stock['low_threshold']}")
    for due in answer.get("deadlines", []):
        last_day = (datetime.fromisoformat(due["at"]) - timedelta(seconds=1)).date()
        click.echo(f"  deadline {due['kind']}: end of {last_day} (Paris)"
                   f"{', passed' if due['passed'] else ''}"
                   f"{': LATE, no file sent this academic year' if due.get('late') else ''}")
    for tap in answer["last_taps"][-5:]:
        click.echo(f"  tap {_when(tap['at'])} on {tap['reader']}: {tap['csn'] or '-'} "
                   f"{tap['outcome']}")


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "never"
