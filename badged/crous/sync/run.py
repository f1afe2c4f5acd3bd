"""The API CROUS sync run: `sync` plans (plan.py), then tells the CROUS person by person
(holder first, then the cards), stops when the CROUS is down, its request budget spent or
its credentials refused, and records the run."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from ...config.model import ExchangeKind
from ...config.tree import Site
from ...store import crous_api as told_store
from ..api import AuthError, BudgetExhausted, CrousClient, RequestHook
from .cards import CardSteps
from .holders import HolderSteps
from .plan import PersonTask, api_kinds, describe, plan
from .refusals import Abort, Failure
from .session import SyncReport

log = logging.getLogger(__name__)


class SyncError(Exception):
    """The sync cannot run (no API exchange, no API section)."""


class Syncer(HolderSteps, CardSteps):
    """One run: `Syncer(conn, site, client, now, report).run(tasks)`."""

    def run(self, tasks: list[PersonTask]) -> None:
        report = self.report
        left = list(tasks)
        while left:
            t = left[0]
            try:
                self._person(t)
            except BudgetExhausted:
                report.outcome = "partial: request budget spent"
                break
            except AuthError as exc:
                report.outcome = f"aborted: {exc}"
                break
            except Abort as exc:
                report.outcome = str(exc)
                break
            left.pop(0)
        report.pending += sum(int(t.holder_due) + sum(c.action != "settle" for c in t.cards)
                              for t in left)

    def _person(self, t: PersonTask) -> None:
        """The holder first (when due), then the cards; a refused holder holds back the
        cards that need it (not the cancels)."""
        identifier = t.identifier
        self.leaving = t.desired is not None and t.desired.leaving
        holder_exists = t.told is not None
        created = False
        if t.holder_due and t.desired is not None:
            try:
                identifier, created = self._holder(t, t.desired)
                holder_exists = True
            except Failure as failure:
                self._fail("person", t.person_id, t.person_id, failure, t.desired.fingerprint)
                if not failure.proceed:  # its cards wait for the holder
                    t.cards = [c for c in t.cards if c.action in ("cancel", "settle")]
                holder_exists = holder_exists or failure.proceed
            t.holder_due = False
        for card in list(t.cards):
            if card.action == "settle":
                with self._tx():
                    if card.queued_up_to is not None:
                        told_store.mark_changes_sent(self.conn, card.csn, card.queued_up_to)
                if card.id_zdc is None:
                    log.info("card %s: %s", card.csn, card.why)
            elif card.action in ("add", "revalidate") and not holder_exists:
                pass
            else:
                try:
                    self._card(card, identifier, fresh_holder=created)
                except Failure as failure:
                    self._fail("card", card.csn, t.person_id, failure, card.fingerprint)
            t.cards.remove(card)


def sync(conn: sqlite3.Connection, site: Site, now: datetime, *, dry_run: bool = False,
         kinds: Iterable[ExchangeKind] | None = None, on_request: RequestHook | None = None,
         client: CrousClient | None = None, base_dir: Path | None = None) -> SyncReport:
    """`badged crous sync` and the scheduled job: plan, then (unless a dry run) tell."""
    if site.crous.api is None:
        raise SyncError(f"CROUS {site.school.crous} has no api section: the API CROUS "
                        "sync cannot run")
    chosen = list(api_kinds(site) if kinds is None else kinds)
    if not chosen:
        raise SyncError(f"school {site.id} has no exchange with transport api")
    started = time.monotonic()
    tasks = plan(conn, site, now, chosen)
    report = SyncReport(dry_run, [k.value for k in chosen])
    report.people = sum(t.holder_due for t in tasks)
    report.cards = sum(c.action != "settle" for t in tasks for c in t.cards)
    if dry_run:
        report.planned = describe(tasks)
        report.pending = sum(int(t.holder_due) + sum(c.action != "settle" for c in t.cards)
                             for t in tasks)
        report.duration = time.monotonic() - started
        return report
    run_id = told_store.start_run(conn)
    own = client is None
    if client is None:
        client = CrousClient(site.crous.api, base_dir or site.tree, on_request=on_request)
    try:
        Syncer(conn, site, client, now, report).run(tasks)
    finally:
        report.calls = client.calls
        if own:
            client.close()
        report.duration = time.monotonic() - started
        told_store.finish_run(conn, run_id, calls=report.calls, done=report.done,
                              failed=report.failed, pending=report.pending,
                              outcome=report.outcome, duration=report.duration)
    return report
