"""Is the daemon healthy? The problems `badged status` (exit 1) and STATUS= report.

Degraded: pcscd down, a configured reader or SAM missing, a job whose last run failed, a
batch still pending past its retry time (the delivery job should have taken it) or past
its exchange's CROUS deadline. A batch waiting for its backoff is not a problem yet: the
outbox retries it by itself.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .. import clock
from ..config.model import ExchangeKind
from ..config.tree import Site
from ..crous.deadlines import academic_year_start, deadline
from ..store import exchanges as sent_batches
from ..store import stock
from ..store.outbox import iso

# The delivery job runs every minute: a batch whose retry time is older than this was
# not taken by it (the job fails, or the daemon is stuck).
RETRY_GRACE = timedelta(minutes=5)


@dataclass(frozen=True)
class Outbox:
    pending: list[dict[str, Any]]
    problems: list[str]


def outbox(conn: sqlite3.Connection, site: Site, now: datetime) -> Outbox:
    """The pending batches (id, kind, attempts, next attempt, last error, deadline) and
    those past their retry time or their deadline."""
    pending, problems = [], []
    rows = conn.execute(
        "SELECT id, kind, attempts, next_attempt_at, last_error, created_at FROM batches "
        "WHERE state = 'pending' ORDER BY id").fetchall()
    for id_, kind, attempts, next_at, error, created in rows:
        due = None
        if kind in {k.value for k in site.crous.deadlines}:
            due = deadline(datetime.fromisoformat(created), site.crous.deadlines[
                ExchangeKind(kind)], site.school.academic_year_start)
        pending.append({"id": id_, "kind": kind, "attempts": attempts,
                        "next_attempt_at": next_at, "last_error": error,
                        "deadline": due.isoformat() if due else None})
        if due is not None and due <= now:
            problems.append(f"batch {id_} ({kind}) still pending after its CROUS deadline "
                            f"{due:%Y-%m-%d}")
        elif next_at and datetime.fromisoformat(next_at) + RETRY_GRACE <= now:
            problems.append(f"batch {id_} ({kind}) pending past its retry time {next_at}"
                            + (f": {error}" if error else ""))
    return Outbox(pending, problems)


def deadlines(conn: sqlite3.Connection, site: Site, now: datetime) -> list[dict[str, Any]]:
    """This academic year's CROUS deadline of each exchange that has one; `late` when it
    passed and no file of that kind went by mail since the year began (the test of the
    BadgedCrousDeadlineMissed alert; an API exchange is told person by person instead)."""
    out = []
    year_start = iso(academic_year_start(now, site.school.academic_year_start))
    for ex in site.school.exchanges:
        if ex.kind in site.crous.deadlines:
            at = deadline(now, site.crous.deadlines[ex.kind], site.school.academic_year_start)
            late = (at <= now and ex.transport == "mail"
                    and sent_batches.first_sent_since(conn, ex.kind.value, year_start) is None)
            out.append({"kind": ex.kind.value, "at": at.isoformat(), "passed": at <= now,
                        "late": late})
    return sorted(out, key=lambda d: d["at"])


def stock_state(conn: sqlite3.Connection, site: Site) -> dict[str, Any]:
    level = stock.level(conn)
    threshold = site.school.card_stock.low_threshold
    return {"level": level, "low_threshold": threshold, "low": level < threshold}


def problems(snapshot: dict[str, Any], jobs: list[dict[str, Any]], box: Outbox) -> list[str]:
    found = []
    if not snapshot["pcscd"]:
        found.append("pcscd down")
    found += [f"reader {name} missing" for name, up in sorted(snapshot["readers"].items())
              if not up]
    found += [f"SAM {name} missing" for name, up in sorted(snapshot["sams"].items())
              if not up]
    found += [f"job {job['name']} failing: {job['last_error']}" for job in jobs
              if job["last_error"]]
    return found + box.problems


def now_utc() -> datetime:
    return clock.now()
