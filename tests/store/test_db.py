"""The store: private file, WAL, foreign keys, migrations applied once."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from badged.store import cards, events, jobs, people
from badged.store.db import DB_NAME, StoreError, migrate, open_store


def test_new_store_is_private_and_in_wal(tmp_path: Path) -> None:
    conn = open_store(tmp_path / "state")
    people.upsert(conn, people.Person(id="p1", last_name="Martin", first_name="Alex",
                                      category="student"))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"):
        mode = stat.S_IMODE((tmp_path / "state" / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700


def test_migrations_apply_once(tmp_path: Path) -> None:
    conn = open_store(tmp_path)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    assert version >= 1
    assert migrate(conn) == version
    conn.close()
    assert open_store(tmp_path).execute("PRAGMA user_version").fetchone()[0] == version


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    conn = open_store(tmp_path)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(StoreError, match="newer than this badged"):
        open_store(tmp_path)


def test_foreign_keys_are_enforced(tmp_path: Path) -> None:
    conn = open_store(tmp_path)
    with pytest.raises(sqlite3.IntegrityError):
        cards.link(conn, "04112233445566", "nobody", None)


def test_people_cards_events_jobs_round_trip(tmp_path: Path) -> None:
    conn = open_store(tmp_path)
    person = people.Person(id="p1", last_name="Martin", first_name="Alex", category="staff",
                           staff_index=420, status_code="psg")
    people.upsert(conn, person)
    people.upsert(conn, people.Person(**{**person.__dict__, "email": "a.martin@example.org"}))
    assert people.get(conn, "p1").email == "a.martin@example.org"
    cards.link(conn, "04a1b2c3d4e5f6", "p1", 36000000)
    card = cards.get(conn, "04A1B2C3D4E5F6")
    assert card.person_id == "p1" and card.state == "active" and card.crous_number == 36000000
    assert cards.count_by_state(conn)["active"] == 1
    events.add(conn, "tap", reader="R", csn="04A1B2C3D4E5F6", detail={"role": "lookup"})
    assert events.recent(conn)[0]["detail"] == {"role": "lookup"}
    jobs.record(conn, "departs", 100.0, None)
    jobs.record(conn, "departs", 200.0, "SMTP down")
    run = jobs.get(conn, "departs")
    assert (run.last_run_at, run.last_success_at, run.failures) == (200.0, 100.0, 1)


def test_unwritable_state_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot open the store"):
        open_store(blocker / "state")


def test_migrations_are_numbered_without_gaps() -> None:
    """`user_version` records the last one applied: a gap or a repeat would skip one."""
    from badged.store.db import _migrations

    numbers = [number for number, _, _ in _migrations()]
    assert numbers == list(range(1, len(numbers) + 1))


def test_opening_the_store_twice_in_one_process_keeps_both_connections_sound(
        tmp_path: Path) -> None:
    """The daemon opens the store twice (shared + jobs) while the CLI writes from other
    processes. Closing any descriptor of the database file drops the process's POSIX
    locks: if the second open did, another process would take the WAL for its own, and
    the first connection would read stale snapshots and lose its writes."""
    import subprocess
    import sys

    def other_process(sql: str) -> str:
        code = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None);"
                "r = c.execute(sys.argv[2]).fetchall(); print(r[0][0] if r else '')")
        return subprocess.run([sys.executable, "-c", code, str(tmp_path / DB_NAME), sql],
                              capture_output=True, text=True, check=True).stdout.strip()

    first = open_store(tmp_path)
    first.execute("SELECT count(*) FROM people").fetchall()
    second = open_store(tmp_path)
    other_process("INSERT INTO people (id, last_name, first_name, category, created_at, "
                  "updated_at) VALUES ('p1', 'A', 'A', 'staff', 'x', 'x')")
    assert people.get(first, "p1") is not None
    people.upsert(first, people.Person(id="p2", last_name="B", first_name="B",
                                       category="staff"))
    assert other_process("SELECT count(*) FROM people") == "2"
    second.close()
    first.close()
    assert other_process("SELECT count(*) FROM people") == "2"


def test_paused_gc_nests_and_restores_the_collector() -> None:
    """Bulk passes pause the cyclic collector; nested (or concurrent) passes keep it paused
    until the last ends, and a collector that was off stays off."""
    import gc

    from badged.store.db import paused_gc

    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pass still runs
    assert gc.isenabled()
    with pytest.raises(RuntimeError), paused_gc():
        raise RuntimeError("a failed pass")
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()  # off before: left off
    finally:
        gc.enable()
