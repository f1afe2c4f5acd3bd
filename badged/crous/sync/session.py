"""One sync run's shared state and plumbing, under the holder and card steps: the store
transaction of each step, each call with the "is the CROUS down?" count, and the
bookkeeping of refusals (stored, counted, cleared when the subject is told)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ...config.tree import Site
from ...store import crous_api as told_store
from ..api import AmbiguousWrite, Answer, CrousClient, TransientError
from .plan import PlannedCall
from .refusals import Abort, Failure, judge

log = logging.getLogger(__name__)

ABORT_AFTER_TRANSIENT = 5           # consecutive unanswered calls: the CROUS is down
CLOSED_ACCOUNTS = frozenset({"CLOTURE", "CLOTURE_EN_COURS"})   # accountStatus values


@dataclass
class SyncReport:
    dry_run: bool
    kinds: list[str]
    people: int = 0
    cards: int = 0
    calls: int = 0
    done: int = 0
    failed: int = 0
    pending: int = 0
    outcome: str = "ok"
    duration: float = 0.0
    planned: list[PlannedCall] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def aborted(self) -> bool:
        return self.outcome.startswith("aborted")

    def to_json(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "kinds": self.kinds, "people": self.people,
                "cards": self.cards, "calls": self.calls, "done": self.done,
                "failed": self.failed, "pending": self.pending, "outcome": self.outcome,
                "duration_seconds": round(self.duration, 3),
                "planned": [c.to_json() for c in self.planned], "failures": self.failures}


class Session:
    """What the steps of one run share; `run.Syncer` is the run itself."""

    def __init__(self, conn: sqlite3.Connection, site: Site, client: CrousClient,
                 now: datetime, report: SyncReport) -> None:
        self.conn = conn
        self.site = site
        self.client = client
        self.now = now
        self.report = report
        self.transient_streak = 0
        self.leaving = False    # the current person is a départ: a closed account stays so
        # Subjects with a stored error: only those have one to clear on success.
        self.in_error = {(e.subject, e.key) for e in told_store.errors(conn)}

    @contextmanager
    def _tx(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def _call(self, fn: Callable[..., Answer], *args: Any) -> Answer:
        try:
            answer = fn(*args)
        except AmbiguousWrite:
            raise
        except TransientError as exc:
            self._transient()
            raise Failure(getattr(fn, "__name__", "call").replace("_", "-"), None, exc.code,
                          f"no answer: {exc}", False, transient=True) from None
        if answer.status >= 500 or answer.status == 429:
            self._transient()
        else:
            self.transient_streak = 0
        return answer

    def _reopen_if_closed(self, identifier: str, holder: dict[str, Any] | None) -> bool:
        """Re-open the holder's IZLY account if it is closed and the person is not leaving
        (a person the school says has rights, and a card, needs it open); True if done."""
        if self.leaving or holder is None or holder.get("accountStatus") not in \
                CLOSED_ACCOUNTS:
            return False
        answer = self._call(self.client.reopen_holder, identifier)
        if not answer.ok and answer.status != 404:  # 404: not closed (any more)
            raise judge("reopen-holder", answer)
        log.info("API CROUS holder's closed account re-opened")
        self.report.done += 1
        return True

    def _transient(self) -> None:
        self.transient_streak += 1
        if self.transient_streak >= ABORT_AFTER_TRANSIENT:
            raise Abort(f"aborted: the API CROUS did not answer {ABORT_AFTER_TRANSIENT} "
                        "calls in a row")


    def _fail(self, subject: str, key: str, person_id: str, failure: Failure,
              fingerprint: str | None) -> None:
        self.in_error.add((subject, key))
        with self._tx():
            tries = told_store.record_error(
                self.conn, subject, key, person_id, failure.op, failure.status, failure.code,
                failure.message, failure.blocking, fingerprint)
        self.report.failed += 1
        self.report.failures.append({
            "subject": subject, "key": key, "person": person_id, "operation": failure.op,
            "status": failure.status, "code": failure.code, "message": failure.message,
            "blocking": failure.blocking, "tries": tries})
        level = logging.WARNING if failure.blocking else logging.INFO
        log.log(level, "API CROUS %s %s (%s): %s%s", subject, key, failure.op, failure.message,
                " [blocking]" if failure.blocking else "")
