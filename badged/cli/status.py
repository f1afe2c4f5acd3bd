"""`badged status`: the running daemon's state, through its control socket."""

from __future__ import annotations

import json
from datetime import datetime

import click

from ..daemon.control import ControlClient, socket_path
from . import Context, main, pass_ctx, user_errors


def client(ctx: Context) -> ControlClient:
    return ControlClient(socket_path(ctx.host.runtime_dir))


@main.command("status")
@click.option("--json", "as_json", is_flag=True, help="The daemon's full state as JSON.")
@pass_ctx
@user_errors
def status(ctx: Context, as_json: bool) -> None:
    """Show the daemon's state: readers, pcscd, jobs, last taps (exit 4 if not running)."""
    answer = client(ctx).request("status", timeout=10)
    answer.pop("ok", None)
    if as_json:
        click.echo(json.dumps(answer, indent=2, sort_keys=True))
        return
    click.echo(f"badged {answer['version']} (pid {answer['pid']}): {answer['summary']}")
    for name, up in sorted(answer["readers"].items()):
        click.echo(f"  reader {name}: {'up' if up else 'DOWN'}")
    for name, up in sorted(answer["sams"].items()):
        click.echo(f"  SAM {name}: {'up' if up else 'MISSING'}")
    for job in answer["jobs"]:
        last = _when(job["last_success"])
        nxt = _when(job["next_run"])
        error = f", last error: {job['last_error']}" if job["last_error"] else ""
        click.echo(f"  job {job['name']}: last success {last}, next {nxt}{error}")
    for tap in answer["last_taps"][-5:]:
        click.echo(f"  tap {_when(tap['at'])} on {tap['reader']}: {tap['csn'] or '-'} "
                   f"{tap['outcome']}")


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "never"
