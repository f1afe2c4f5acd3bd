"""Plan and run a door-system export: what changed since the last delivery, then deliver.

    p = plan(conn, host, site, "til", now)          # the dry run: nothing written
    result = run(conn, host, site, "til", now)      # the job and `badged access export`

The store keeps, per export, the cards the door system holds (as last delivered) and the
digest of the files: the plan compares the population of now with them (cards added,
blocked, unblocked, changed, removed). An export identical to the previous one is not
rewritten (the door system would re-import for nothing); P2S gets only the cards whose
line changed, unless `full`. A failed delivery is recorded with a backoff (the daemon
retries when it is over) and the previous export stays in place.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..config.host import Host
from ..config.model import AccessExport, AccessFormat
from ..config.tree import Site
from ..crous.deadlines import PARIS
from ..store import access as store
from . import formats
from .destinations import Destination, DestinationError, describe, make
from .population import door_cards

BACKOFF_FIRST_SECONDS = 60.0
BACKOFF_MAX_SECONDS = 1800.0


class AccessError(Exception):
    """An export cannot be planned or delivered (unknown name, unencodable name, server…)."""


def backoff_seconds(failures: int) -> float:
    """Wait before retry after `failures` failed attempts in a row: 1, 2, 4 … 30 min."""
    return min(BACKOFF_FIRST_SECONDS * 2 ** max(0, failures - 1), BACKOFF_MAX_SECONDS)


def export_of(site: Site, name: str) -> AccessExport:
    try:
        return site.school.access_exports[name]
    except KeyError:
        known = ", ".join(sorted(site.school.access_exports)) or "none configured"
        raise AccessError(f"school {site.id} has no access export {name!r} "
                          f"(known: {known})") from None


def spec_of(site: Site, export: AccessExport) -> formats.Spec:
    return formats.Spec(
        format=export.format, csn=export.csn, school_name=site.school.name,
        layout=site.access_layouts.get(export.layout) if export.layout else None,
        max_lines=export.max_lines or formats.DEFAULT_P2S_LINES)


def file_name_of(name: str, export: AccessExport) -> str:
    return export.file_name or f"{name}.csv"


@dataclass(frozen=True)
class Change:
    csn: str
    person_id: str
    what: str  # added | blocked | unblocked | changed | removed
    state: str | None  # the card's state now (None if gone)


@dataclass
class Plan:
    """What an export would deliver now, and how it differs from the last delivery."""

    name: str
    format: AccessFormat
    destination: str
    cards: int
    valid: int
    blocked: int
    changes: list[Change]
    files: list[formats.RenderedFile]
    unchanged: bool
    digest: str
    marker: int
    lines: list[formats.Line] = field(repr=False, default_factory=list)

    def count(self, what: str) -> int:
        return sum(1 for c in self.changes if c.what == what)

    def to_json(self) -> dict[str, Any]:
        return {
            "export": self.name, "format": self.format.value,
            "destination": self.destination, "cards": self.cards, "valid": self.valid,
            "blocked": self.blocked, "unchanged": self.unchanged,
            "files": [{"name": f.name, "bytes": len(f.content),
                       "sha256": hashlib.sha256(f.content).hexdigest()} for f in self.files],
            "changes": {what: [{"csn": c.csn, "person": c.person_id, "state": c.state}
                               for c in self.changes if c.what == what]
                        for what in ("added", "blocked", "unblocked", "changed", "removed")},
        }


def _diff(lines: list[formats.Line], previous: dict[str, store.DeliveredCard]
          ) -> list[Change]:
    changes = []
    seen = set()
    for line in lines:
        card = line.card
        seen.add(card.csn)
        before = previous.get(card.csn)
        status = "valid" if card.valid else "blocked"
        if before is None:
            what = "added" if card.valid else "blocked"
        elif before.fingerprint == line.fingerprint:
            continue
        elif before.status != status:
            what = "unblocked" if card.valid else "blocked"
        else:
            what = "changed"
        changes.append(Change(card.csn, card.person_id, what, card.state))
    for csn in sorted(set(previous) - seen):
        changes.append(Change(csn, previous[csn].person_id, "removed", None))
    return changes


def plan(conn: sqlite3.Connection, host: Host, site: Site, name: str, now: datetime, *,
         full: bool = False, destination: Destination | None = None) -> Plan:
    """The export's files and changes as of `now`; reads the store, writes nothing."""
    export = export_of(site, name)
    spec = spec_of(site, export)
    marker = store.change_marker(conn)  # first: a change made meanwhile runs it again
    grace = {source: p.leaving_grace_days for source, p in site.school.population.items()}
    cards = door_cards(store.cards_with_holders(conn), now.astimezone(PARIS).date(), grace)
    lines = formats.lines(spec, cards)
    previous = store.delivered(conn, name)
    last = store.state(conn, name)
    changes = _diff(lines, previous)
    where = destination.description if destination else describe(export.destination,
                                                                 host.state_dir)
    base = file_name_of(name, export)
    epoch_ms = int(now.timestamp() * 1000)
    try:
        if export.format is AccessFormat.P2S:
            # Every card: the first time, when asked, or to a new destination.
            first = (full or last is None or last.last_written_at is None
                     or last.destination != where)
            changed = {c.csn for c in changes}
            due = lines if first else [li for li in lines if li.card.csn in changed]
            files = formats.files(spec, due, file_name=base, epoch_ms=epoch_ms)
            digest = hashlib.sha256(b"".join(f.content for f in files)).hexdigest()
            unchanged = not files
        else:
            files = formats.files(spec, lines, file_name=base, epoch_ms=epoch_ms)
            digest = hashlib.sha256(b"".join(f.content for f in files)).hexdigest()
            unchanged = (not full and last is not None and last.digest == digest
                         and last.destination == where
                         and (destination is None or destination.present(last.files)))
    except formats.RenderError as exc:
        raise AccessError(f"access export {name}: {exc}") from None
    valid = sum(1 for li in lines if li.card.valid)
    return Plan(name, export.format, where, len(lines), valid, len(lines) - valid, changes,
                [] if unchanged else files, unchanged, digest, marker, lines)


