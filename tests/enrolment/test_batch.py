"""`badged enrol --csv`: same rules as the desk, same report as the imports."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from badged.cli import main
from badged.store import cards, people
from badged.store.db import open_store

REPO = Path(__file__).resolve().parents[2]
MIXED = REPO / "tests/fixtures/enrol-csv/mixed.csv"


def setup(tmp_path: Path) -> Path:
    host = tmp_path / "badged.yaml"
    host.write_text(f"tree: {REPO / 'config'}\nschool: demo\nstate_dir: state\n"
                    "runtime_dir: run\n")
    conn = open_store(tmp_path / "state")
    for pid in ("s1", "s2", "s3"):
        people.upsert(conn, people.Person(id=pid, last_name="D", first_name="X",
                                          category="student"))
    for csn, number in (("04112233445566", 36000000), ("04AABBCCDDEEFF", 36000001)):
        conn.execute("INSERT INTO crous_cards VALUES (?, ?, ?, '03', '0000', 'D1', '', '', '',"
                     " 101, 1, '2026-09-01', '2026-09-02', 'x.csv')", (csn, csn, number))
    return host


def test_partial_batch(tmp_path: Path) -> None:
    host = setup(tmp_path)
    result = CliRunner().invoke(main, ["--host-config", str(host), "enrol", "--csv",
                                       str(MIXED)])
    assert result.exit_code == 3, result.output
    assert result.stderr.splitlines() == [  # no CSN, no person: they go to --report only
        f"{MIXED}:4: unknown person",
        f"{MIXED}:5: CSN is not 4 to 10 bytes of hex",
        f"{MIXED}:6: expected 'person_id;csn': got 1 field(s)",
        f"{MIXED}: 1 rejected: CSN is not 4 to 10 bytes of hex",
        f"{MIXED}: 1 rejected: expected 'person_id;csn'",
        f"{MIXED}: 1 rejected: unknown person",
    ]
    assert result.stdout == f"{MIXED}: 6 read, 2 linked, 1 unchanged, 3 rejected\n"
    conn = open_store(tmp_path / "state")
    assert cards.get(conn, "04112233445566").crous_number == 36000000
    assert cards.get(conn, "04AABBCCDDEEFF").person_id == "s2"


def test_strict_batch_links_nothing(tmp_path: Path) -> None:
    host = setup(tmp_path)
    result = CliRunner().invoke(main, ["--host-config", str(host), "enrol", "--csv",
                                       str(MIXED), "--strict"])
    assert result.exit_code == 1
    assert result.stdout.endswith("3 rejected; strict: nothing linked\n")
    conn = open_store(tmp_path / "state")
    assert cards.get(conn, "04112233445566") is None
    assert not conn.execute("SELECT count(*) FROM stock_moves").fetchone()[0]


def test_the_report_file_has_the_cards_and_people(tmp_path: Path) -> None:
    host = setup(tmp_path)
    report = tmp_path / "enrol-report.txt"
    result = CliRunner().invoke(main, ["--host-config", str(host), "enrol", "--csv",
                                       str(MIXED), "--report", str(report)])
    assert result.exit_code == 3, result.output
    assert "nobody" not in result.stderr and "04A1A2A3A4A5A6" not in result.stderr
    assert report.stat().st_mode & 0o777 == 0o600
    assert report.read_text().splitlines() == [
        f"{MIXED}:4: unknown person: \"unknown person 'nobody' (add them with badged person "
        "add, or import the registry)\"",
        f"{MIXED}:5: CSN is not 4 to 10 bytes of hex: 'ZZ'",
        f"{MIXED}:6: expected 'person_id;csn': got 1 field(s)",
    ]
