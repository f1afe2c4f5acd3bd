"""Last run and last success of scheduled jobs, so a missed run catches up at start-up."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True)
class JobRun:
    job: str
    last_run_at: float | None
    last_success_at: float | None
    last_error: str | None
    failures: int


def get(conn: sqlite3.Connection, job: str) -> JobRun | None:
    row = conn.execute("SELECT * FROM job_runs WHERE job = ?", (job,)).fetchone()
    return JobRun(**dict(row)) if row else None


def all_runs(conn: sqlite3.Connection) -> list[JobRun]:
    return [JobRun(**dict(r)) for r in conn.execute("SELECT * FROM job_runs ORDER BY job")]


def record(conn: sqlite3.Connection, job: str, at: float, error: str | None) -> None:
    """Record one run: a success clears the error, a failure counts."""
    conn.execute(
        "INSERT INTO job_runs (job, last_run_at, last_success_at, last_error, failures) "
        "VALUES (:job, :at, CASE WHEN :error IS NULL THEN :at END, :error, "
        "        CASE WHEN :error IS NULL THEN 0 ELSE 1 END) "
        "ON CONFLICT (job) DO UPDATE SET last_run_at = :at, "
        "  last_success_at = CASE WHEN :error IS NULL THEN :at ELSE last_success_at END, "
        "  last_error = :error, "
        "  failures = CASE WHEN :error IS NULL THEN failures ELSE failures + 1 END",
        {"job": job, "at": at, "error": error},
    )