@dataclass
class RunResult:
    plan: Plan
    written: bool
    error: str | None = None
    failures: int = 0
    retry_at: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        return {**self.plan.to_json(), "written": self.written, "error": self.error,
                "failures": self.failures, "retry_at": self.retry_at}


def run(conn: sqlite3.Connection, host: Host, site: Site, name: str, now: datetime, *,
        full: bool = False) -> RunResult:
    """Plan, deliver if anything changed, record the outcome; never raises for a failed
    delivery (see `RunResult.error`): the store has the failure and its backoff."""
    export = export_of(site, name)
    destination = make(export.destination, state_dir=host.state_dir, tree=site.tree)
    at = now.timestamp()
    try:
        p = plan(conn, host, site, name, now, full=full, destination=destination)
    except AccessError as exc:  # e.g. a name the encoding lacks: fix the data, retried
        _failed(conn, name, str(exc), at)
        raise
    if not p.unchanged:
        try:
            destination.deliver(p.files, numbered=(file_name_of(name, export)
                                                   if export.format is AccessFormat.P2S
                                                   else None))
        except DestinationError as exc:
            failures, retry = _failed(conn, name, str(exc), at)
            return RunResult(p, False, str(exc), failures, retry)
    changed = {c.csn for c in p.changes if c.what != "removed"}
    store.record_success(
        conn, name, destination=p.destination, digest=p.digest,
        files=[f.name for f in p.files],
        upsert=[(li.card.csn, li.card.person_id, "valid" if li.card.valid else "blocked",
                 li.fingerprint) for li in p.lines if li.card.csn in changed],
        remove=[c.csn for c in p.changes if c.what == "removed"],
        count=p.cards, marker=p.marker, at=at, written=not p.unchanged)
    return RunResult(p, not p.unchanged)


def _failed(conn: sqlite3.Connection, name: str, error: str, at: float) -> tuple[int, float]:
    """Record a failed attempt; (failures in a row, when to retry)."""
    last = store.state(conn, name)
    failures = (last.failures if last else 0) + 1
    retry = at + backoff_seconds(failures)
    store.record_failure(conn, name, error=error, at=at, next_attempt_at=retry)
    return failures, retry


def due(exports: dict[str, AccessExport], states: dict[str, store.ExportState | None], *,
        marker: int, baseline: int, now: float) -> list[tuple[str, str]]:
    """Exports to run now outside their schedule, with why: a failed one whose backoff is
    over ("retry"), or an `on_change` one whose cards changed since its last success ("card
    change"; `baseline`: the marker when the daemon started, for one that never ran)."""
    out = []
    for name, export in exports.items():
        last = states.get(name)
        if last is not None and last.failures > 0:
            if (last.next_attempt_at or 0) <= now:
                out.append((name, "retry"))
            continue  # in its backoff: a card change waits for it too
        seen = last.change_marker if last is not None and last.last_success_at else baseline
        if export.on_change and marker > seen:
            out.append((name, "card change"))
    return out


def check(host: Host, site: Site, name: str) -> str:
    """Is the export's destination usable (folder writable; SFTP reachable, host key
    verified, logged in)? Nothing is written. A one-line summary, or DestinationError."""
    export = export_of(site, name)
    return make(export.destination, state_dir=host.state_dir, tree=site.tree).check()


__all__ = ["AccessError", "DestinationError", "Plan", "RunResult", "check", "plan", "run"]
