"""People's records expire (GDPR): `badged person purge` and the service behind the daily
`people-purge` job. Acceptance: after the purge, no table and no column of the store holds
any of a leaver's values (name, birth date, e-mail, INE, id), in any rendering."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from badged.cli import main
from badged.config.host import load_host
from badged.config.model import ExchangeKind
from badged.crous import exchanges
from badged.enrolment.desk import Policy, enrol
from badged.store import access, cards, crous_api, events, jobs, people
from badged.store.db import open_store

REPO = Path(__file__).resolve().parents[2]
POLICY = Policy(True, "disable_older", Decimal("0.30"), Decimal("3.00"))

LEAVER = people.Person(id="zq-4711", last_name="Quatremare", first_name="Zéphyrine",
                       category="staff", email="zephyrine.quatremare@ecole-demo.example.org",
                       birth_date="1979-02-13", status_code="ens", staff_index=612,
                       source="staff")
STUDENT = people.Person(id="st-9082", last_name="Vaillebrune", first_name="Octavien",
                        category="student", ine="0912345678K", academic_year=2024,
                        email="octavien.vaillebrune@etu.example.org", birth_date="2004-11-30",
                        source="students")
STAYS = people.Person(id="ok-1000", last_name="Restelieu", first_name="Maëlle",
                      category="staff", email="maelle.restelieu@ecole-demo.example.org",
                      birth_date="1985-06-07", status_code="ens", staff_index=500,
                      source="staff")


def renderings(person: people.Person) -> set[str]:
    """Every way a value of the person may be written: ISO and French dates, names in
    any case."""
    values = {person.id, person.last_name, person.first_name, person.email or "",
              person.ine or ""}
    values |= {v.upper() for v in values} | {v.lower() for v in values}
    if person.birth_date:
        d = date.fromisoformat(person.birth_date)
        values |= {d.isoformat(), d.strftime("%d/%m/%Y"), d.strftime("%Y%m%d"),
                   d.strftime("%d%m%Y")}
    return {v for v in values if v}


def scan(conn: sqlite3.Connection, person: people.Person) -> list[str]:
    """Every (table.column = value) of the store holding one of the person's values."""
    found = []
    needles = renderings(person)
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    for table in tables:
        columns = [c[1] for c in conn.execute(f'PRAGMA table_info("{table}")')]
        for row in conn.execute(f'SELECT * FROM "{table}"'):
            for column, value in zip(columns, row, strict=True):
                if value is None:
                    continue
                if isinstance(value, bytes):
                    texts = [value.decode("utf-8", "replace"), value.decode("cp1252", "replace")]
                else:
                    texts = [str(value)]
                for text in texts:
                    for needle in needles:
                        if needle in text:
                            found.append(f"{table}.{column} holds {needle!r}")
    return found


@pytest.fixture
def host_file(tmp_path: Path) -> Path:
    path = tmp_path / "badged.yaml"
    path.write_text(f"tree: {REPO / 'config'}\nschool: demo\nstate_dir: {tmp_path / 'state'}\n"
                    f"runtime_dir: {tmp_path / 'run'}\n")
    return path


