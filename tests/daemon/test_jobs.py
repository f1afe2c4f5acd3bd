"""JobRunner: schedules, survivable runs, persistence, metrics and catch-up on a fake clock.

The `schedule` library reads the wall clock through its module's `datetime`; the tests
give it the same fake clock as the runner, so no test ever sleeps.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import schedule as schedule_lib

from badged.config.schedules import parse_schedule
from badged.daemon.jobs import (
    JobRunner,
    JobsStoppingError,
    UnknownJobError,
    _library_job,
    missed_run,
    next_slot_after,
)
from badged.daemon.metrics import Metrics
from badged.store import jobs as job_store
from badged.store.db import open_store

MONDAY_9AM = dt.datetime(2025, 1, 13, 9, 0)  # a Monday, far from DST changes


def ts(when: dt.datetime) -> float:
    return when.timestamp()


class FakeClock:
    def __init__(self, start: dt.datetime) -> None:
        self.now = ts(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def set(self, when: dt.datetime) -> None:
        self.now = ts(when)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock(MONDAY_9AM)

    class FakeDatetime(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> FakeDatetime:  # type: ignore[override]
            return cls.fromtimestamp(fake.now, tz)

    shim = types.SimpleNamespace(**{k: getattr(dt, k) for k in dir(dt) if not k.startswith("__")})
    shim.datetime = FakeDatetime
    monkeypatch.setattr(schedule_lib, "datetime", shim)
    return fake


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = open_store(tmp_path)
    yield c
    c.close()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def runner(conn: sqlite3.Connection, metrics: Metrics, clock: FakeClock) -> JobRunner:
    return JobRunner(conn, metrics, clock=clock)


def sample(metrics: Metrics, name: str, task: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"task": task})


class Calls:
    """A job function that counts its calls and can fail or take (fake) time."""

    def __init__(self, clock: FakeClock | None = None, takes: float = 0.0,
                 fail: bool = False) -> None:
        self.count = 0
        self.clock, self.takes, self.fail = clock, takes, fail

    def __call__(self) -> str:
        self.count += 1
        if self.clock:
            self.clock.advance(self.takes)
        if self.fail:
            raise RuntimeError("SMTP relay refused: 554")
        return f"run {self.count}"


# --- schedule translation and slots ------------------------------------------------------

@pytest.mark.parametrize(("text", "unit", "interval", "at", "start_day"), [
    ("every 15 minutes", "minutes", 15, None, None),
    ("every minute", "minutes", 1, None, None),
    ("every 6 hours", "hours", 6, None, None),
    ("every 2 days", "days", 2, None, None),
    ("every week", "weeks", 1, None, None),
    ("every day at 06:30", "days", 1, dt.time(6, 30), None),
    ("every monday at 07:00", "weeks", 1, dt.time(7, 0), "monday"),
    ("every hour at :15", "hours", 1, dt.time(0, 15), None),
])
def test_schedule_translation(text: str, unit: str, interval: int, at: dt.time | None,
                              start_day: str | None) -> None:
    job = _library_job(schedule_lib.Scheduler(), parse_schedule(text))
    assert (job.unit, job.interval, job.at_time, job.start_day) == (unit, interval, at,
                                                                    start_day)


@pytest.mark.parametrize(("text", "after", "expected"), [
    ("every 15 minutes", dt.datetime(2025, 1, 13, 9, 0), dt.datetime(2025, 1, 13, 9, 15)),
    ("every day at 06:30", dt.datetime(2025, 1, 13, 6, 29), dt.datetime(2025, 1, 13, 6, 30)),
    ("every day at 06:30", dt.datetime(2025, 1, 13, 6, 30), dt.datetime(2025, 1, 14, 6, 30)),
    ("every day at 06:30", dt.datetime(2025, 1, 13, 9, 0), dt.datetime(2025, 1, 14, 6, 30)),
    ("every monday at 07:00", dt.datetime(2025, 1, 13, 6, 0), dt.datetime(2025, 1, 13, 7, 0)),
    ("every monday at 07:00", dt.datetime(2025, 1, 13, 7, 0), dt.datetime(2025, 1, 20, 7, 0)),
    ("every friday at 18:00", dt.datetime(2025, 1, 13, 9, 0), dt.datetime(2025, 1, 17, 18, 0)),
    ("every hour at :15", dt.datetime(2025, 1, 13, 9, 14), dt.datetime(2025, 1, 13, 9, 15)),
    ("every hour at :15", dt.datetime(2025, 1, 13, 9, 15), dt.datetime(2025, 1, 13, 10, 15)),
])
def test_next_slot_after(text: str, after: dt.datetime, expected: dt.datetime) -> None:
    assert next_slot_after(parse_schedule(text), ts(after)) == ts(expected)


def test_missed_run() -> None:
    daily = parse_schedule("every day at 06:30")
    now = ts(MONDAY_9AM)
    assert missed_run(daily, ts(dt.datetime(2025, 1, 12, 6, 30)), now)
    assert not missed_run(daily, ts(dt.datetime(2025, 1, 13, 6, 30)), now)
    assert not missed_run(daily, None, now)  # never ran: wait for the first slot


# --- running -----------------------------------------------------------------------------

def test_interval_job_runs_at_its_slots(runner: JobRunner, clock: FakeClock,
                                        metrics: Metrics, conn: sqlite3.Connection) -> None:
    job = Calls(clock, takes=2.5)
    runner.add("outbox", parse_schedule("every 15 minutes"), job)
    assert runner.run_pending() == []  # never ran: no catch-up, first slot in 15 min
    assert runner.seconds_until_next() == 900
    assert sample(metrics, "badged_task_last_run_timestamp_seconds", "outbox") == 0
    assert sample(metrics, "badged_task_interval_seconds", "outbox") == 900
    clock.advance(899)
    assert runner.run_pending() == []
    clock.advance(1)
    started = clock.now
    [result] = runner.run_pending()
    assert (result.name, result.ok, result.value, result.trigger) == ("outbox", True,
                                                                      "run 1", "schedule")
    assert result.started == started and result.duration == 2.5
    record = job_store.get(conn, "outbox")
    assert record.last_run_at == started and record.last_success_at == started
    assert sample(metrics, "badged_task_last_run_timestamp_seconds", "outbox") == started
    assert sample(metrics, "badged_task_last_success_timestamp_seconds", "outbox") == started
    assert sample(metrics, "badged_task_duration_seconds", "outbox") == 2.5
    assert runner.seconds_until_next() == 900  # rescheduled from the run's end
    assert runner.next_run("outbox") == started + 2.5 + 900


def test_failures_are_survived_counted_persisted_and_logged_once(
        runner: JobRunner, clock: FakeClock, metrics: Metrics, conn: sqlite3.Connection,
        caplog: pytest.LogCaptureFixture) -> None:
    bad, good = Calls(fail=True), Calls()
    runner.add("exchange:personnels", parse_schedule("every 5 minutes"), bad)
    runner.add("outbox", parse_schedule("every 5 minutes"), good)
    clock.advance(300)
    with caplog.at_level(logging.INFO, logger="badged.daemon.jobs"):
        results = runner.run_pending()
    assert [(r.name, r.ok) for r in results] == [("exchange:personnels", False), ("outbox", True)]
    assert results[0].error == "RuntimeError: SMTP relay refused: 554"
    errors = [r for r in caplog.records if r.levelno >= logging.INFO and r.exc_info]
    assert errors == []  # no traceback above DEBUG
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "exchange:personnels" in line and "SMTP relay refused: 554" in line
    record = job_store.get(conn, "exchange:personnels")
    assert record.failures == 1 and record.last_success_at is None
    assert record.last_error == "RuntimeError: SMTP relay refused: 554"
    assert sample(metrics, "badged_task_failures_total", "exchange:personnels") == 1
    assert sample(metrics, "badged_task_last_success_timestamp_seconds",
                  "exchange:personnels") == 0
    assert sample(metrics, "badged_task_last_run_timestamp_seconds",
                  "exchange:personnels") == clock.now
    with caplog.at_level(logging.DEBUG, logger="badged.daemon.jobs"):
        clock.advance(300)
        runner.run_pending()
    assert any(r.exc_info for r in caplog.records if r.levelno == logging.DEBUG)
    assert sample(metrics, "badged_task_failures_total", "exchange:personnels") == 2


def test_store_failure_does_not_kill_the_loop(runner: JobRunner, clock: FakeClock,
                                              conn: sqlite3.Connection, metrics: Metrics,
                                              caplog: pytest.LogCaptureFixture) -> None:
    runner.add("outbox", parse_schedule("every minute"), Calls())
    conn.execute("DROP TABLE job_runs")
    clock.advance(60)
    [result] = runner.run_pending()
    assert result.ok
    assert "cannot record the run" in caplog.text
    assert sample(metrics, "badged_task_last_success_timestamp_seconds", "outbox") == clock.now


def test_run_now(runner: JobRunner, metrics: Metrics) -> None:
    job = Calls()
    runner.add("exchange:reinscriptions", parse_schedule("every day at 06:30"), job)
    runner.add("crous-sync", None, Calls(fail=True))
    next_before = runner.next_run("exchange:reinscriptions")
    result = runner.run_now("exchange:reinscriptions")
    assert (result.ok, result.value, result.trigger) == (True, "run 1", "manual")
    assert runner.next_run("exchange:reinscriptions") == next_before  # schedule kept
    assert not runner.run_now("crous-sync").ok
    assert sample(metrics, "badged_task_interval_seconds", "crous-sync") == 0
    assert runner.next_run("crous-sync") is None
    with pytest.raises(UnknownJobError, match="no job named 'nope'"):
        runner.run_now("nope")
    runner.stop.set()
    with pytest.raises(JobsStoppingError):
        runner.run_now("crous-sync")


def test_unscheduled_only_runner_has_no_next(runner: JobRunner) -> None:
    assert runner.seconds_until_next() is None
    runner.add("crous-sync", None, Calls())
    assert runner.seconds_until_next() is None
    assert runner.run_pending() == []


def test_stop_is_checked_between_jobs(runner: JobRunner, clock: FakeClock) -> None:
    second = Calls()

    def first() -> None:
        runner.stop.set()  # SIGTERM arrives while the first job runs

    runner.add("a", parse_schedule("every minute"), first)
    runner.add("b", parse_schedule("every minute"), second)
    clock.advance(60)
    assert [r.name for r in runner.run_pending()] == ["a"]  # a finished, b not started
    assert second.count == 0


def test_one_job_at_a_time(runner: JobRunner, clock: FakeClock) -> None:
    inside, release = threading.Event(), threading.Event()
    running = []

    def slow() -> None:
        running.append("slow")
        inside.set()
        release.wait(5)
        running.remove("slow")

    def other() -> list[str]:
        return list(running)

    runner.add("slow", None, slow)
    runner.add("other", None, other)
    t = threading.Thread(target=runner.run_now, args=("slow",))
    t.start()
    assert inside.wait(5)
    assert [i.running for i in runner.info()] == [True, False]
    result: list[object] = []
    t2 = threading.Thread(target=lambda: result.append(runner.run_now("other")))
    t2.start()
    release.set()
    t.join(5)
    t2.join(5)
    assert result[0].value == []  # type: ignore[attr-defined]


# --- catch-up ----------------------------------------------------------------------------

def test_missed_daily_run_catches_up_once(conn: sqlite3.Connection, metrics: Metrics,
                                          clock: FakeClock) -> None:
    yesterday = ts(dt.datetime(2025, 1, 12, 6, 30, 1))
    job_store.record(conn, "exchange:personnels", yesterday, None)
    runner = JobRunner(conn, metrics, clock=clock)
    job = Calls()
    runner.add("exchange:personnels", parse_schedule("every day at 06:30"), job)
    assert sample(metrics, "badged_task_last_run_timestamp_seconds",
                  "exchange:personnels") == yesterday
    assert runner.seconds_until_next() == 0
    [result] = runner.run_pending()
    assert result.trigger == "catch-up" and job.count == 1
    assert runner.run_pending() == []
    assert runner.next_run("exchange:personnels") == ts(dt.datetime(2025, 1, 14, 6, 30))
    clock.set(dt.datetime(2025, 1, 14, 6, 30))
    [result] = runner.run_pending()
    assert result.trigger == "schedule" and job.count == 2


def test_no_catch_up_when_no_slot_passed(conn: sqlite3.Connection, metrics: Metrics,
                                         clock: FakeClock) -> None:
    job_store.record(conn, "exchange:personnels", ts(dt.datetime(2025, 1, 13, 6, 30)), None)
    job_store.record(conn, "weekly", ts(dt.datetime(2025, 1, 6, 10, 0)), None)
    runner = JobRunner(conn, metrics, clock=clock)
    runner.add("exchange:personnels", parse_schedule("every day at 06:30"), Calls())
    runner.add("weekly", parse_schedule("every monday at 10:00"), Calls())
    assert runner.run_pending() == []
    assert runner.next_run("weekly") == ts(dt.datetime(2025, 1, 13, 10, 0))
    assert runner.seconds_until_next() == 3600


def test_failed_last_run_catches_up_only_after_a_slot(conn: sqlite3.Connection,
                                                      metrics: Metrics,
                                                      clock: FakeClock) -> None:
    job_store.record(conn, "weekly", ts(dt.datetime(2025, 1, 6, 7, 0)), "boom")
    runner = JobRunner(conn, metrics, clock=clock)
    runner.add("weekly", parse_schedule("every monday at 07:00"), Calls())
    assert sample(metrics, "badged_task_last_success_timestamp_seconds", "weekly") == 0
    [result] = runner.run_pending()  # Monday 07:00 passed while down
    assert result.trigger == "catch-up"


def test_interval_job_goes_on_from_its_last_run(conn: sqlite3.Connection, metrics: Metrics,
                                                clock: FakeClock) -> None:
    job_store.record(conn, "outbox", clock.now - 600, None)
    job_store.record(conn, "stale", clock.now - 7200, None)
    runner = JobRunner(conn, metrics, clock=clock)
    runner.add("outbox", parse_schedule("every 15 minutes"), Calls())
    runner.add("stale", parse_schedule("every hour"), Calls())
    assert runner.next_run("outbox") == clock.now + 300  # not 15 min after this start
    assert [r.name for r in runner.run_pending()] == ["stale"]
    assert runner.next_run("stale") == clock.now + 3600


def test_caught_up_jobs_run_first(conn: sqlite3.Connection, metrics: Metrics,
                                  clock: FakeClock) -> None:
    job_store.record(conn, "daily", ts(dt.datetime(2025, 1, 12, 8, 0)), None)
    runner = JobRunner(conn, metrics, clock=clock)
    runner.add("minutely", parse_schedule("every minute"), Calls())
    runner.add("daily", parse_schedule("every day at 08:00"), Calls())
    clock.advance(60)
    assert [r.name for r in runner.run_pending()] == ["daily", "minutely"]


def test_replace_and_remove(runner: JobRunner, metrics: Metrics, clock: FakeClock) -> None:
    runner.add("x", parse_schedule("every minute"), Calls(fail=True))
    clock.advance(60)
    runner.run_pending()
    runner.add("x", parse_schedule("every 2 minutes"), Calls())  # a reload
    assert runner.names == ["x"] and len(runner.scheduler.jobs) == 1
    assert sample(metrics, "badged_task_interval_seconds", "x") == 120
    assert sample(metrics, "badged_task_failures_total", "x") == 1  # counter goes on
    runner.remove("x")
    assert runner.names == [] and runner.scheduler.jobs == []
    assert sample(metrics, "badged_task_interval_seconds", "x") is None
    with pytest.raises(UnknownJobError):
        runner.remove("x")
    runner.add("y", None, Calls())
    runner.clear()
    assert runner.names == []


def test_info(runner: JobRunner, clock: FakeClock) -> None:
    runner.add("daily", parse_schedule("every day at 06:30"), Calls(fail=True))
    runner.add("crous-sync", None, Calls())
    runner.run_now("daily")
    daily, sync = runner.info()
    assert daily.name == "daily" and daily.schedule == "every day at 06:30"
    assert daily.interval_seconds == 86400
    assert daily.next_run == ts(dt.datetime(2025, 1, 14, 6, 30))
    assert daily.last_run == clock.now and daily.last_success is None
    assert daily.failures == 1 and daily.last_error.startswith("RuntimeError")
    assert (sync.schedule, sync.next_run, sync.last_run, sync.failures) == (None, None,
                                                                            None, 0)


def test_private_scheduler(runner: JobRunner) -> None:
    runner.add("x", parse_schedule("every minute"), Calls())
    assert schedule_lib.get_jobs() == []  # the module-level default scheduler is untouched
