"""`badged run`: the daemon (systemd's ExecStart)."""

from __future__ import annotations

import sys

from .. import logs
from . import Context, main, pass_ctx, user_errors


@main.command("run")
@pass_ctx
@user_errors
def run(ctx: Context) -> None:
    """Run the daemon of this host's school (systemd's ExecStart)."""
    from ..daemon.runtime import run as run_daemon

    host = ctx.host
    logs.setup(host.config.log_level)
    sys.exit(run_daemon(host))
