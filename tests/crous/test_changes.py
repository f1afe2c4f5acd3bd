"""Change sets over two academic years at EMSE: what is due, why, and sent only once."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from badged.config.model import ExchangeKind as K
from badged.config.model import LayoutField as F
from badged.config.tree import load_tree
from badged.crous.changes import compute
from badged.crous.deadlines import PARIS
from badged.store import people
from badged.store.db import open_store, utcnow

REPO = Path(__file__).resolve().parents[2]
SITE = load_tree(REPO / "config").site("emse")
YEAR1 = datetime(2026, 9, 15, 10, tzinfo=PARIS)
YEAR2 = datetime(2027, 9, 20, 10, tzinfo=PARIS)


def student(pid: str, year: int, first: int | None, **kw) -> people.Person:
    return people.Person(id=pid, last_name="Étudiant", first_name=pid, category="student",
                         email=f"{pid}@emse.example.org", ine=f"INE{pid}", source="students",
                         academic_year=year, first_enrolment_year=first, **kw)


def staff(pid: str, status: str, index: int | None, **kw) -> people.Person:
    return people.Person(id=pid, last_name="Agent", first_name=pid, category="staff",
                         source="staff", status_code=status, staff_index=index, **kw)


def mark_sent(conn, changes) -> None:
    """Record the lines as sent, as the outbox does when it writes a batch."""
    cur = conn.execute(
        "INSERT INTO batches (kind, transport, message_id, recipients, created_at) "
        "VALUES (?, 'mail', ?, '[]', ?)", (changes.kind.value, f"<{utcnow()}{id(changes)}>",
                                          utcnow()))
    conn.executemany(
        "INSERT INTO exchange_items (batch_id, kind, person_id, fingerprint, reason) "
        "VALUES (?, ?, ?, ?, ?)",
        [(cur.lastrowid, changes.kind.value, line.person_id, line.fingerprint, line.reason)
         for line in changes.lines])


@pytest.fixture
def conn(tmp_path: Path):
    return open_store(tmp_path)


def due(conn, kind, now) -> dict[str, str]:
    return {line.person_id: line.reason for line in compute(conn, SITE, kind, now).lines}


def test_two_academic_years(conn) -> None:
    for p in (student("s1", 2026, 2026), student("s2", 2026, 2026),
              staff("t1", "psg", 420), staff("t2", "prs", 500), staff("t3", "stg", None)):
        people.upsert(conn, p)
    # Year 1: everyone is a primo-entrant or a staff member.
    assert due(conn, K.REINSCRIPTIONS, YEAR1) == {}
    primo = compute(conn, SITE, K.PRIMO_ENTRANTS, YEAR1)
    assert {line.person_id: line.reason for line in primo.lines} == {
        "s1": "first enrolment in 2026-2027", "s2": "first enrolment in 2026-2027"}
    line = primo.lines[0]
    assert (line.values[F.ID_COMPANY_RATE], line.values[F.ID_RATE]) == (10, 1)
    assert line.values[F.RNE_ORG_CODE] == "0429999A"
    assert line.values[F.DUE_DATE].isoformat() == "2027-08-31"
    staff_lines = compute(conn, SITE, K.PERSONNELS, YEAR1)
    rates = {li.person_id: (li.values[F.ID_COMPANY_RATE], li.values[F.ID_RATE])
             for li in staff_lines.lines}
    assert rates == {"t1": (78, 1), "t2": (78, 2), "t3": (78, 1)}
    assert due(conn, K.DEPARTS, YEAR1) == {}
    mark_sent(conn, primo)
    mark_sent(conn, staff_lines)
    # Sent once: nothing is due again the same year.
    assert due(conn, K.PRIMO_ENTRANTS, YEAR1) == {}
    assert compute(conn, SITE, K.PERSONNELS, YEAR1).unchanged == 3

    # Year 2: s1 re-enrols, s2 does not, s3 arrives; t1 and t2 leave, t3 stays.
    people.upsert(conn, student("s1", 2027, 2026))
    people.upsert(conn, student("s3", 2027, 2027))
    for pid in ("t1", "t2"):
        conn.execute("UPDATE people SET leaving_since = '2027-08-01' WHERE id = ?", (pid,))
    assert due(conn, K.REINSCRIPTIONS, YEAR2) == {
        "s1": "re-enrolled for 2027-2028 (first enrolled 2026)"}
    assert due(conn, K.PRIMO_ENTRANTS, YEAR2) == {"s3": "first enrolment in 2027-2028"}
    # Staff who stay are declared again with the new year's due date.
    [renewal] = compute(conn, SITE, K.PERSONNELS, YEAR2).lines
    assert renewal.person_id == "t3"
    assert renewal.values[F.DUE_DATE].isoformat() == "2028-08-31"
    departs = compute(conn, SITE, K.DEPARTS, YEAR2)
    assert {li.person_id: li.reason for li in departs.lines} == {
        "t1": "left: absent from the staff export since 2027-08-01; tarif 99",
        "t2": "left: absent from the staff export since 2027-08-01; tarif 99"}
    assert all(li.values[F.ID_RATE] == 99 for li in departs.lines)
    # The last day of their rights (grace of 30 days from 1 August), not the day it is sent.
    assert departs.lines[0].values[F.DUE_DATE].isoformat() == "2027-08-30"
    mark_sent(conn, departs)
    assert due(conn, K.DEPARTS, YEAR2) == {}


def test_a_change_is_sent_again(conn) -> None:
    people.upsert(conn, staff("t1", "psg", 420))
    mark_sent(conn, compute(conn, SITE, K.PERSONNELS, YEAR1))
    people.upsert(conn, staff("t1", "psg", 480))  # promoted: index 480 → tarif 2
    [line] = compute(conn, SITE, K.PERSONNELS, YEAR1).lines
    assert line.values[F.ID_RATE] == 2
    assert line.reason.startswith("staff psg index 480: 78 / 2 (changed since batch ")


def test_leaving_waits_for_the_grace_and_needs_a_previous_line(conn) -> None:
    people.upsert(conn, staff("t1", "psg", 420, leaving_since="2027-09-10"))  # grace 30 days
    people.upsert(conn, staff("t2", "psg", 420, leaving_since="2027-01-10"))  # never sent
    assert due(conn, K.DEPARTS, YEAR2) == {}
    assert due(conn, K.PERSONNELS, YEAR2) == {"t1": "staff psg index 420: 78 / 1"}


def test_rights_ended(conn) -> None:
    people.upsert(conn, staff("t1", "ctr", 300))
    mark_sent(conn, compute(conn, SITE, K.PERSONNELS, YEAR1))
    conn.execute("UPDATE people SET end_of_rights = '2026-12-31' WHERE id = 't1'")
    assert due(conn, K.DEPARTS, datetime(2027, 1, 5, tzinfo=PARIS)) == {
        "t1": "left: rights ended 2026-12-31; tarif 99"}
    [line] = compute(conn, SITE, K.DEPARTS, datetime(2027, 1, 5, tzinfo=PARIS)).lines
    assert line.values[F.DUE_DATE].isoformat() == "2026-12-31"  # not the 5 January


def test_fingerprints_keep_their_formula(conn) -> None:
    """Stored fingerprints are compared across versions: the digest of the line's values
    (None as empty, dates ISO) joined by US, then RS and the year for per-year kinds."""
    import hashlib

    people.upsert(conn, student("s1", 2026, 2026, birth_date="2004-02-29"))
    people.upsert(conn, staff("t1", "psg", 420))
    for kind, year in ((K.PRIMO_ENTRANTS, 2026), (K.PERSONNELS, None)):
        [line] = compute(conn, SITE, kind, YEAR1).lines
        text = "\x1f".join("" if v is None else str(v) for v in line.values.values())
        if year is not None:
            text += f"\x1e{year}"
        assert line.fingerprint == hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
        assert list(line.values) == [F.IDENTIFIER, F.INSTITUTIONAL_ID, F.INE, F.LAST_NAME,
                                     F.FIRST_NAME, F.EMAIL, F.BIRTH_DATE, F.RNE_ORG_CODE,
                                     F.ID_COMPANY_RATE, F.ID_RATE, F.DUE_DATE, F.CATEGORY,
                                     F.CROUS_NUMBER, F.CSN]
