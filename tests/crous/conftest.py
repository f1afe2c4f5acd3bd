"""Run `badged crous import-cards` through click's CliRunner against a store in tmp_path."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from badged.cli import main
from badged.store.db import DB_NAME

REPO = Path(__file__).parents[2]

Row = tuple[object, ...]


@pytest.fixture
def host_file(tmp_path: Path) -> Path:
    """A host file running the demo school with its state in tmp_path."""
    path = tmp_path / "badged.yaml"
    path.write_text(f"tree: {REPO / 'config'}\nschool: demo\nstate_dir: {tmp_path / 'state'}\n"
                    f"runtime_dir: {tmp_path / 'run'}\n", encoding="utf-8")
    return path


@pytest.fixture
def run(host_file: Path) -> Callable[..., Result]:
    """`badged --host-config HOST crous import-cards ARGS…`."""

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, ["--host-config", str(host_file), "crous",
                                         "import-cards", *args])

    return invoke


@pytest.fixture
def rows(tmp_path: Path) -> Callable[[], list[Row]]:
    """Every stored CROUS card row, all columns, ordered by CSN (empty without a store)."""

    def dump() -> list[Row]:
        db = tmp_path / "state" / DB_NAME
        if not db.exists():
            return []
        with closing(sqlite3.connect(db)) as conn:
            return conn.execute("SELECT * FROM crous_cards ORDER BY csn").fetchall()

    return dump
