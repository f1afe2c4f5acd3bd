"""The daemon (`badged run`): one process per school, run by systemd.

Start-up: config valid → store open → metrics port bound → reader thread and control
socket → READY=1. A missing reader is not a start failure; a taken metrics port is (exit
1 before READY). The main loop runs due jobs, pings the watchdog only while the reader
thread's heartbeat is fresh, refreshes the gauges and sleeps until the next job or ping.
SIGTERM finishes the current job and stops; SIGHUP reloads a validated tree or keeps the
old one (`badged_config_last_reload_successful 0`).

What the jobs do is in `school_jobs`, what the control socket may ask in `operations`, the
gauges read from the store in `store_metrics`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import threading
import time
from typing import Any

<<<<<<< Updated upstream
from .. import __version__
from ..cards.profile import ProfileReader
=======
from .. import __version__, clock
from ..cards.pcsc import match_readers
from ..cards.profile import CardReadError, ProfileReader
>>>>>>> Stashed changes
from ..cards.reader_service import ReaderService
from ..config.errors import ConfigError, SecretError
from ..config.host import Host, load_host
from ..config.tree import Site
from ..store.db import SharedStore, open_store
from . import notify, store_metrics
from .control import ControlServer, socket_path
from .desk import Desk
from .jobs import JobRunner
from .metrics import Metrics
from .operations import Operations
from .pidlock import AlreadyRunning, DaemonLock
from .school_jobs import SchoolJobs
from .taps import Taps

log = logging.getLogger(__name__)

TAP_CACHE_KIB = 512
GAUGE_REFRESH_SECONDS = 30.0
# How often the store's card-change marker is read for `on_change` exports (and due
# retries of failed exports): a lost or stolen card is blocked at the doors within seconds.
ACCESS_POLL_SECONDS = 5.0
READER_FIRST_POLL_SECONDS = 5.0

HANDLED_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


class StartError(Exception):
    """The daemon cannot start (metrics port taken, control socket busy, key missing)."""


class Daemon:
    """One school's daemon: its store, reader thread, jobs, control socket and metrics."""

    def __init__(self, host: Host, *, reader_tick: float = 1.0) -> None:
        self.host = host
        self.site: Site = host.load_site()
        self.profile = ProfileReader(self.site.card_profile, self.site.tree)
        self.started = time.time()
        self.metrics = Metrics()
        self.store = SharedStore(open_store(host.state_dir))
        # The tap path reads a few index pages (point lookups) and appends events: a 512 KiB
        # page cache (SQLite's default is 2 MiB) holds the B-trees' upper levels it goes
        # through, and bounds what the daemon's memory grows by as the events table grows
        # (bench/daemon.py: ≈ 0.5 MB over 10 000 taps instead of ≈ 2 MB).
        self.store.conn.execute(f"PRAGMA cache_size = -{TAP_CACHE_KIB}")
        self.desk = Desk()
        self.taps = Taps(self.store, self.metrics, self.desk)
        self.stop_event = threading.Event()
        # Signal handlers only set flags and write to this pipe: taking a lock there (an
        # Event's) could deadlock against the main thread holding it.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.reload_requested = False
        # Jobs get their own connection: an SMTP delivery must never hold the lock the
        # reader thread needs to record a tap. One job runs at a time (JobRunner's lock).
        self.job_conn = open_store(host.state_dir)
        self.jobs = JobRunner(self.job_conn, self.metrics, stop=self.stop_event)
        self.readers = ReaderService(self.profile, self.site.school.readers, self.taps,
                                     tick=reader_tick)
        self.control = ControlServer(socket_path(host.runtime_dir))
        self.lock = DaemonLock(host.runtime_dir)
        self.metrics_server: Any = None
        self.last_reload: float | None = None
        self.school_jobs = SchoolJobs(self)
        self.ops = Operations(self)
        self._status_sent: str | None = None
        self.taps.on_change = self._poke  # the main loop sends the new STATUS=

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        # First: from here on, commands know a daemon runs, even before it answers.
        try:
            self.lock.acquire()
        except AlreadyRunning as exc:
            raise StartError(str(exc)) from None
        except OSError as exc:
            raise StartError(f"cannot take {self.lock.path}: {exc.strerror or exc}") from None
        try:
            self._start()
        except BaseException:
            self.lock.release()
            raise

    def _start(self) -> None:
        listen = self.host.config.metrics_listen or self.site.school.metrics_listen
        self.metrics_server = self.metrics.serve(listen)  # MetricsBindError: not READY
        self.ops.register(self.control)
        self.control.start()
        self._register_jobs()
        self.school_jobs.clean_outbox()
        self.readers.start()
        self.refresh_gauges()
        log.info("badged %s: school %s (%s) ready, metrics on %s, control socket %s",
                 __version__, self.site.id, self.site.school.name, listen, self.control.path)
        # The threads started above keep the signals blocked (see `run`): SIGTERM/SIGHUP
        # reach this thread, which takes them at once instead of after its current wait.
        # Unblocked before READY, so a stop sent right after READY is taken at once.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
        # The reader thread's first look at pcscd (a few ms; bounded): STATUS= is right
        # from READY on, not "pcscd down" until the next refresh.
        self.readers.first_poll.wait(READER_FIRST_POLL_SECONDS)
        notify.ready()
        self._send_status()

    def run(self) -> int:
        self.start()
        ping = notify.watchdog_interval()
        next_ping = time.monotonic()
        next_gauges = time.monotonic() + GAUGE_REFRESH_SECONDS
        next_access = time.monotonic()
        freshness = max(3 * self.readers.tick, ping or 0.0)
        while not self.stop_event.is_set():
            if self.reload_requested:
                self.reload_requested = False
                self.reload()
            self.jobs.run_pending()
            now = time.monotonic()
            if self.site.school.access_exports and now >= next_access:
                self.school_jobs.access_tick()
                now = time.monotonic()
                next_access = now + ACCESS_POLL_SECONDS
            if ping is not None and now >= next_ping:
                if now - self.readers.heartbeat <= freshness:
                    notify.watchdog()
                else:
                    log.error("reader thread silent for %.0f s: not pinging the watchdog",
                              now - self.readers.heartbeat)
                next_ping = now + ping
            if now >= next_gauges:
                self.refresh_gauges()
                next_gauges = now + GAUGE_REFRESH_SECONDS
            self._send_status()
            waits = [next_gauges - now, 60.0]
            if self.site.school.access_exports:
                waits.append(next_access - now)
            if ping is not None:
                waits.append(next_ping - now)
            job_wait = self.jobs.seconds_until_next()
            if job_wait is not None:
                waits.append(job_wait)
            self._sleep(max(0.0, min(waits)))
        self.shutdown()
        return 0

    def _sleep(self, seconds: float) -> None:
        """Until `seconds` pass or a signal pokes the wake-up pipe."""
        ready, _, _ = select.select([self._wake_r], [], [], seconds)
        if ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wake_r, 64):
                    pass

    def _poke(self) -> None:
        with contextlib.suppress(BlockingIOError):  # full pipe: a wake-up is pending anyway
            os.write(self._wake_w, b"\0")

    def request_stop(self) -> None:
        # The main thread never waits on stop_event (it only reads it): setting it from a
        # handler cannot deadlock, and it stops run_pending between two jobs.
        self.stop_event.set()
        self._poke()

    def request_reload(self) -> None:
        self.reload_requested = True
        self._poke()

    def shutdown(self) -> None:
        notify.stopping()
        log.info("stopping")
        self.readers.stop()
        self.control.close()
        if self.metrics_server is not None:
            self.metrics_server.close()
        self.store.close()
        self.job_conn.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        self.lock.release()
        log.info("stopped")

    # --- reload ------------------------------------------------------------------------

    def reload(self) -> bool:
        """Validate the tree (and the profile's keys) first; keep the old config on error."""
        notify.reloading()
        try:
            site = load_host(self.host.file).load_site()
            profile = ProfileReader(site.card_profile, site.tree)
        except (ConfigError, SecretError) as exc:
            for line in str(exc).splitlines():
                log.error("reload refused: %s", line)
            self.metrics.config_reload(False)
            notify.ready()
            return False
        self.site, self.profile = site, profile
        self.readers.set_profile(profile, site.school.readers)
        self._register_jobs()
        self.refresh_gauges()
        self.metrics.config_reload(True)
        self.last_reload = time.time()
        log.info("config reloaded: school %s", site.id)
        notify.ready()
        self._send_status(force=True)
        return True

    # --- jobs, gauges and status -------------------------------------------------------

    def _register_jobs(self) -> None:
        """The school's jobs, at start-up and after a reload (see `SchoolJobs.register`)."""
        self.school_jobs.register()

