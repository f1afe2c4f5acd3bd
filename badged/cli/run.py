"""`badged run`: the daemon (systemd's ExecStart)."""

from __future__ import annotations

import sys

from ..daemon import logs
from . import Context, fail, main, pass_ctx, user_errors


@main.command("run")
@pass_ctx
@user_errors
def run(ctx: Context) -> None:
    """Run the daemon of this host's school (systemd's ExecStart)."""
    from ..daemon.runtime import StartError
    from ..daemon.runtime import run as run_daemon

    host = ctx.host
    logs.setup(host.config.log_level)
    try:
        code = run_daemon(host)
    except StartError as exc:
        fail(f"error: {exc}")
    sys.exit(code)
