"""`badged access export` and `badged card set-state` killed at every step.

The door system reads the export's folder at any time: it must only ever find whole
files there, each the previous export or the new one (the rotated copies NAME.1, NAME.2
too), and once the export ran again, the folder and the store are those of an
uninterrupted run: no unfinished copy left, no export rotated twice (a run killed after
writing the file but before recording it must not push the previous export out of the
kept versions with a second copy of the new one).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from crashkit import Zygote, db, explore, files, make_site, query, settle, store_dump

from badged.store.db import open_store

# person id, last name, first name, category, end of rights; csn, holder, state
PEOPLE = [("s1", "Lefèvre", "Zoé", "student", None), ("s2", "Nguyen", "Minh", "student", None),
          ("t1", "Martin", "Paul", "staff", "2027-08-31")]
CARDS = [("04A1B2C3D4E5F6", "s1", "active"), ("04223344556677", "s2", "active"),
         ("0444556677889A", "t1", "active")]
LOST = "04223344556677"
DOORS = Path("state") / "access" / "doors"


def populate(site: Path) -> None:
    with sqlite3.connect(db(site)) as conn:
        for pid, last, first, category, end in PEOPLE:
            conn.execute(
                "INSERT INTO people (id, last_name, first_name, category, end_of_rights, "
                "source, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (pid, last, first, category, end,
                 "students" if category == "student" else "staff",
                 "2026-09-01T00:00:00+00:00", "2026-09-01T00:00:00+00:00"))
        for csn, pid, state in CARDS:
            conn.execute("INSERT INTO cards (csn, person_id, state, enrolled_at, updated_at) "
                         "VALUES (?, ?, ?, ?, ?)", (csn, pid, state,
                                                    "2026-09-10T08:00:00+00:00",
                                                    "2026-09-10T08:00:00+00:00"))
    conn.close()


@pytest.fixture(scope="module")
def template(zygote: Zygote, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo school with three cards, exported twice already (so NAME.1 exists)."""
    site = make_site(tmp_path_factory.mktemp("access") / "site")
    open_store(site / "state").close()
    populate(site)
    for csn in ("04A1B2C3D4E5F6", None):
        done = zygote.run(site, ["access", "export"])
        assert done.rc == 0, done.describe()
        if csn:
            done = zygote.run(site, ["card", "set-state", csn, "broken"])
            assert done.rc == 0, done.describe()
    done = zygote.run(site, ["card", "set-state", LOST, "lost"])
    assert done.rc == 0, done.describe()
    settle(site)
    return site


def test_access_export_every_step(zygote: Zygote, template: Path, tmp_path: Path) -> None:
    """Right after a kill: every file a door system can see in the folder (not a dot
    file) is a whole version of the export; after the export ran again: the folder and
    the access tables are an uninterrupted run's."""
    versions = set(files(template / DOORS, hidden=False).values())

    def snapshot(site: Path) -> dict[str, object]:
        return {"store": store_dump(site), "folder": files(site / DOORS)}

    def after_kill(site: Path) -> None:
        if site.name == "reference":
            versions.update(files(site / DOORS, hidden=False).values())
        for name, data in files(site / DOORS, hidden=False).items():
            assert data in versions, f"{name} is not a whole export"

    run = explore(zygote, template, tmp_path / "work", ["access", "export"],
                  snapshot=snapshot, after_kill=after_kill)
    reference = files(tmp_path / "work" / "reference" / DOORS)
    assert sorted(reference) == ["doors.csv", "doors.csv.1", "doors.csv.2"]
    assert len(run.tried) == len(run.steps)


def test_card_set_state_every_step(zygote: Zygote, template: Path, tmp_path: Path) -> None:
    """A state change is one transaction: the card's state and its history line (what the
    CROUS is told) change together or not at all. Run again after a kill, the command
    either makes the change or says it is already made (exit 1): never twice."""
    argv = ["card", "set-state", "0444556677889A", "lost"]

    def snapshot(site: Path) -> dict[str, object]:
        return store_dump(site)

    def after_kill(site: Path) -> None:
        [(state,)] = query(site, "SELECT state FROM cards WHERE csn = '0444556677889A'")
        changes = query(site, "SELECT count(*) FROM card_state_changes "
                              "WHERE csn = '0444556677889A' AND new_state = 'lost'")
        assert (state == "lost") == (changes == [(1,)]), (state, changes)

    run = explore(zygote, template, tmp_path / "work", argv, snapshot=snapshot,
                  after_kill=after_kill, ok=(0,), rerun_ok=(0, 1))
    assert len(run.tried) == len(run.steps)