<<<<<<< Updated upstream
    def refresh_gauges(self) -> None:
        """Every gauge read from the store (every 30 s, and after what changes them)."""
        store_metrics.refresh(self.metrics, self.store, self.site)
=======
    def _exchange(self, kind: ExchangeKind) -> dict[str, Any]:
        """Job `exchange-KIND`: write the due batch, then deliver the outbox."""
        from ..crous import exchanges

        result = exchanges.run(self.job_conn, self.host, self.site, kind, clock.now())
        changes = result.plan.changes
        self.metrics.exchange_run(kind.value, len(changes.lines) + changes.unchanged,
                                  result.batch_id is not None)
        self._delivered(result.delivery)
        if result.batch_id is not None:
            log.info("exchange %s: batch %d with %d line(s) written", kind.value,
                     result.batch_id, len(changes.lines))
        return result.to_json()

    def _crous_sync(self, kinds: list[ExchangeKind] | None) -> dict[str, Any]:
        """Job `exchange-KIND` of an api exchange (or `crous-sync`, every api kind)."""
        from ..crous.sync import sync  # httpx only for schools that use the API

        report = sync(self.job_conn, self.site, clock.now(), kinds=kinds,
                      on_request=self.metrics.crous_api_request)
        self.metrics.crous_sync(report.duration)
        self._refresh_crous_gauges()
        if report.done or report.failed:
            log.info("API CROUS sync: %d told, %d refused, %d left, %d call(s): %s",
                     report.done, report.failed, report.pending, report.calls, report.outcome)
        if report.aborted:
            raise RuntimeError(f"API CROUS sync {report.outcome}")
        return report.to_json()

    def _refresh_crous_gauges(self) -> None:
        if not any(ex.transport == "api" for ex in self.site.school.exchanges):
            return
        with self.store.use() as conn:
            last_run, last_success = crous_api.last_runs(conn)
            self.metrics.set_crous_state(in_error=crous_api.error_counts(conn),
                                         pending=crous_api.pending_changes(conn),
                                         last_run=last_run, last_success=last_success)
    def _access(self, name: str) -> dict[str, Any]:
        """Job `access-NAME`: export the cards to a door system (fails if not delivered)."""
        from ..access import export as access

        full = name in self._access_full
        self._access_full.discard(name)
        self._access_results.pop(name, None)
        now = clock.now()
        try:
            result = access.run(self.job_conn, self.host, self.site, name, now, full=full)
        except access.AccessError:
            self.metrics.access_run(name, now.timestamp(), ok=False)
            self._access_results.pop(name, None)
            raise
        self._access_results[name] = result
        p = result.plan
        self.metrics.access_run(name, now.timestamp(), ok=result.ok, cards=p.cards,
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

    def _access_tick(self) -> None:
        """Run the `on_change` exports whose cards changed, and the retries that are due."""
        from ..access.export import due

        try:
            marker = access_store.change_marker(self.job_conn)
            states = {name: access_store.state(self.job_conn, name)
                      for name in self.site.school.access_exports}
        except sqlite3.Error as exc:  # a busy store: next tick
            log.warning("access exports: cannot read the store: %s", exc)
            return
        for name, why in due(self.site.school.access_exports, states, marker=marker,
                                    baseline=self._access_baseline, now=clock.time()):
            if self.stop_event.is_set():
                return
            log.info("access export %s: running now (%s)", name, why)
            self.jobs.run_now(f"access-{name}")

    def _deliver(self) -> None:
        """Job `outbox-delivery`: send the pending batches whose backoff is over.

        Nothing to send (the usual minute) is told by one query: the mail code is only
        imported when there is something to deliver.
        """
        now = clock.now()
        if not outbox.has_work(self.job_conn, now):
            self.metrics.set_outbox_pending(outbox.pending_count(self.job_conn, "mail"))
            return
        from ..crous import exchanges

        self._delivered(exchanges.deliver(self.job_conn, self.host, self.site, now))

    def _delivered(self, report: DeliveryReport) -> None:
        for outcome in report.outcomes:
            self.metrics.exchange_delivery(outcome.kind, outcome.sent)
            if outcome.error:
                log.warning("batch %d (%s) not delivered: %s", outcome.batch_id,
                            outcome.kind, outcome.error)
        self.metrics.set_outbox_pending(report.pending)

    def _purge(self) -> None:
        """Job `archive-purge`: drop sent archives older than the retention."""
        from ..crous import exchanges
        from ..crous.mail import purge

        done = purge(self.job_conn, exchanges.archive_dir(self.host),
                     self.site.school.archive_retention_days, clock.now())
        if done.batches:
            log.info("archive: %d sent batch(es) past retention purged", done.batches)

    def _refresh_gauges(self) -> None:
        school, crous = self.site.school, self.site.crous
        with self.store.use() as conn:
            self.metrics.set_cards(cards.count_by_state(conn))
            pending = conn.execute(
                "SELECT count(*) FROM batches WHERE state = 'pending'").fetchone()[0]
            sent = dict(conn.execute(
                "SELECT kind, max(sent_at) FROM batches WHERE state = 'sent' GROUP BY kind"))
        self.metrics.set_outbox_pending(pending)
        self._refresh_crous_gauges()
        with self.store.use() as conn:
            self.metrics.set_card_stock(stock.level(conn), school.card_stock.low_threshold)
            self.metrics.set_tariff_default_people(
                len(default_rate_staff(conn, self.site.tariffs)))
        now = clock.now()
        self.metrics.set_academic_year_start(
            academic_year_start(now, school.academic_year_start).timestamp())
        for ex in school.exchanges:
            kind = ex.kind.value
            last = sent.get(kind)
            self.metrics.set_exchange_last_sent(
                kind, datetime.fromisoformat(last).timestamp() if last else None)
            if ex.kind in crous.deadlines:
                self.metrics.set_exchange_deadline(kind, deadline(
                    now, crous.deadlines[ex.kind], school.academic_year_start).timestamp())

    # --- control -----------------------------------------------------------------------

    def _exchange_run(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            kind = ExchangeKind(request["kind"])
        except ValueError:
            raise OpError(f"unknown exchange kind {request['kind']!r}") from None
        name = f"exchange-{kind.value}"
        if name not in self.jobs.names:
            raise OpError(f"school {self.site.id} has no mail exchange {kind.value}")
        if any(ex.kind is kind and ex.transport == "api" for ex in self.site.school.exchanges):
            raise OpError(f"{kind.value} goes by the API CROUS: run `badged crous sync`")
        result = self.jobs.run_now(name)
        if not result.ok:
            raise OpError(f"{name} failed: {result.error}")
        return {"result": result.value}

    def _crous_sync_op(self, request: dict[str, Any]) -> dict[str, Any]:
        """`badged crous sync [--dry-run]` through the daemon: runs never overlap."""
        if CROUS_SYNC not in self.jobs.names:
            raise OpError(f"school {self.site.id} has no exchange with transport api")
        if request.get("dry_run"):
            from ..crous.sync import sync

            with self.store.use() as conn:
                return {"result": sync(conn, self.site, clock.now(),
                                       dry_run=True).to_json()}
        result = self.jobs.run_now(CROUS_SYNC)
        if not result.ok:
            raise OpError(f"{CROUS_SYNC} failed: {result.error}")
        return {"result": result.value}

    def _access_export(self, request: dict[str, Any]) -> dict[str, Any]:
        """`badged access export [NAME]`: run the export(s) now, answer their results."""
        names = [request["name"]] if request.get("name") else list(
            self.site.school.access_exports)
        results = []
        for name in names:
            job = f"access-{name}"
            if job not in self.jobs.names:
                raise OpError(f"school {self.site.id} has no access export {name!r} (known: "
                              f"{', '.join(self.site.school.access_exports) or 'none'})")
            if request.get("full"):
                self._access_full.add(name)
            outcome = self.jobs.run_now(job)
            result = self._access_results.get(name)
            if result is None:  # it failed before delivering (e.g. a name not encodable)
                raise OpError(outcome.error or f"{job} failed")
            results.append(result.to_json())
        return {"results": results}
    def _exchange_retry(self, request: dict[str, Any]) -> dict[str, Any]:
        """Deliver the pending batches (or one) now, ignoring their backoff."""
        from ..crous import exchanges
        from ..crous.mail import OutboxError

        with self.jobs.exclusive():
            try:
                ids, report = exchanges.retry(self.job_conn, self.host, self.site,
                                              clock.now(), request.get("batch"))
            except OutboxError as exc:
                raise OpError(str(exc)) from None
        self._delivered(report)
        return {"result": exchanges.retry_json(ids, report)}

    def _exchange_resend(self, request: dict[str, Any]) -> dict[str, Any]:
        """A sent batch again, same Message-ID, recorded (the daemon holds the credentials)."""
        from ..crous import exchanges
        from ..crous.mail import DeliveryError, OutboxError

        with self.jobs.exclusive():
            try:
                message_id = exchanges.send_again(
                    self.job_conn, self.host, self.site, request["batch"], clock.now(),
                    request.get("actor") or "badged")
            except (OutboxError, DeliveryError) as exc:
                raise OpError(str(exc)) from None
        return {"result": {"batch": request["batch"], "message_id": message_id}}

    def _enrol(self, request: dict[str, Any], cancelled: threading.Event) -> dict[str, Any]:
        """Wait for the next tap on an enrolment reader, then link it to the person."""
        person_id = request["person"]
        wait = float(request.get("wait_seconds") or 30.0)
        if not 0 < wait <= MAX_ENROL_WAIT:
            raise OpError(f"wait_seconds must be more than 0 and at most {MAX_ENROL_WAIT:g}")
        with self.store.use() as conn:
            if people.get(conn, person_id) is None:
                raise OpError(f"unknown person {person_id!r} (add them with badged person "
                              "add, or import the registry)")
        pattern = request.get("reader")
        desks = self.readers.present(ReaderRole.ENROLMENT)
        if not match_readers(pattern, desks):  # at once: no wait for a reader not there
            wanted = "no enrolment reader is present" if pattern is None else (
                f"no enrolment reader matches {pattern!r}")
            raise OpError(f"{wanted} (enrolment readers present: "
                          f"{', '.join(repr(r) for r in desks) or 'none'})")
        read = self.desk.wait(pattern, wait, cancelled)
        if read is None:
            raise OpError(f"no card tapped on an enrolment reader within {wait:g} s")
        if isinstance(read, CardReadError):
            raise OpError(f"a card was tapped but could not be read: {read}")
        policy = Policy.of(self.site.school.enrolment, self.site.comue)
        try:
            with self.store.use() as conn:
                done = enrol(conn, person_id, read.csn, policy,
                             crous_number_on_card=read.crous_number,
                             who=request.get("actor") or "badged")
        except EnrolmentError as exc:
            log.warning("enrolment refused: %s", exc)
            raise OpError(str(exc)) from None
        if done.new_card:
            self.metrics.enrolment()
            self.metrics.card_spend(policy.unit_price)
        log.info("enrolled card %s for %s", done.csn, done.person_id)
        self._refresh_gauges()
        return {"read": read.to_json(), "enrolled": done.to_json()}
>>>>>>> Stashed changes

    def _send_status(self, *, force: bool = False) -> None:
        """STATUS= when the one-line summary changed (pcscd, readers, problems)."""
        line = self.ops.summary()
        if force or line != self._status_sent:
            notify.status(line)
            self._status_sent = line

    def status(self) -> dict[str, Any]:
        """What `badged status --json` shows (the `status` op)."""
        return self.ops.status()


def run(host: Host) -> int:
    """Build the daemon, wire signals, run until SIGTERM; StartError/ConfigError propagate.

    The signals are blocked while the daemon's threads start, so that they inherit the
    block: the kernel may deliver a process signal to any thread that does not block it,
    and Python runs the handler only when the main thread next runs bytecode, i.e. after
    its wait for the next ping or job (up to 30 s). `Daemon.run` unblocks them in the main
    thread once started; a signal that came in meanwhile is handled then.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
    daemon = Daemon(host)
    signal.signal(signal.SIGTERM, lambda *_: daemon.request_stop())
    signal.signal(signal.SIGINT, lambda *_: daemon.request_stop())
    signal.signal(signal.SIGHUP, lambda *_: daemon.request_reload())
    return daemon.run()
