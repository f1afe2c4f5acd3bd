"""An exchange with the CROUS: plan it (dry run), or write its batch to the outbox.

The change set, the rendered file and the batch (with the people it tells about) are
written in one transaction, so a person's line is either in a batch or still due; the
outbox then delivers the batch. Mail bodies are in French: the CROUS's staff read them.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from ..config.host import Host
from ..config.model import Exchange, ExchangeKind
from ..config.tree import Site
from ..store import exchanges as store
from ..store.outbox import iso
from . import changes, layouts
from .archives import archive_folder
from .deadlines import academic_year_start, deadline_day, end_of, show_day
from .mail import (
    DeliveryReport,
    OutgoingFile,
    deliver_pending,
    make_due,
    resend,
    sender_for_host,
    write_batch,
)

LABELS = {ExchangeKind.REINSCRIPTIONS: "réinscriptions",
          ExchangeKind.PRIMO_ENTRANTS: "primo-entrants",
          ExchangeKind.PERSONNELS: "personnels",
          ExchangeKind.DEPARTS: "départs"}


class ExchangeError(Exception):
    """An exchange cannot be planned or written (unknown kind, unencodable file…)."""


@dataclass
class Plan:
    """What `exchange run KIND` would send now, to whom and why."""

    kind: ExchangeKind
    academic_year: int
    transport: str
    recipients: list[dict[str, str]]
    layout: str
    file_name: str
    changes: changes.ChangeSet
    deadline: date | None = None
    notes: list[str] = field(default_factory=list)
    late: bool = False

    @property
    def deadline_passes_at(self) -> datetime | None:
        """The instant the deadline day is over (24:00 Paris)."""
        return end_of(self.deadline) if self.deadline else None

    def lateness(self) -> str | None:
        """"late since …" when the deadline passed and this kind was not sent this year."""
        if not self.late or self.deadline is None:
            return None
        return (f"late since {show_day(self.deadline)} 24:00: the {LABELS[self.kind]} "
                f"deadline passed and no {self.kind.value} file was sent for "
                f"{self.academic_year}-{self.academic_year + 1}")

    def to_json(self) -> dict[str, Any]:
        passes = self.deadline_passes_at
        return {
            "kind": self.kind.value, "academic_year": self.academic_year,
            "transport": self.transport, "recipients": self.recipients,
            "layout": self.layout, "file_name": self.file_name,
            "count": len(self.changes.lines), "unchanged": self.changes.unchanged,
            "deadline": self.deadline.isoformat() if self.deadline else None,
            "deadline_passes_at": passes.isoformat() if passes else None,
            "late": self.late,
            "late_since": passes.isoformat() if self.late and passes else None,
            "lines": [{"person": line.person_id, "reason": line.reason}
                      for line in self.changes.lines],
            "notes": self.notes,
        }


    def reason_counts(self) -> dict[str, int]:
        """Lines per reason, the person-specific parts (index, dates, batch) left out;
        most frequent first."""
        counts: dict[str, int] = {}
        for line in self.changes.lines:
            group = reason_group(line.reason)
            counts[group] = counts.get(group, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


_PERSONAL = [
    (re.compile(r" \(changed since batch \d+\)"), ", changed since the last batch"),
    (re.compile(r" \(first enrolled \d{4}\)"), ""),
    (re.compile(r" index [^:\s]+"), ""),
    (re.compile(r" since \d{4}-\d{2}-\d{2}"), ""),
    (re.compile(r" ended \d{4}-\d{2}-\d{2}"), " ended"),
]


def reason_group(reason: str) -> str:
    """A line's reason without what is the person's own (index, dates, previous batch)."""
    for pattern, replacement in _PERSONAL:
        reason = pattern.sub(replacement, reason)
    return reason


def exchange_of(site: Site, kind: ExchangeKind) -> Exchange:
    for ex in site.school.exchanges:
        if ex.kind is kind:
            return ex
    known = ", ".join(e.kind.value for e in site.school.exchanges) or "none"
    raise ExchangeError(f"school {site.id} has no {kind.value} exchange (configured: {known})")


def plan(conn: sqlite3.Connection, site: Site, kind: ExchangeKind, now: datetime) -> Plan:
    ex = exchange_of(site, kind)
    layout_id, layout = site.layouts[kind]
    found = changes.compute(conn, site, kind, now)
    recipients = [{"mailbox": name, "address": site.crous.mailboxes[name]}
                  for name in ex.recipients]
    name = layouts.file_name(layout, school=site.id, uai=site.school.uai,
                             crous=site.school.crous, kind=kind.value, when=now.date())
    when = None
    if kind in site.crous.deadlines:
        when = deadline_day(now, site.crous.deadlines[kind], site.school.academic_year_start)
    result = Plan(kind, found.academic_year, ex.transport, recipients, layout_id, name, found,
                  when)
    result.late = is_late(conn, site, kind, when, now)
    if ex.transport == "api":
        result.notes.append("transport api: told to the API CROUS person by person by "
                            "`badged crous sync` (scheduled), not sent as a file")
    return result


def is_late(conn: sqlite3.Connection, site: Site, kind: ExchangeKind, day: date | None,
            now: datetime) -> bool:
    """The deadline day is over and no batch of this kind was sent since the start of the
    academic year (what the BadgedCrousDeadlineMissed alert says too)."""
    if day is None or now < end_of(day):
        return False
    year_start = academic_year_start(now, site.school.academic_year_start)
    return store.first_sent_since(conn, kind.value, iso(year_start)) is None


def _mail_text(site: Site, p: Plan, file: OutgoingFile) -> tuple[str, str]:
    label = LABELS[p.kind]
    season = f"{p.academic_year}-{p.academic_year + 1}"
    n = len(p.changes.lines)
    subject = f"{site.school.name} — {label} {season} : {n} personne{'s' * (n > 1)}"
    body = (f"Bonjour,\n\nVeuillez trouver ci-joint le fichier des {label} de "
            f"{site.school.name} (UAI {site.school.uai}) pour l'année universitaire "
            f"{season} : {n} personne{'s' * (n > 1)}.\n\n"
            f"Fichier : {file.name}\n"
            f"Empreinte SHA-256 : {hashlib.sha256(file.content).hexdigest()}\n\n"
            f"Message envoyé automatiquement par badged ; pour toute question : "
            f"{site.school.mail_from}.\n")
    return subject, body


def write(conn: sqlite3.Connection, site: Site, kind: ExchangeKind,
          now: datetime) -> tuple[Plan, int | None]:
    """Compute, render and write the batch in one transaction; (plan, batch id or None)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        p = plan(conn, site, kind, now)
        if p.transport != "mail":
            raise ExchangeError(f"{kind.value} goes by the API CROUS: run `badged crous "
                                "sync` (--dry-run shows what it would tell)")
        if not p.changes.lines:
            conn.execute("ROLLBACK")
            return p, None
        _, layout = site.layouts[kind]
        lines = p.changes.lines
        try:
            rendered = p.changes.render(layout, p.file_name)
        except layouts.RenderError as exc:
            raise ExchangeError(f"{kind.value}: {exc}") from None
        file = OutgoingFile(rendered.name, rendered.content, rendered.charset)
        subject, body = _mail_text(site, p, file)
        batch = write_batch(
            conn, school_id=site.id, kind=kind.value, mail_from=site.school.mail_from,
            recipients=[r["address"] for r in p.recipients], subject=subject, body=body,
            files=[file], items=[(li.person_id, li.fingerprint, li.reason) for li in lines],
            academic_year=p.academic_year, now=now)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return p, batch


