"""Migration 0009: CROUS card links keyed by CSN, the provenance of an import stored once."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from badged.store import crous_cards
from badged.store.db import DB_NAME, _migrations, open_store

ROWS = [  # as a schema-8 store holds them: the columns of crous_cards, in order
    ("04A1B2C3D4E5F6", "04A1B2C3D4E5F6", 36000002, "03", "0000", "D1", "0", "0", "0691", 26,
     1, "2024-09-03", "2024-09-10T08:00:00+00:00", "/srv/crous/cartes-1.csv"),
    ("04000000000000", "04000000000000", 36000000, "03", "0000", "D1", "0", "0", "0441", 65,
     1, "2024-09-01", "2024-09-10T08:00:00+00:00", "/srv/crous/cartes-1.csv"),
    ("0471928A083C80", "0471928A083C80", 36882379, "03", "0000", "D1", "0", "0", "0691", 65,
     2, "2024-09-02", "2025-01-06T09:30:00+00:00", "/srv/crous/it's-2.csv"),
]


def schema_8_store(state: Path) -> None:
    state.mkdir()
    with closing(sqlite3.connect(state / DB_NAME, isolation_level=None)) as conn:
        for number, _, sql in _migrations():
            if number <= 8:
                conn.executescript(f"BEGIN;\n{sql}\nPRAGMA user_version = {number};\nCOMMIT;")
        conn.executemany(f"INSERT INTO crous_cards VALUES ({', '.join('?' * 14)})", ROWS)


def test_links_come_through_the_migration_unchanged(tmp_path: Path) -> None:
    schema_8_store(tmp_path / "state")
    with closing(open_store(tmp_path / "state")) as conn:
        assert list(map(tuple, conn.execute("SELECT * FROM crous_cards ORDER BY csn"))) == (
            sorted(ROWS))
        assert list(map(tuple, conn.execute("SELECT imported_at, source_file FROM "
                                            "crous_card_imports ORDER BY id"))) == [
            ROWS[0][-2:], ROWS[2][-2:]]
        card = crous_cards.get(conn, "0471928a083c80")
        assert card is not None and card.source_file == "/srv/crous/it's-2.csv"
        assert conn.execute("SELECT count(*) FROM pragma_index_list('crous_card_links')"
                            ).fetchone()[0] == 2  # the key and NUM_CARTE, no rowid table


def test_the_view_stays_writable(tmp_path: Path) -> None:
    """Ad-hoc SQL and fixtures that write `crous_cards` keep working through its triggers."""
    with closing(open_store(tmp_path / "state")) as conn:
        conn.row_factory = None
        conn.executemany(f"INSERT INTO crous_cards VALUES ({', '.join('?' * 14)})", ROWS)
        assert conn.execute("SELECT count(*) FROM crous_card_imports").fetchone()[0] == 2
        conn.execute("UPDATE crous_cards SET date_creation = '2024-09-04', "
                     "source_file = 'again.csv' WHERE csn = '04000000000000'")
        assert conn.execute("SELECT date_creation, source_file FROM crous_cards "
                            "WHERE csn = '04000000000000'").fetchone() == ("2024-09-04",
                                                                          "again.csv")
        conn.execute("DELETE FROM crous_cards WHERE num_carte = 36882379")
        assert [row[0] for row in conn.execute("SELECT csn FROM crous_cards ORDER BY csn")] == [
            "04000000000000", "04A1B2C3D4E5F6"]
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            conn.execute(f"INSERT INTO crous_cards VALUES ({', '.join('?' * 14)})",
                         (("04FFFFFFFFFFFF", *ROWS[1][1:])))


def num_carte_index(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
    return [tuple(row) for row in conn.execute(
        "SELECT name, \"unique\" FROM pragma_index_list('crous_card_links') "
        "WHERE name = 'crous_card_links_num_carte'")]


def test_a_first_import_leaves_the_num_carte_index_as_the_migration_made_it(
        tmp_path: Path) -> None:
    """The first import into the empty table builds that index at its end (rows sorted)."""
    from badged.crous.cards_csv import EXPECTED_HEADER, import_cards

    def csv(name: str, *rows: str) -> Path:
        path = tmp_path / name
        path.write_text("\r\n".join([EXPECTED_HEADER, *rows, ""]))
        return path

    with closing(open_store(tmp_path / "state")) as conn:
        made = conn.execute("SELECT sql FROM sqlite_master WHERE name = "
                            "'crous_card_links_num_carte'").fetchone()[0]
        strict = import_cards(conn, csv(
            "bad.csv", "03;0000;D1;04A10000;04A10000;0;0;0691;41;1;7;01/09/2024",
            "03;0000;D1;04A10000;04A10000;0;0;0691;41;1;x;01/09/2024"), strict=True)
        assert (strict.outcome, num_carte_index(conn)) == ("refused", [
            ("crous_card_links_num_carte", 1)])
        first = import_cards(conn, csv("first.csv", "03;0000;D1;04B20000;04B20000;0;0;0691;41;1;8;"
                                       "01/09/2024", "03;0000;D1;04A10000;04A10000;0;0;0691;41;1;7;"
                                       "01/09/2024"))
        assert first.imported == 2
        assert num_carte_index(conn) == [("crous_card_links_num_carte", 1)]
        assert conn.execute("SELECT sql FROM sqlite_master WHERE name = "
                            "'crous_card_links_num_carte'").fetchone()[0] == made
        assert [tuple(r) for r in conn.execute(
            "SELECT csn FROM crous_card_links INDEXED BY crous_card_links_num_carte "
            "WHERE num_carte > 0 ORDER BY num_carte")] == [("04A10000",), ("04B20000",)]
