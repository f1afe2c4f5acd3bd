"""People's records expire (GDPR): who left more than `retention_days` ago is erased.

The daily `people-purge` job and `badged person purge` both call `purge`. A leaver is a
person whose leaving became effective (crous.changes.left_on: missing from their source's
full export past its grace days, or their rights ended) more than the school's
`retention_days` ago. Their records are erased from the store (store.retention: every
personal field, cards unlinked), and every batch whose files name them loses its file
contents and its archived .eml: what the CROUS was told stays as counts and checksums.

The archive's own retention (`archive_retention_days`) counts from the day a batch was
sent, which for a départ is after the person left: it does not bound how long a leaver's
data stays, so this purge drops those archives itself.

Logs say counts only: never a person's id, name or any of their values.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from ..config.tree import Site
from ..crous.archives import delete_archive
from ..crous.changes import left_on
from ..crous.deadlines import PARIS
from ..crous.mail import LEASE as OUTBOX_LEASE
from ..crous.mail import outbox_lease
from ..store import leases
from ..store import retention as store
from ..store.db import utcnow
from .lifecycle import actor as default_actor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Leaver:
    person_id: str
    left_on: date
    cards: int    # cards linked to them (unlinked by the purge)
    batches: int  # batches whose files name them (contents dropped by the purge)


@dataclass
class PurgeReport:
    dry_run: bool
    retention_days: int
    leavers: list[Leaver] = field(default_factory=list)
    archives_deleted: int = 0
    busy: str | None = None  # who holds the outbox lease when the purge had to wait

    @property
    def people(self) -> int:
        return len(self.leavers)

    @property
    def cards(self) -> int:
        return sum(x.cards for x in self.leavers)

    @property
    def batches(self) -> int:
        return len(self._batch_ids)

    _batch_ids: set[int] = field(default_factory=set)

    def to_json(self) -> dict[str, object]:
        return {"dry_run": self.dry_run, "retention_days": self.retention_days,
                "busy": self.busy,
                "people": self.people, "cards": self.cards, "batches": self.batches,
                "archives_deleted": self.archives_deleted,
                "leavers": [{"person_id": x.person_id, "left_on": x.left_on.isoformat(),
                             "cards": x.cards, "batches": x.batches} for x in self.leavers]}


def leavers(conn: sqlite3.Connection, site: Site, today: date) -> list[Leaver]:
    """Who left more than `retention_days` before `today` (Paris date)."""
    cutoff = today - timedelta(days=site.school.retention_days)
    found = []
    for person in store.candidates(conn):
        left = left_on(site, person, today)
        if left is not None and left < cutoff:
            found.append(Leaver(person["id"], left, len(store.cards_of(conn, person["id"])),
                                len(store.batches_of(conn, person["id"]))))
    return found


def purge(conn: sqlite3.Connection, site: Site, archive_dir: Path, now: datetime, *,
          dry_run: bool = False, actor: str | None = None,
          what: str = "badged person purge") -> PurgeReport:
    """Erase the leavers past retention (one transaction); `dry_run` only lists them.

    The purge drops batch files and archives: it holds the outbox lease (as the archive
    purge does), and when another process delivers it does nothing (`busy` says who): the
    next daily run, or the operator's retry, does it.
    """
    if dry_run:
        report = PurgeReport(dry_run, site.school.retention_days)
        report.leavers = leavers(conn, site, now.astimezone(PARIS).date())
        return report
    with outbox_lease(conn, what) as renew:
        if renew is None:
            holder = leases.holder(conn, OUTBOX_LEASE)
            return PurgeReport(dry_run, site.school.retention_days,
                               busy=holder.describe() if holder else "another process")
        return _purge(conn, site, archive_dir, now, actor)


def _purge(conn: sqlite3.Connection, site: Site, archive_dir: Path, now: datetime,
           actor: str | None) -> PurgeReport:
    report = PurgeReport(False, site.school.retention_days)
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        report.leavers = leavers(conn, site, now.astimezone(PARIS).date())
        if not report.leavers:
            return report
        stamp = utcnow()
        archives: list[Path] = []
        for leaver in report.leavers:
            for batch_id, archive, _state in store.batches_of(conn, leaver.person_id):
                if batch_id not in report._batch_ids:
                    report._batch_ids.add(batch_id)
                    store.purge_batch_files(conn, batch_id, stamp)
                    if archive:
                        archives.append(Path(archive))
            store.erase(conn, leaver.person_id)
        report.archives_deleted = _delete_archives(archives, archive_dir)
        store.record(conn, report.people, report.cards, report.batches,
                     actor or default_actor())
    log.info("retention: purged %d people past %d days (%d cards unlinked, %d batches' "
             "files and %d archives dropped)", report.people, report.retention_days,
             report.cards, report.batches, report.archives_deleted)
    return report


def _delete_archives(paths: list[Path], archive_dir: Path) -> int:
    """Delete archived .eml files under `archive_dir` (and their folders once empty)."""
    deleted = 0
    for path in paths:
        done = delete_archive(path, archive_dir)
        if done is None:
            log.warning("retention: an archive outside %s was left in place",
                        archive_dir.resolve())
        deleted += bool(done)
    return deleted