def archive_dir(host: Host) -> Path:
    return archive_folder(host.state_dir)


def deliver(conn: sqlite3.Connection, host: Host, site: Site, now: datetime,
            metrics: Any = None, what: str = "badged") -> DeliveryReport:
    """Deliver the pending batches due now through the host's relay (or the demo maildir),
    unless another process (`report.busy`) is delivering the outbox."""
    sender = sender_for_host(host, site.school)
    return deliver_pending(conn, sender, now=now, archive_dir=archive_dir(host),
                           metrics=metrics, what=what)


def retry(conn: sqlite3.Connection, host: Host, site: Site, now: datetime,
          batch_id: int | None = None) -> tuple[list[int], DeliveryReport]:
    """`exchange retry [BATCH]`: pending batches due now despite their backoff, delivered."""
    ids = make_due(conn, batch_id)
    return ids, deliver(conn, host, site, now)


def retry_json(ids: list[int], report: DeliveryReport) -> dict[str, Any]:
    return {"retried": ids, "sent": report.sent, "failed": report.failed,
            "pending": report.pending,
            "errors": [f"batch {o.batch_id}: {o.error}" for o in report.outcomes if o.error]}


def send_again(conn: sqlite3.Connection, host: Host, site: Site, batch_id: int,
               now: datetime, actor: str) -> str:
    """`exchange resend BATCH`: a sent batch again, same Message-ID; its Message-ID."""
    return resend(conn, sender_for_host(host, site.school), batch_id, now=now, actor=actor)


@dataclass
class RunResult:
    plan: Plan
    batch_id: int | None
    delivery: DeliveryReport

    late: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.plan.kind.value, "count": len(self.plan.changes.lines),
                "batch": self.batch_id, "sent": self.delivery.sent,
                "failed": self.delivery.failed, "pending": self.delivery.pending,
                "errors": [o.error for o in self.delivery.outcomes if o.error],
                "waiting": [asdict(w) for w in self.delivery.waiting],
                "busy": self.delivery.busy,
                "deadline": self.plan.deadline.isoformat() if self.plan.deadline else None,
                "late": self.late}


def run(conn: sqlite3.Connection, host: Host, site: Site, kind: ExchangeKind, now: datetime,
        metrics: Any = None, what: str = "badged") -> RunResult:
    """`exchange run KIND` and the scheduled job: write the batch, then deliver the outbox."""
    p, batch = write(conn, site, kind, now)
    result = RunResult(p, batch, deliver(conn, host, site, now, metrics, what))
    p.late = is_late(conn, site, kind, p.deadline, now)  # the run may have sent it
    result.late = p.lateness()
    return result
