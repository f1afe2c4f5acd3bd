"""`badged crous sync` (the API CROUS) killed at every step, against the strict local
peer: every write the CROUS accepted is recorded at once, a card write is recorded before
it is made, holders are looked up before they are created. So after a kill and the sync
run again, the CROUS holds exactly what an uninterrupted sync leaves (two holders and
their cards created, a card told before and lost since cancelled) and no object was
created twice."""

from __future__ import annotations

import copy
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from crashkit import REPO, Zygote, explore, make_site, query, settle, store_dump

from badged.crous.deadlines import academic_year_start
from badged.store import cards, people
from badged.store.db import open_store, utcnow
from badged.testing.crous_peer.peer import CrousPeer

CLIENT, SECRET = "demo-school", "crash-test-secret-4"
WHEN = "2026-11-03T09:00:00+00:00"


@pytest.fixture(scope="module")
def peer() -> Iterator[CrousPeer]:
    with CrousPeer(clients={CLIENT: SECRET}) as running:
        yield running


def site_for(folder: Path, peer: CrousPeer) -> Path:
    """The demo school, every exchange by the API CROUS (the peer); its tree is beside it
    (not copied per step)."""
    tree = folder.with_name("tree")
    shutil.copytree(REPO / "config", tree)
    secret = tree / "crous-api.secret"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(SECRET + "\n")
    crous_file = tree / "crous" / "demo.yaml"
    crous = yaml.safe_load(crous_file.read_text())
    crous["api"] = {"base_url": peer.base_url, "token_url": peer.token_url,
                    "client_id": CLIENT, "client_secret": {"file": "crous-api.secret"},
                    "crous_number": "99", "connect_timeout_seconds": 1.0,
                    "read_timeout_seconds": 10.0, "backoff_seconds": 0.0, "max_retries": 1}
    crous_file.write_text(yaml.safe_dump(crous, allow_unicode=True))
    school_file = tree / "schools" / "demo.yaml"
    school = yaml.safe_load(school_file.read_text())
    school["exchanges"] = [{"kind": k, "schedule": "every 10 minutes", "transport": "api"}
                           for k in ("reinscriptions", "primo_entrants", "personnels",
                                     "departs")]
    school_file.write_text(yaml.safe_dump(school, allow_unicode=True))
    return make_site(folder, tree=tree, when=WHEN)


CARDS = {"E1": "04A1B2C3D4E5F6", "E2": "04223344556677", "P1": "0444556677889A"}


def add_people(site: Path, *pids: str) -> None:
    """Primo-entrants (E…) or staff (P…), each with their card in the CROUS's CSV."""
    year = academic_year_start(datetime.fromisoformat(WHEN), "09-01").year
    conn = open_store(site / "state")
    for pid in pids:
        category = "student" if pid.startswith("E") else "staff"
        values = {"id": pid, "last_name": f"Nom{pid}", "first_name": f"Prénom{pid}",
                  "category": category, "email": f"{pid.lower()}@example.org",
                  "birth_date": "2005-03-14", "source": "students"}
        if category == "student":
            values.update(ine=f"INE{pid}", academic_year=year, first_enrolment_year=year)
        else:
            values.update(status_code="prs", staff_index=512, source="staff")
        people.upsert(conn, people.Person(**values))
        csn, number = CARDS[pid], 36000000 + list(CARDS).index(pid) + 1
        conn.execute(
            "INSERT INTO crous_cards (csn, rid, num_carte, pix_ss, pix_nn, appl, nfo, "
            "cnous, crous, emetteur, mapping, date_creation, imported_at, source_file) "
            "VALUES (?, ?, ?, '03', '0000', 'D1', '0', '0', '0691', 65, 1, '2026-09-01', "
            "?, 'test.csv')", (csn, csn, number, utcnow()))
        cards.link(conn, csn, pid, number)
    conn.close()


def test_crous_sync_every_step(zygote: Zygote, peer: CrousPeer, tmp_path: Path) -> None:
    """Right after a kill: what the store says it told is what the CROUS holds, or less
    (a write accepted but not recorded yet); after the sync ran again: the CROUS's
    holders and cards and the store are an uninterrupted sync's, and no holder or card
    was created twice (each create at most once per object, across both runs)."""
    template = site_for(tmp_path / "template", peer)
    add_people(template, "E2")
    for argv in (["crous", "sync"], ["card", "set-state", CARDS["E2"], "lost"]):
        done = zygote.run(template, argv)   # E2 and their card told, then the card lost
        assert done.rc == 0, done.describe()
    add_people(template, "E1", "P1")       # new: to create, with their cards
    settle(template)
    # The peer's state: every dict and list it keeps (holders, cards, their indexes, the
    # writes it applied…), put back before each run that starts from the template.
    with peer.lock:
        empty = {name: copy.deepcopy(value) for name, value in vars(peer).items()
                 if isinstance(value, dict | list) and name not in ("clients", "tariffs")}

    def fresh() -> None:
        with peer.lock:
            for name, value in empty.items():
                setattr(peer, name, copy.deepcopy(value))

    def crous_state() -> object:
        with peer.lock:
            return copy.deepcopy((peer.holders, peer.cards))

    def snapshot(site: Path) -> dict[str, object]:
        with peer.lock:
            creates = Counter((path, body.get("identifier") if isinstance(body, dict)
                               else None) for method, path, body in peer.writes
                              if method == "POST")
        assert all(n == 1 for n in creates.values()), f"created twice: {creates}"
        # crous_api_runs is the log of runs: a killed run is one more, unfinished.
        return {"store": store_dump(site, aliases=[template],
                                    skip=("leases", "crous_api_runs")),
                "crous": crous_state()}

    def after_kill(site: Path) -> None:
        holders, crous_cards = crous_state()
        for (identifier,) in query(site, "SELECT identifier FROM crous_api_holders"):
            assert identifier in holders, f"holder {identifier} recorded, not at the CROUS"
        for csn, id_zdc, state, pending in query(
                site, "SELECT csn, id_zdc, told_state, pending_write FROM crous_api_cards"):
            # a card about to be written, or lost before the CROUS knew it, may be absent
            assert pending or state != "active" or id_zdc in crous_cards, \
                f"card {csn} recorded as told, not at the CROUS"

    run = explore(zygote, template, tmp_path / "work", ["crous", "sync"],
                  snapshot=snapshot, after_kill=after_kill, fresh=fresh)
    holders, crous_cards = crous_state()
    assert sorted(holders) == ["E1", "E2", "P1"] and len(crous_cards) == 3
    lost = next(c for c in crous_cards.values() if c["uid"] == CARDS["E2"])
    assert lost["reason"] == "DP" and lost["cancelDate"]  # perte: cancelled
    assert len(run.tried) == len(run.steps)
