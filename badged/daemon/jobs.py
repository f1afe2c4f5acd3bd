"""Named jobs (exchanges, outbox delivery, …) run by the `schedule` library, survivably.

    runner = JobRunner(conn, metrics)
    runner.add("exchange:personnels", parse_schedule("every monday at 07:00"), send_personnels)
    runner.add("crous-sync", None, crous_sync)         # no schedule: run_now() only
    while not stop.is_set():
        runner.run_pending()
        stop.wait(min(runner.seconds_until_next() or 60, watchdog_interval))
    result = runner.run_now("exchange:personnels")     # `badged exchange run`

Every run — scheduled, caught up or on demand — is wrapped: an exception is logged (one
line with the job's name; the traceback at DEBUG), persisted (`store.jobs.record`) and
counted; the metrics `badged_task_*{task}` follow. One job runs at a time (a lock shared
with `run_now`); `stop` is checked between jobs, so SIGTERM lets the current job finish.

Catch-up (docs/design.md, "a job missed while the host was down runs at start-up"): when a
job is added, its last run is read from the store. If a scheduled time passed since that
run (e.g. `every day at 06:30`, last run yesterday 06:30, started today 09:00), the job is
due at once and runs in the next `run_pending()`; after it, the schedule goes on from its
next slot. A job that never ran (no record) is not caught up: it waits for its first slot
(a new install or a newly configured exchange must not fire at start-up), and its
`badged_task_last_run_timestamp_seconds` stays 0 meanwhile. A job run by the interval
(`every 6 hours`) is due again `interval` after its recorded run, not after the start, so
frequent restarts never starve it.

Time: timestamps, durations and catch-up use `clock` (default `time.time`). The `schedule`
library keeps its own wall clock (naive local time) for firing, so `clock` must be
`time.time` in production; tests shim `schedule.datetime` to the same fake clock.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import schedule as schedule_lib

from ..config.schedules import WEEKDAYS, Schedule
from ..store import jobs as job_store
from .metrics import Metrics

log = logging.getLogger(__name__)

# Success lines of jobs running at least this often go to DEBUG, not INFO (journal noise).
_QUIET_BELOW_SECONDS = 3600


class UnknownJobError(LookupError):
    """`run_now` or `remove` named a job that is not registered."""

    def __str__(self) -> str:
        return f"no job named {self.args[0]!r}"


class JobsStoppingError(RuntimeError):
    """`run_now` after the stop event was set: the daemon is shutting down."""


@dataclass(frozen=True)
class JobResult:
    """One run: `started` (Unix time), `duration` (s), `error` ("Type: message") or None,
    `value` (what the job function returned), `trigger` (schedule, catch-up, manual)."""

    name: str
    started: float
    duration: float
    error: str | None
    value: Any = None
    trigger: str = "schedule"

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class JobInfo:
    """A job's state for `badged status`: times are Unix times or None."""

    name: str
    schedule: str | None
    interval_seconds: int
    next_run: float | None
    last_run: float | None
    last_success: float | None
    last_error: str | None
    failures: int
    running: bool


@dataclass
class _Entry:
    name: str
    schedule: Schedule | None
    func: Callable[[], Any]
    job: schedule_lib.Job | None
    catch_up: bool = False
    running: bool = False


def next_slot_after(schedule: Schedule, after: float) -> float:
    """The first scheduled time strictly after Unix time `after` (local wall clock)."""
    if schedule.at is None and schedule.unit not in WEEKDAYS:
        return after + schedule.interval_seconds
    start = dt.datetime.fromtimestamp(after)
    if schedule.unit == "hour":  # "every hour at :MM"
        minute = int((schedule.at or ":00")[1:])
        slot = start.replace(minute=minute, second=0, microsecond=0)
        step = dt.timedelta(hours=schedule.every)
    else:
        hour, minute = (int(x) for x in (schedule.at or "00:00").split(":"))
        slot = start.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if schedule.unit in WEEKDAYS:
            slot += dt.timedelta(days=(WEEKDAYS.index(schedule.unit) - start.weekday()) % 7)
            step = dt.timedelta(weeks=1)
        else:
            step = dt.timedelta(days=schedule.every)
    while slot <= start:
        slot += step
    return slot.timestamp()


def missed_run(schedule: Schedule, last_run: float | None, now: float) -> bool:
    """True if a scheduled time passed since `last_run` (never-run jobs: False)."""
    return last_run is not None and next_slot_after(schedule, last_run) <= now


def _library_job(scheduler: schedule_lib.Scheduler, schedule: Schedule) -> schedule_lib.Job:
    """`every 15 minutes` → every(15).minutes, `every day at 06:30` → every().day.at(…),
    `every monday at 07:00` → every().monday.at(…), `every hour at :15` → every().hour.at(…)."""
    if schedule.unit in WEEKDAYS:
        job = getattr(scheduler.every(), schedule.unit)
    else:
        job = getattr(scheduler.every(schedule.every), schedule.unit + "s")
    return job.at(schedule.at) if schedule.at is not None else job


