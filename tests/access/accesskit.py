"""Helpers of the access tests: the EMSE school with a population of active, lost, expired
and out-of-rights cards at fixed dates, in a copy of the repo's tree whose `access_exports`
a test may replace."""

from __future__ import annotations

import re
import shutil
import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from badged.config.host import Host, load_host
from badged.crous.deadlines import PARIS
from badged.store.db import open_store

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 3, 10, 0, tzinfo=PARIS)

# person id, last name, first name, category, birth date, end of rights
PEOPLE = [
    ("s1", "Lefèvre", "Zoé", "student", "2004-03-15", None),
    ("s2", "Nguyen", "Minh", "student", "2003-11-02", None),
    ("s3", "Durand", "Léa", "student", "2002-07-20", None),
    ("t1", "Martin", "Paul", "staff", None, "2027-08-31"),
    ("t2", "Bernard", "Anne", "staff", "1970-05-05", "2026-06-30"),
]
# csn, holder, state, enrolled at, last state change (UTC)
CARDS = [
    ("04A1B2C3D4E5F6", "s1", "active", "2026-09-10T08:00:00+00:00", "2026-09-10T08:00:00+00:00"),
    ("04223344556677", "s2", "lost", "2025-09-12T09:30:00+00:00", "2026-10-05T14:00:00+00:00"),
    ("04334455667788", "s2", "active", "2026-10-06T07:15:00+00:00", "2026-10-06T07:15:00+00:00"),
    ("04556677889900", "s3", "expired", "2023-09-05T08:00:00+00:00", "2026-09-01T02:00:00+00:00"),
    # enrolled late in the evening of 8 January (UTC): 9 January in Paris
    ("0444556677889A", "t1", "active", "2024-01-08T23:30:00+00:00", "2026-02-01T10:00:00+00:00"),
    # active, but its holder's rights ended on 30 June
    ("0466778899AABB", "t2", "active", "2020-03-02T09:00:00+00:00", "2020-03-02T09:00:00+00:00"),
]


def populate(conn: sqlite3.Connection) -> None:
    with conn:
        for pid, last, first, category, birth, end in PEOPLE:
            conn.execute(
                "INSERT INTO people (id, last_name, first_name, category, birth_date, "
                "end_of_rights, source, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, "
                "?, ?)", (pid, last, first, category, birth, end,
                          "students" if category == "student" else "staff",
                          "2026-09-01T00:00:00+00:00", "2026-09-01T00:00:00+00:00"))
        for csn, pid, state, enrolled, changed in CARDS:
            conn.execute("INSERT INTO cards (csn, person_id, state, enrolled_at, updated_at) "
                         "VALUES (?, ?, ?, ?, ?)", (csn, pid, state, enrolled, changed))
            conn.execute("INSERT INTO card_state_changes (csn, old_state, new_state, actor, "
                         "at) VALUES (?, NULL, ?, 'test', ?)", (csn, state, changed))


def set_exports(tree: Path, text: str, school: str = "emse") -> None:
    """Replace the school's `access_exports:` block with `text` (YAML, same indent)."""
    path = tree / "schools" / f"{school}.yaml"
    body, n = re.subn(r"^access_exports:.*?(?=^card_stock:)", lambda _: text, path.read_text(),
                      count=1, flags=re.S | re.M)
    assert n == 1, "the access_exports block of the school moved: update the test helper"
    path.write_text(body)


MakeHost = Callable[..., Host]


def make_host(tmp_path: Path, exports: str | None = None,
              edit: Callable[[str], str] | None = None) -> Host:
    """EMSE in a copy of the tree (exports replaced or edited), its store populated."""
    tree = tmp_path / "config"
    shutil.copytree(REPO / "config", tree)
    if exports is not None:
        set_exports(tree, exports)
    if edit is not None:
        school = tree / "schools" / "emse.yaml"
        school.write_text(edit(school.read_text()))
    host_file = tmp_path / "badged.yaml"
    host_file.write_text(f"tree: {tree}\nschool: emse\nstate_dir: {tmp_path / 'state'}\n"
                         f"runtime_dir: {tmp_path / 'run'}\n"
                         "smtp: {host: 127.0.0.1, port: 1}\n")
    host = load_host(host_file)
    populate(open_store(host.state_dir))
    return host
