"""What makes `badged status` say degraded (exit 1): pcscd, readers, SAMs, failing jobs,
and batches pending past their retry time or their CROUS deadline (a real store)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from badged.config.host import load_host
from badged.crous.deadlines import deadline
from badged.crous.mail import OutgoingFile, write_batch
from badged.daemon import health
from badged.store.db import open_store
from badged.store.outbox import iso


def batch(conn, kind: str, created: datetime) -> int:
    return write_batch(conn, school_id="demo", kind=kind, mail_from="badges@demo.example.org",
                       recipients=["monetique@crous-demo.example.org"], subject="s", body="b",
                       files=[OutgoingFile("f.csv", b"x;y\r\n")], items=[],
                       academic_year=created.year, now=created)


def test_pending_batches_past_their_retry_time_or_deadline(host_file: Path) -> None:
    host = load_host(host_file)
    site = host.load_site()
    conn = open_store(host.state_dir)
    now = datetime.now(UTC)
    waiting = batch(conn, "personnels", now)  # never tried: not a problem
    conn.execute("UPDATE batches SET next_attempt_at = ? WHERE id = ?",
                 (iso(now + timedelta(hours=3)), waiting))
    stuck = batch(conn, "departs", now)
    conn.execute("UPDATE batches SET next_attempt_at = ?, attempts = 2, last_error = ? "
                 "WHERE id = ?", (iso(now - timedelta(hours=1)), "temporary: refused", stuck))
    due = deadline(now, site.crous.deadlines[next(iter(site.crous.deadlines))])
    late_created = due - timedelta(days=2) if due <= now else due - timedelta(days=400)
    late = batch(conn, next(iter(site.crous.deadlines)).value, late_created)

    box = health.outbox(conn, site, now)
    assert [b["id"] for b in box.pending] == [waiting, stuck, late]
    assert box.problems[0].startswith(f"batch {stuck} (departs) pending past its retry time")
    assert box.problems[0].endswith(": temporary: refused")
    assert box.problems[1].startswith(f"batch {late} (reinscriptions) still pending after "
                                      "its CROUS deadline")
    assert len(box.problems) == 2


def test_problems_of_the_readers_pcscd_and_jobs() -> None:
    snapshot = {"pcscd": False, "readers": {"desk": True, "door": False},
                "sams": {"sam": False}}
    jobs = [{"name": "exchange-departs", "last_error": "OSError: disk full"},
            {"name": "store-maintenance", "last_error": None}]
    assert health.problems(snapshot, jobs, health.Outbox([], ["batch 3 (x) late"])) == [
        "pcscd down", "reader door missing", "SAM sam missing",
        "job exchange-departs failing: OSError: disk full", "batch 3 (x) late"]
    healthy = {"pcscd": True, "readers": {"desk": True}, "sams": {}}
    assert health.problems(healthy, jobs[1:], health.Outbox([], [])) == []


def test_a_deadline_is_late_until_a_file_of_its_kind_is_sent(host_file: Path) -> None:
    """Past 30/10 with no réinscriptions mailed this academic year: `late`, until one is
    sent; before the deadline, never late."""
    host = load_host(host_file)
    site = host.load_site()
    conn = open_store(host.state_dir)
    after = datetime(2026, 11, 15, 9, tzinfo=UTC)
    before = datetime(2026, 10, 1, 9, tzinfo=UTC)

    def late(now: datetime) -> dict[str, bool]:
        return {d["kind"]: d["late"] for d in health.deadlines(conn, site, now)}

    assert late(before) == {"reinscriptions": False}
    assert late(after) == {"reinscriptions": True}
    sent = batch(conn, "reinscriptions", datetime(2026, 11, 2, 8, tzinfo=UTC))
    conn.execute("UPDATE batches SET state = 'sent', sent_at = ? WHERE id = ?",
                 (iso(datetime(2026, 11, 2, 8, 5, tzinfo=UTC)), sent))
    assert late(after) == {"reinscriptions": False}
