"""The change sets' fast loop against the plain one-line-at-a-time rules, over hostile
stored values: the same lines, reasons, values and fingerprints (stored fingerprints are
compared with every later run), the same counts, and the same error when a value breaks.

The reference below is the change sets' loop as it was before the fast one, with the
fingerprint exactly as it was written then: it must never change meaning.
"""

from __future__ import annotations

from datetime import datetime
from hashlib import blake2b
from operator import itemgetter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from badged.config.model import ExchangeKind as K
from badged.config.tree import load_tree
from badged.crous import changes
from badged.crous.deadlines import PARIS
from badged.store import exchanges as store
from badged.store.db import open_store

REPO = Path(__file__).resolve().parents[2]
SITE = load_tree(REPO / "config").site("emse")
NOW = datetime(2026, 9, 15, 10, tzinfo=PARIS)
LATER = datetime(2027, 9, 20, 10, tzinfo=PARIS)


def old_fingerprint(row: tuple[Any, ...], year: int | None) -> str:
    """The fingerprint as first written (one f-string per line): the frozen formula."""
    (pid, iid, ine, last, first, email, birth, uai, company, rate, due, category, crous,
     csn) = row
    text = (f"{pid}\x1f{iid}\x1f{'' if ine is None else ine}\x1f"
            f"{'' if last is None else last}\x1f{'' if first is None else first}\x1f"
            f"{'' if email is None else email}\x1f{'' if birth is None else str(birth)}\x1f"
            f"{'' if uai is None else uai}\x1f{'' if company is None else company}\x1f"
            f"{'' if rate is None else rate}\x1f{'' if due is None else str(due)}\x1f"
            f"{'' if category is None else category}\x1f{'' if crous is None else crous}\x1f"
            f"{'' if csn is None else csn}")
    if year is not None:
        text += f"\x1e{year}"
    return blake2b(text.encode(), digest_size=16).hexdigest()


def reference(conn, kinds: list[K], now: datetime) -> dict[K, tuple[list, int]]:
    """The change sets one person at a time: `_row`, then the frozen fingerprint."""
    ctx = changes._Context(SITE, now)
    sent = {kind: store.last_sent(conn, kind.value) for kind in kinds}
    ever = store.ever_sent(conn)
    found: dict[K, tuple[list, int]] = {kind: ([], 0) for kind in kinds}
    decisions = changes._Decisions(ctx)
    for p in store.people_for_lines(conn):
        decision = decisions[changes._KEY(p)]
        if decision is None or decision.kind not in found:
            continue
        if decision.if_ever_sent and p[0] not in ever:
            continue
        row = changes._row(ctx, p, decision)
        fingerprint = old_fingerprint(row, decision.year)
        lines, unchanged = found[decision.kind]
        reason = decision.reason
        if (previous := sent[decision.kind].get(p[0])) is not None:
            if previous[0] == fingerprint:
                found[decision.kind] = (lines, unchanged + 1)
                continue
            reason += f" (changed since batch {previous[1]})"
        lines.append((p[0], reason, row, fingerprint))
    return found


def outcome(func) -> Any:
    """What `func()` returns, or the error it raises (type and message)."""
    try:
        return func()
    except Exception as exc:  # the error itself is what is compared
        return (type(exc), str(exc))


def fast(conn, kinds: list[K], now: datetime) -> dict[K, tuple[list, int]]:
    return {kind: ([tuple(line) for line in found.lines], found.unchanged)
            for kind, found in changes.compute_all(conn, SITE, kinds, now).items()}


SEPARATORS = "\x1f\x1e\x00;\"\r\n"
texts = st.text(st.characters(blacklist_categories=("Cs",)) | st.sampled_from(SEPARATORS),
                max_size=6)
# What a column may hold whatever its declared type: SQLite keeps a blob, a real or a text
# that is not a number as it is given.
anything = st.one_of(st.none(), texts, st.integers(-2**63, 2**63 - 1), st.floats(),
                     st.binary(max_size=3))
