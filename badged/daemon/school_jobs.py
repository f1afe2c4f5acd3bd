"""The jobs of a school's daemon: what each does, and their wiring into the `JobRunner`.

The school's exchanges (mail, or the API CROUS sync), the outbox delivery, the archive and
people purges, the store's maintenance and the door-system exports. `register` (at start-up
and after a reload) adds the jobs the config asks for and removes the others, with their
metric series.

The exchange and mail code (email, smtplib, ssl, mailbox…) and the door-system exports are
imported by the jobs that use them, not at start-up: most of the daemon's life is reading
cards (bench/daemon.py).
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .. import clock
from ..config.model import ExchangeKind
from ..config.schedules import parse_schedule
from ..crous.archives import archive_folder, clean_leftovers
from ..store import access as access_store
from ..store import leases, outbox
from ..store import retention as retention_store
from ..store.db import SharedStore
from . import store_metrics

if TYPE_CHECKING:
    from ..access.export import RunResult
    from ..crous.mail import DeliveryReport
    from .jobs import JobResult
    from .runtime import Daemon

log = logging.getLogger(__name__)

MAINTENANCE, MAINTENANCE_SCHEDULE = "store-maintenance", "every day at 03:17"
DELIVERY, DELIVERY_SCHEDULE = "outbox-delivery", "every 1 minutes"
PURGE, PURGE_SCHEDULE = "archive-purge", "every day at 04:23"
PEOPLE_PURGE, PEOPLE_PURGE_SCHEDULE = "people-purge", "every day at 04:41"
CROUS_SYNC = "crous-sync"
DAEMON = "the badged daemon"


def maintain_store(store: SharedStore) -> None:
    """Daily: fold the WAL back into the database and refresh the query planner's stats."""
    with store.use() as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA optimize")