class JobRunner:
    """The registry of named jobs on a private `schedule.Scheduler`."""

    def __init__(self, conn: sqlite3.Connection, metrics: Metrics,
                 clock: Callable[[], float] = time.time,
                 stop: threading.Event | None = None) -> None:
        self.conn = conn
        self.metrics = metrics
        self.clock = clock
        self.stop = stop if stop is not None else threading.Event()
        self.scheduler = schedule_lib.Scheduler()
        self._jobs: dict[str, _Entry] = {}
        self._run_lock = threading.Lock()

    # registry ------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return list(self._jobs)

    def add(self, name: str, schedule: Schedule | None, func: Callable[[], Any]) -> None:
        """Register `func` (no arguments) as job `name`; None: run on demand only.

        Adding an existing name replaces it (a reload); its failure counter goes on.
        """
        if name in self._jobs:
            self._cancel(name)
        record = job_store.get(self.conn, name)
        last_run = record.last_run_at if record else None
        entry = _Entry(name, schedule, func, None)
        interval = schedule.interval_seconds if schedule else 0
        self.metrics.register_task(name, interval, last_run,
                                   record.last_success_at if record else None)
        if schedule is not None:
            job = _library_job(self.scheduler, schedule).do(self._run_scheduled, name)
            job.tag(name)
            now = self.clock()
            if missed_run(schedule, last_run, now):
                entry.catch_up = True
                job.next_run = dt.datetime.fromtimestamp(now)
                log.info("job %s: a scheduled run was missed since %s, running it now",
                         name, _fmt(last_run))
            elif last_run is not None and schedule.at is None:
                # An interval job goes on from its last run, not from this start.
                job.next_run = dt.datetime.fromtimestamp(last_run + interval)
            entry.job = job
        self._jobs[name] = entry

    def remove(self, name: str) -> None:
        """Unregister a job and drop its metric series."""
        if name not in self._jobs:
            raise UnknownJobError(name)
        self._cancel(name)
        del self._jobs[name]
        self.metrics.forget_task(name)

    def clear(self) -> None:
        for name in list(self._jobs):
            self.remove(name)

    def _cancel(self, name: str) -> None:
        job = self._jobs[name].job
        if job is not None:
            self.scheduler.cancel_job(job)

    # running -------------------------------------------------------------------------

    def run_pending(self) -> list[JobResult]:
        """Run the due jobs (caught-up ones first), one at a time, until `stop` is set."""
        results = []
        due = sorted((e for e in self._jobs.values() if e.job is not None and e.job.should_run),
                     key=lambda e: (not e.catch_up, e.job.next_run))  # type: ignore[union-attr]
        for entry in due:
            if self.stop.is_set():
                log.info("stopping: %d due job(s) left for the next start", len(due) - len(results))
                break
            assert entry.job is not None
            result = entry.job.run()  # calls _run_scheduled, then reschedules
            if isinstance(result, JobResult):
                results.append(result)
        return results

    def seconds_until_next(self) -> float | None:
        """Seconds until the next scheduled run (0 if one is due), None if none scheduled."""
        idle = self.scheduler.idle_seconds
        return None if idle is None else max(0.0, idle)

    def next_run(self, name: str) -> float | None:
        """Unix time of the job's next scheduled run, None if unscheduled."""
        entry = self._entry(name)
        return entry.job.next_run.timestamp() if entry.job and entry.job.next_run else None

    def exclusive(self) -> threading.Lock:
        """`with runner.exclusive():` a one-off task on the jobs' connection, never at the
        same time as a job (e.g. a resend: it must not interleave with a delivery)."""
        return self._run_lock

    def run_now(self, name: str) -> JobResult:
        """Run a job at once (waiting for a running one to finish); its schedule is kept.

        Never raises for the job's own failure (see `JobResult.error`); raises UnknownJobError
        or JobsStoppingError.
        """
        self._entry(name)
        if self.stop.is_set():
            raise JobsStoppingError(f"badged is stopping: job {name} not started")
        return self._run(name, "manual")

    def _run_scheduled(self, name: str) -> JobResult:
        entry = self._jobs.get(name)
        trigger = "catch-up" if entry is not None and entry.catch_up else "schedule"
        return self._run(name, trigger)

    def _run(self, name: str, trigger: str) -> JobResult:
        entry = self._entry(name)
        with self._run_lock:
            entry.catch_up = False
            entry.running = True
            started = self.clock()
            log.debug("job %s: started (%s)", name, trigger)
            value, error = None, None
            try:
                value = entry.func()
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            finally:
                entry.running = False
            duration = max(0.0, self.clock() - started)
            if error is None:
                quiet = (trigger == "schedule" and entry.schedule is not None
                         and entry.schedule.interval_seconds < _QUIET_BELOW_SECONDS)
                log.log(logging.DEBUG if quiet else logging.INFO,
                        "job %s: done in %.1f s (%s)", name, duration, trigger)
            else:
                log.error("job %s: failed after %.1f s (%s): %s", name, duration, trigger,
                          error)
                log.debug("job %s: traceback", name, exc_info=True)
            try:
                job_store.record(self.conn, name, started, error)
            except sqlite3.Error as exc:
                log.error("job %s: cannot record the run in the store: %s", name, exc)
            self.metrics.task_run(name, started, duration, error is None)
            return JobResult(name, started, duration, error, value, trigger)

    # state ---------------------------------------------------------------------------

    def info(self) -> list[JobInfo]:
        """Every job's schedule, next run and recorded history (for `badged status`)."""
        out = []
        for name, entry in self._jobs.items():
            record = job_store.get(self.conn, name)
            out.append(JobInfo(
                name=name,
                schedule=entry.schedule.text if entry.schedule else None,
                interval_seconds=entry.schedule.interval_seconds if entry.schedule else 0,
                next_run=self.next_run(name),
                last_run=record.last_run_at if record else None,
                last_success=record.last_success_at if record else None,
                last_error=record.last_error if record else None,
                failures=record.failures if record else 0,
                running=entry.running,
            ))
        return out

    def _entry(self, name: str) -> _Entry:
        try:
            return self._jobs[name]
        except KeyError:
            raise UnknownJobError(name) from None


def _fmt(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).isoformat(timespec="seconds") if ts else "never"