def cli(host_file: Path, *args: str) -> str:
    result = CliRunner().invoke(main, ["--host-config", str(host_file), *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def a_year_of_records(host_file: Path) -> sqlite3.Connection:
    """Three people through the store's tables: cards, a lost card, the mail exchange
    (batch, items, archived .eml), the API CROUS, the door export, events, job errors."""
    host = load_host(host_file)
    site = host.load_site()
    conn = open_store(host.state_dir)
    for n, person in enumerate((LEAVER, STUDENT, STAYS)):
        people.upsert(conn, person)
        enrol(conn, person.id, f"0400000000{n:02d}01", POLICY)
    exchanges.run(conn, host, site, ExchangeKind.PERSONNELS, datetime.now(UTC))
    exchanges.run(conn, host, site, ExchangeKind.REINSCRIPTIONS, datetime.now(UTC))
    assert conn.execute("SELECT count(*) FROM batches WHERE archive_path IS NOT NULL"
                        ).fetchone()[0] >= 1
    cards.set_state(conn, "04000000000001", "active", "lost",
                    f"lost: {LEAVER.first_name} {LEAVER.last_name} called", "desk", "DP")
    events.add(conn, "tap", reader="desk", csn="04000000000001",
               detail={"person_id": LEAVER.id, "outcome": "looked up"})
    events.add(conn, "tap", reader="desk", csn="04000000000201",
               detail={"person_id": STAYS.id, "outcome": "looked up"})
    crous_api.tell_holder(conn, STUDENT.id, STUDENT.ine, "f" * 16, "2025-08-31")
    crous_api.tell_card(conn, "04000000000101", STUDENT.id, STUDENT.ine, 4242, "active")
    crous_api.record_error(conn, "person", STUDENT.id, STUDENT.id, "update_user", 400, "-8",
                           f"{STUDENT.last_name}: birth date {STUDENT.birth_date} refused",
                           True, "f" * 16)
    access.record_success(conn, "doors", destination="access/doors", digest="d" * 64,
                          files=["doors.til"], count=3, marker=1, at=1.0, written=True,
                          upsert=[("04000000000001", LEAVER.id, "blocked", "a" * 16),
                                  ("04000000000101", STUDENT.id, "valid", "b" * 16),
                                  ("04000000000201", STAYS.id, "valid", "c" * 16)], remove=[])
    jobs.record(conn, "exchange-personnels", 1.0, f"refused {LEAVER.email}")
    # Both left 500 days ago; the one who stays is still in the registry.
    left = (date.today() - timedelta(days=500)).isoformat()
    conn.execute("UPDATE people SET leaving_since = ? WHERE id IN (?, ?)",
                 (left, LEAVER.id, STUDENT.id))
    return conn


def test_purge_leaves_no_personal_field_of_a_leaver(host_file: Path, tmp_path: Path) -> None:
    conn = a_year_of_records(host_file)
    archives = [Path(p) for (p,) in conn.execute(
        "SELECT archive_path FROM batches WHERE archive_path IS NOT NULL")]
    assert archives and all(p.exists() for p in archives)
    assert scan(conn, LEAVER) and scan(conn, STUDENT)  # the scan finds what is there
    items = conn.execute("SELECT count(*) FROM exchange_items").fetchone()[0]
    assert items >= 2

    dry = json.loads(cli(host_file, "person", "purge", "--dry-run", "--json"))
    assert dry["dry_run"] and dry["people"] == 2
    assert {x["person_id"] for x in dry["leavers"]} == {LEAVER.id, STUDENT.id}
    assert people.get(conn, LEAVER.id) is not None  # a dry run changes nothing

    done = json.loads(cli(host_file, "person", "purge", "--json"))
    assert (done["people"], done["cards"]) == (2, 2)
    assert done["archives_deleted"] == len(archives)
    assert not any(p.exists() for p in archives)
    for person in (LEAVER, STUDENT):
        assert scan(conn, person) == [], person.id
    # The one who stays keeps everything; the leavers' cards stay, unlinked, with history.
    assert people.get(conn, STAYS.id).email == STAYS.email
    assert cards.get(conn, "04000000000201").person_id == STAYS.id
    gone = cards.get(conn, "04000000000001")
    assert gone.person_id is None and gone.state == "lost"
    assert [c.new_state for c in cards.history(conn, "04000000000001")] == ["active", "lost"]
    # What the CROUS was told stays as counts and checksums.
    assert conn.execute("SELECT count(*) FROM exchange_items").fetchone()[0] == items
    for size, sha in conn.execute("SELECT size, sha256 FROM batch_files"):
        assert size > 0 and len(sha) == 64
    assert crous_api.cards(conn)["04000000000101"].told_state == "active"
    assert [tuple(r) for r in conn.execute("SELECT people, cards FROM people_purges")] == [(2, 2)]

    again = json.loads(cli(host_file, "person", "purge", "--json"))
    assert again["people"] == 0


def test_retention_days_is_per_school(host_file: Path, tmp_path: Path) -> None:
    conn = a_year_of_records(host_file)
    # Left 300 days ago: within the default 400 days, past a school's 200.
    left = (date.today() - timedelta(days=300)).isoformat()
    conn.execute("UPDATE people SET leaving_since = ? WHERE leaving_since IS NOT NULL",
                 (left,))
    assert "would purge 0 people" in cli(host_file, "person", "purge", "--dry-run")
    tree = tmp_path / "tree"
    shutil.copytree(REPO / "config", tree)
    school = tree / "schools" / "demo.yaml"
    school.write_text(school.read_text() + "retention_days: 200\n")
    host_file.write_text(host_file.read_text().replace(str(REPO / "config"), str(tree)))
    out = cli(host_file, "person", "purge", "--dry-run")
    assert "would purge 2 people who left more than 200 days ago" in out
    assert LEAVER.id in out and STUDENT.id in out and STAYS.id not in out


def test_purge_waits_while_another_process_delivers(host_file: Path) -> None:
    from badged.crous.mail import outbox_lease

    conn = a_year_of_records(host_file)
    with outbox_lease(conn, "another deliverer") as renew:
        assert renew is not None
        result = CliRunner().invoke(main, ["--host-config", str(host_file), "person", "purge"])
    assert result.exit_code == 1 and "another deliverer" in result.output
    assert people.get(conn, LEAVER.id) is not None  # nothing purged
    assert "purged 2 people" in cli(host_file, "person", "purge")
