"""What an operator asks of a host's door-system exports: which exports, what they would
write, and writing them now (`badged access export [--dry-run]`).

Each function opens the host's store itself and returns the service's own results, so
that the command line and the daemon's control socket can both call it. The daemon runs
the exports as jobs on its own connection; the command line writes them only when no
daemon runs (cli `in_daemon_or_here`).
"""

from __future__ import annotations

from contextlib import closing
from datetime import datetime

from ..config.host import Host
from ..config.tree import Site
from ..store.db import open_store
from .export import AccessError, Plan, RunResult, export_of, plan, run


def export_names(site: Site, name: str | None = None) -> list[str]:
    """[`name`] if the school has that export, else every export of the school;
    `AccessError` for an unknown name or a school without any."""
    if name is not None:
        export_of(site, name)  # AccessError for an unknown name
        return [name]
    if not site.school.access_exports:
        raise AccessError(f"school {site.id} has no access_exports configured")
    return list(site.school.access_exports)


def plan_exports(host: Host, site: Site, names: list[str], now: datetime, *,
                 full: bool = False) -> list[Plan]:
    """What each export would write now, and what changed since its last run; nothing is
    written."""
    with closing(open_store(host.state_dir)) as conn:
        return [plan(conn, host, site, n, now, full=full) for n in names]


def run_exports(host: Host, site: Site, names: list[str], now: datetime, *,
                full: bool = False) -> list[RunResult]:
    """Write each export now where it changed (or every card, `full`); a failed delivery
    is in its result (and in the store, with its backoff), not raised."""
    with closing(open_store(host.state_dir)) as conn:
        return [run(conn, host, site, n, now, full=full) for n in names]
