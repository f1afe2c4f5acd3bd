"""`badged doctor`: every precondition of this host, one line each, exit 0 or 1."""

from __future__ import annotations

import json
import sys

import click

from .. import doctor
from . import EXIT_OK, EXIT_USER, Context, main, pass_ctx


@main.command("doctor")
@click.option("--json", "as_json", is_flag=True,
              help='JSON: {"ok": bool, "checks": [{check, status, detail, fix}]}.')
@click.option("--timeout", type=float, default=10.0, show_default=True, metavar="S",
              help="Seconds for each network check (SMTP relay, daemon).")
@pass_ctx
def doctor_command(ctx: Context, as_json: bool, timeout: float) -> None:
    """Check every precondition of this host, one line each: ok, warn or fail with the fix.

    Host file and tree, state and runtime folders, the store, pcscd (socket, polkit), the
    readers and the SAM, every key and password reference, the SMTP relay (TCP, EHLO,
    STARTTLS, AUTH; no mail is sent), the API CROUS, disk space, the clock, the daemon.
    Exit 0 when nothing fails (warnings allowed), 1 otherwise.

    \b
    Examples:
      badged doctor
      badged --host-config /etc/badged/badged.yaml doctor
      badged doctor --json | jq '.checks[] | select(.status != "ok")'
    """
    checks = doctor.run(ctx.host_config_path, timeout=timeout)
    bad = doctor.failed(checks)
    if as_json:
        click.echo(json.dumps({"ok": not bad, "checks": [c.to_json() for c in checks]},
                              indent=2, ensure_ascii=False))
    else:
        for check in checks:
            click.echo(check.line())
        fails = sum(c.status == "fail" for c in checks)
        warns = sum(c.status == "warn" for c in checks)
        click.echo(f"{len(checks)} checks: {fails} failed, {warns} warning(s)")
    sys.exit(EXIT_USER if bad else EXIT_OK)