present = anything.filter(lambda v: v is not None)  # NOT NULL columns
valid_days = st.dates().map(str)  # from year 1: ISO pads the year, strftime would not
bad_days = st.one_of(st.just(""), st.sampled_from(["20040229", "2004-W09-7", "2004-02-30",
                                                   "0000-01-01", "soon", "2004-2-9"]),
                     st.integers(0, 3))


ids = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",))
              | st.sampled_from(SEPARATORS), min_size=1, max_size=6)
students = st.fixed_dictionaries({
    "id": ids, "category": st.just("student"), "ine": st.one_of(st.none(), texts),
    "last_name": texts, "first_name": texts, "email": st.one_of(st.none(), texts),
    "birth_date": st.one_of(st.none(), valid_days), "academic_year": st.just(2026),
    "first_enrolment_year": st.sampled_from([2024, 2025, 2026, None]),
    "source": st.just("students")})
staff = st.fixed_dictionaries({
    "id": ids, "category": st.just("staff"), "last_name": texts, "first_name": texts,
    "email": st.one_of(st.none(), texts), "birth_date": st.one_of(st.none(), valid_days),
    "status_code": st.one_of(st.none(), st.sampled_from(["psg", "prs", "ctr", "x"])),
    "staff_index": st.one_of(st.none(), st.integers(0, 900)), "source": st.just("staff")})
# The odd values a column may hold (SQLite keeps a blob, a real or a non-number text as it
# is given, whatever the column's type), a few per person.
years = st.one_of(st.none(), st.integers(-2**63, 2**63 - 1), st.sampled_from(["2026", "x"]))
odd = {"id": st.one_of(st.none(), st.integers(0, 50)), "ine": anything, "email": anything,
       "last_name": present, "first_name": present, "birth_date": st.one_of(bad_days, present),
       "academic_year": years, "first_enrolment_year": years,
       "end_of_rights": st.one_of(valid_days, bad_days), "leaving_since": valid_days,
       "source": st.one_of(st.none(), st.just("other")), "staff_index": st.just("9"),
       "status_code": anything}
person = st.builds(lambda usual, changed: {**usual, **changed}, st.one_of(students, staff),
                   st.just({}) | st.sampled_from(sorted(odd)).flatmap(
                       lambda column: odd[column].map(lambda v: {column: v})))
ID = itemgetter("id")
card = st.fixed_dictionaries({"csn": st.one_of(texts, st.integers(0, 9)),
                              "crous_number": anything,
                              "state": st.sampled_from(["active", "active", "lost"])})


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    return open_store(tmp_path_factory.mktemp("hostile"))


def store_people(conn, found: list[dict], cards: list[tuple[int, dict]]) -> list[Any]:
    """Insert the people as given (no conversion but SQLite's own), with their cards."""
    for table in ("exchange_items", "batches", "cards", "people"):
        conn.execute(f"DELETE FROM {table}")
    ids = []
    for p in found:
        try:
            conn.execute(f"INSERT INTO people ({', '.join(p)}, created_at, updated_at) "
                         f"VALUES ({', '.join('?' * len(p))}, 'now', 'now')", list(p.values()))
        except Exception:  # a duplicate INE, a NULL name: not stored
            continue
        ids.append(p["id"])
    for n, (who, c) in enumerate(cards):
        if ids:
            conn.execute("INSERT OR IGNORE INTO cards (csn, person_id, crous_number, state, "
                         "updated_at) VALUES (?, ?, ?, ?, 'now')",
                         (f"{c['csn']}-{n}", ids[who % len(ids)], c["crous_number"],
                          c["state"]))
    return ids


def send(conn, lines: list[tuple], kind: K, changed: list[bool]) -> None:
    """Record some lines as sent, some of them with another fingerprint (a change); a
    person with two active cards has two lines, the first is recorded."""
    batch = conn.execute("INSERT INTO batches (kind, transport, message_id, recipients, "
                         "created_at) VALUES (?, 'mail', ?, '[]', 'now')",
                         (kind.value, f"<{kind.value}>")).lastrowid
    for line, other in zip(lines, changed, strict=False):
        conn.execute("INSERT OR IGNORE INTO exchange_items (batch_id, kind, person_id, "
                     "fingerprint, "
                     "reason) VALUES (?, ?, ?, ?, '')",
                     (batch, kind.value, line[0], "0" * 32 if other else line[3]))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(found=st.lists(person, min_size=1, max_size=8, unique_by=ID),
       cards=st.lists(st.tuples(st.integers(0, 7), card), max_size=4),
       changed=st.lists(st.booleans(), max_size=8), later=st.booleans())