class SchoolJobs:
    """The jobs of `daemon`'s school; they run on its job connection (`daemon.job_conn`)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        # Door-system exports: the change marker seen at start (an export never run waits
        # for a change after it), `--full` requests, and each export's last result.
        self._access_baseline = access_store.change_marker(daemon.job_conn)
        self._access_full: set[str] = set()
        self._access_results: dict[str, RunResult] = {}

    def register(self) -> None:
        """The jobs of this school: its exchanges, the outbox, the archive, the store."""
        d = self.daemon
        jobs, school = d.jobs, d.site.school
        wanted = {MAINTENANCE, DELIVERY, PURGE, PEOPLE_PURGE}
        jobs.add(MAINTENANCE, parse_schedule(MAINTENANCE_SCHEDULE),
                 lambda: maintain_store(d.store))
        jobs.add(DELIVERY, parse_schedule(DELIVERY_SCHEDULE), self.deliver)
        jobs.add(PURGE, parse_schedule(PURGE_SCHEDULE), self.archive_purge)
        jobs.add(PEOPLE_PURGE, parse_schedule(PEOPLE_PURGE_SCHEDULE), self.people_purge)
        for ex in school.exchanges:
            name = f"exchange-{ex.kind.value}"
            wanted.add(name)
            if ex.transport == "api":  # the API CROUS sync of this kind's people
                jobs.add(name, parse_schedule(ex.schedule),
                         functools.partial(self.crous_sync, [ex.kind]))
                continue
            d.metrics.register_exchange(ex.kind.value)
            jobs.add(name, parse_schedule(ex.schedule), functools.partial(self.exchange, ex.kind))
        if any(ex.transport == "api" for ex in school.exchanges):
            wanted.add(CROUS_SYNC)  # every api kind at once, on demand (`badged crous sync`)
            jobs.add(CROUS_SYNC, None, functools.partial(self.crous_sync, None))
        for export_name, export in school.access_exports.items():
            name = f"access-{export_name}"
            wanted.add(name)
            schedule = parse_schedule(export.schedule)
            last = access_store.state(d.job_conn, export_name)
            d.metrics.register_access(
                export_name, schedule.interval_seconds,
                last_success=last.last_success_at if last else None,
                last_run=last.last_run_at if last else None, cards=last.cards if last else None)
            jobs.add(name, schedule, functools.partial(self.access_export, export_name))
        for name in set(jobs.names) - wanted:  # an exchange removed by a reload
            jobs.remove(name)
            if name.startswith("exchange-"):
                d.metrics.forget_exchange(name.removeprefix("exchange-"))
            if name.startswith("access-"):
                d.metrics.forget_access(name.removeprefix("access-"))

    # --- exchanges with the CROUS ------------------------------------------------------

    def exchange(self, kind: ExchangeKind) -> dict[str, Any]:
        """Job `exchange-KIND`: write the due batch, then deliver the outbox."""
        from ..crous import exchanges

        d = self.daemon
        result = exchanges.run(d.job_conn, d.host, d.site, kind, clock.now(), what=DAEMON)
        changes = result.plan.changes
        d.metrics.exchange_run(kind.value, len(changes.lines) + changes.unchanged,
                               result.batch_id is not None)
        self.delivered(result.delivery)
        if result.batch_id is not None:
            log.info("exchange %s: batch %d with %d line(s) written", kind.value,
                     result.batch_id, len(changes.lines))
        return result.to_json()

    def crous_sync(self, kinds: list[ExchangeKind] | None) -> dict[str, Any]:
        """Job `exchange-KIND` of an api exchange (or `crous-sync`, every api kind)."""
        from ..crous.sync import sync  # httpx only for schools that use the API

        d = self.daemon
        report = sync(d.job_conn, d.site, clock.now(), kinds=kinds,
                      on_request=d.metrics.crous_api_request)
        d.metrics.crous_sync(report.duration)
        store_metrics.refresh_crous(d.metrics, d.store, d.site)
        if report.done or report.failed:
            log.info("API CROUS sync: %d told, %d refused, %d left, %d call(s): %s",
                     report.done, report.failed, report.pending, report.calls, report.outcome)
        if report.aborted:
            raise RuntimeError(f"API CROUS sync {report.outcome}")
        return report.to_json()

    def deliver(self) -> None:
        """Job `outbox-delivery`: send the pending batches whose backoff is over.

        Nothing to send (the usual minute) is told by one query: the mail code is only
        imported when there is something to deliver.
        """
        d = self.daemon
        now = clock.now()
        if not outbox.has_work(d.job_conn, now):
            d.metrics.set_outbox_pending(outbox.pending_count(d.job_conn, "mail"))
            return
        from ..crous import exchanges

        self.delivered(exchanges.deliver(d.job_conn, d.host, d.site, now, what=DAEMON))

    def delivered(self, report: DeliveryReport) -> None:
        """Count and log a delivery's outcomes (a job's, or a retry asked for)."""
        metrics = self.daemon.metrics
        for outcome in report.outcomes:
            metrics.exchange_delivery(outcome.kind, outcome.sent)
            if outcome.error:
                log.warning("batch %d (%s) not delivered: %s", outcome.batch_id,
                            outcome.kind, outcome.error)
        metrics.set_outbox_pending(report.pending)

    def clean_outbox(self) -> None:
        """At start: unfinished archive copies a killed run left (under the outbox lease,
        so never one that another process is writing)."""
        d = self.daemon
        with leases.holding(d.job_conn, leases.OUTBOX, DAEMON, 60) as held:
            if held is not None:
                clean_leftovers(archive_folder(d.host.state_dir))

    # --- retention ---------------------------------------------------------------------

    def archive_purge(self) -> None:
        """Job `archive-purge`: drop sent archives older than the retention."""
        from ..crous import exchanges
        from ..crous.mail import purge

        d = self.daemon
        done = purge(d.job_conn, exchanges.archive_dir(d.host),
                     d.site.school.archive_retention_days, clock.now(), what=DAEMON)
        if done.batches:
            log.info("archive: %d sent batch(es) past retention purged", done.batches)

    def people_purge(self) -> dict[str, Any]:
        """Job `people-purge`: erase the people who left more than retention_days ago."""
        from ..crous import exchanges
        from ..enrolment.retention import purge

        d = self.daemon
        done = purge(d.job_conn, d.site, exchanges.archive_dir(d.host), clock.now(),
                     actor="badged", what=DAEMON)
        d.metrics.set_people_purged(retention_store.purged_total(d.job_conn))
        if done.people:
            d.refresh_gauges()
        return {"people": done.people, "cards": done.cards, "batches": done.batches}

    # --- door-system exports -----------------------------------------------------------

    def access_export(self, name: str) -> dict[str, Any]:
        """Job `access-NAME`: export the cards to a door system (fails if not delivered)."""
        from ..access import export as access

        d = self.daemon
        full = name in self._access_full
        self._access_full.discard(name)
        self._access_results.pop(name, None)
        now = clock.now()
        try:
            result = access.run(d.job_conn, d.host, d.site, name, now, full=full)
        except access.AccessError:
            d.metrics.access_run(name, now.timestamp(), ok=False)
            self._access_results.pop(name, None)
            raise
        self._access_results[name] = result
        p = result.plan
        d.metrics.access_run(name, now.timestamp(), ok=result.ok, cards=p.cards,
                             written=result.written)
        if not result.ok:
            retry = datetime.fromtimestamp(result.retry_at or 0, UTC)
            raise access.AccessError(f"not delivered ({result.failures} failure(s) in a "
                                     f"row, retry at {retry:%H:%M:%S} UTC; the previous "
                                     f"export stays in place): {result.error}")
        if result.written:
            log.info("access export %s: %d card(s) (%d valid, %d blocked) written to %s: %s",
                     name, p.cards, p.valid, p.blocked, p.destination,
                     ", ".join(f"{p.count(w)} {w}" for w in ("added", "blocked", "unblocked",
                                                            "changed", "removed")
                               if p.count(w)) or "no card changed")
        return result.to_json()

    def export_now(self, name: str, *, full: bool) -> tuple[JobResult, RunResult | None]:
        """Run export `name` now (`full`: every card, not only the changes): the job's
        outcome and the export's result (None if it failed before delivering)."""
        if full:
            self._access_full.add(name)
        outcome = self.daemon.jobs.run_now(f"access-{name}")
        return outcome, self._access_results.get(name)

    def access_tick(self) -> None:
        """Run the `on_change` exports whose cards changed, and the retries that are due."""
        from ..access.export import due

        d = self.daemon
        exports = d.site.school.access_exports
        try:
            marker = access_store.change_marker(d.job_conn)
            states = {name: access_store.state(d.job_conn, name) for name in exports}
        except sqlite3.Error as exc:  # a busy store: next tick
            log.warning("access exports: cannot read the store: %s", exc)
            return
        for name, why in due(exports, states, marker=marker, baseline=self._access_baseline,
                             now=clock.time()):
            if d.stop_event.is_set():
                return
            log.info("access export %s: running now (%s)", name, why)
            d.jobs.run_now(f"access-{name}")
