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

from .. import __version__
from ..cards.profile import ProfileReader
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

    def refresh_gauges(self) -> None:
        """Every gauge read from the store (every 30 s, and after what changes them)."""
        store_metrics.refresh(self.metrics, self.store, self.site)

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