def test_the_fast_loop_says_what_one_line_at_a_time_says(conn, found, cards, changed,
                                                          later) -> None:
    store_people(conn, found, cards)
    kinds = list(K)
    first = outcome(lambda: reference(conn, kinds, NOW))
    assert outcome(lambda: fast(conn, kinds, NOW)) == first
    if isinstance(first, dict):  # then some of it sent: unchanged, changed, départs
        for kind, (lines, _) in first.items():
            send(conn, lines, kind, changed)
        now = LATER if later else NOW
        assert outcome(lambda: fast(conn, kinds, now)) == outcome(
            lambda: reference(conn, kinds, now))
        some = [K.PERSONNELS, K.DEPARTS]
        assert outcome(lambda: fast(conn, some, now)) == outcome(
            lambda: reference(conn, some, now))


def test_hostile_values_reach_the_fingerprint(conn) -> None:
    """Values the fast loop writes itself (not from a plan): separators, NUL, non-ASCII,
    a number, an empty blob or a NULL where text is expected, a real CROUS number, dates
    not in canonical form or before year 1000; then sent, and unchanged."""
    store_people(conn, [
        {"id": "a\x1fb", "category": "student", "ine": 12, "last_name": "Lecœur\x1e",
         "first_name": "N\x00ël", "email": b"\xff", "birth_date": "20040229",
         "academic_year": 2026, "first_enrolment_year": 2026, "source": "students"},
        {"id": None, "category": "student", "ine": b"", "last_name": "Zoé",
         "first_name": "😀", "email": 1.5, "birth_date": "0999-01-01", "academic_year": 2026,
         "first_enrolment_year": 2025, "source": "students"},
        {"id": "t", "category": "staff", "ine": None, "last_name": "", "first_name": "x",
         "email": "", "birth_date": "", "status_code": "psg", "staff_index": 420,
         "source": "staff"},
        {"id": "None", "category": "student", "last_name": "N", "first_name": "N",
         "email": b"", "academic_year": 2026, "first_enrolment_year": 2025, "source": "students"}],
        [(0, {"csn": "04A1", "crous_number": 2.5e20, "state": "active"}),
         (1, {"csn": "04A2", "crous_number": "n/a", "state": "active"}),
         (2, {"csn": "04A3", "crous_number": 0, "state": "active"})])
    found = fast(conn, list(K), NOW)
    assert found == reference(conn, list(K), NOW)
    lines = [line for kind in K for line in found[kind][0]]
    assert [line[0] for line in lines] == [None, "None", "a\x1fb", "t"]
    assert [line[3] for line in lines] == [old_fingerprint(line[2], year) for line, year in
                                           zip(lines, (2026, 2026, 2026, None), strict=True)]
    for kind in K:
        send(conn, found[kind][0], kind, [False] * 4)
    again = fast(conn, list(K), NOW)
    assert again == reference(conn, list(K), NOW)
    # All but the person without an id (never recorded: the outbox needs one) are sent.
    assert sum(unchanged for _, unchanged in again.values()) == 3


@pytest.mark.parametrize("odd", [
    {"last_name": b"x", "birth_date": "soon"}, {"first_name": b"x", "birth_date": "soon"},
    {"birth_date": "2004-02-30"}, {"birth_date": b"2004-02-29"}])
def test_a_value_that_breaks_a_line_breaks_it_the_same_way(conn, odd) -> None:
    """The first value that cannot be read fails first, as it would one line at a time."""
    store_people(conn, [{"id": "s", "category": "student", "last_name": "L", "first_name":
                         "F", "academic_year": 2026, "first_enrolment_year": 2026,
                         "source": "students", **odd}], [])
    failed = outcome(lambda: reference(conn, list(K), NOW))
    assert isinstance(failed, tuple)
    assert outcome(lambda: fast(conn, list(K), NOW)) == failed
