"""Bench: a first API CROUS sync of N people against the local peer, against the same
number of bare HTTP calls, in the same run; then a second sync (goal: no call).

The peer (`python -m badged.testing.crous_peer`) runs in a process of its own, as the CROUS
would. Both sides use one `CrousClient` (httpx, connection reuse):
- ours: `badged.crous.sync.sync` on a fresh store holding N people (90 % students, with an
  INE) each with an active card from the CROUS card CSV: plan, look-ups, creations, cards,
  the state written after every accepted write;
- baseline: the very requests a first sync makes (per student: GET by id → 404, GET by INE
  → 404, POST holder, POST card; per staff member: the same without the INE look-up), built
  beforehand and sent one after another through the same client's `httpx.Client` on a
  fresh peer, once before ours and once after (the mean counts: a shared machine's load
  drifts): what any client must at least do.
Prints both, `ratio: X` (ours / baseline; goal ≤ 1.3, kept in bench/run_all) on a line
of its own, and the calls of the second sync (goal 0).

    .venv/bin/python bench/api_sync.py [--people 10000]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from badged.config.host import load_host
from badged.crous.api import PREFIX, CrousClient, format_date
from badged.crous.deadlines import academic_year_start
from badged.crous.sync import card_body, sync
from badged.store.crous_cards import get as csv_card
from badged.store.db import open_store

REPO = Path(__file__).resolve().parents[1]
GOAL = 1.3
CLIENT_ID, SECRET = "bench", "bench-secret-value"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def peer(folder: Path) -> Iterator[str]:
    port = free_port()
    secret = folder / f"peer-{port}.secret"
    secret.write_text(SECRET)
    proc = subprocess.Popen([sys.executable, "-m", "badged.testing.crous_peer", "--listen",
                             f"127.0.0.1:{port}", "--client-id", CLIENT_ID, "--secret-file",
                             str(secret)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "API CROUS on" in line, line
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def make_school(folder: Path, base_url: str) -> Any:
    tree = folder / "tree"
    shutil.copytree(REPO / "config", tree)
    fd = os.open(tree / "crous-api.secret", os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(SECRET)
    crous_file = tree / "crous" / "demo.yaml"
    crous = yaml.safe_load(crous_file.read_text())
    crous["api"] = {"base_url": base_url, "token_url": f"{base_url}/api/oauth/token",
                    "client_id": CLIENT_ID, "client_secret": {"file": "crous-api.secret"}}
    crous_file.write_text(yaml.safe_dump(crous, allow_unicode=True))
    school_file = tree / "schools" / "demo.yaml"
    school = yaml.safe_load(school_file.read_text())
    school["exchanges"] = [{"kind": k, "schedule": "every 1 hour", "transport": "api"}
                           for k in ("reinscriptions", "primo_entrants", "personnels",
                                     "departs")]
    school_file.write_text(yaml.safe_dump(school, allow_unicode=True))
    host_file = folder / "badged.yaml"
    host_file.write_text(f"tree: {tree}\nschool: demo\nstate_dir: {folder / 'state'}\n"
                         f"runtime_dir: {folder / 'run'}\n")
    return load_host(host_file)


def populate(conn: Any, n: int, year: int) -> None:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    people, links, cards = [], [], []
    for i in range(n):
        student = i % 10 != 0
        pid = f"P{i:06d}"
        people.append((pid, f"{i:010d}X" if student else None, "Nom", f"Prénom{i}",
                       "2004-05-06", f"p{i}@example.org", "student" if student else "staff",
                       year if student else None,
                       (year if i % 2 else year - 1) if student else None,
                       None if student else "prs", None if student else 500, now, now))
        csn = f"04{i:012X}"
        links.append((csn, csn, 40000000 + i, "03", "0000", "D1", "0", "0", "0441", 65, 1,
                      "2026-09-01", now, "bench.csv"))
        cards.append((csn, pid, 40000000 + i, now, now))
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO people (id, ine, last_name, first_name, birth_date, email, "
                     "category, academic_year, first_enrolment_year, status_code, "
                     "staff_index, created_at, updated_at) VALUES "
                     "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", people)
    conn.executemany("INSERT INTO crous_cards (csn, rid, num_carte, pix_ss, pix_nn, appl, nfo, "
                     "cnous, crous, emetteur, mapping, date_creation, imported_at, source_file)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", links)
    conn.executemany("INSERT INTO cards (csn, person_id, crous_number, state, enrolled_at, "
                     "updated_at) VALUES (?, ?, ?, 'active', ?, ?)", cards)
    conn.execute("COMMIT")


def bare_requests(conn: Any, site: Any, now: datetime) -> list[tuple[str, str, Any]]:
    """The requests a first sync makes, built beforehand (bodies like the sync's)."""
    due = format_date(now.replace(year=now.year + 1))
    out: list[tuple[str, str, Any]] = []
    rows = conn.execute("SELECT p.id, p.ine, p.category, c.csn FROM people p JOIN cards c "
                        "ON c.person_id = p.id ORDER BY p.id").fetchall()
    for pid, ine, category, csn in rows:
        out.append(("GET", f"{PREFIX}/rightholders/{pid}", None))
        if ine:
            out.append(("GET", f"{PREFIX}/rightholders/{ine}", None))
        out.append(("POST", f"{PREFIX}/rightholders", {
            "identifier": pid, "firstName": "Prénom", "lastName": "Nom",
            "email": f"{pid}@example.org", "dueDate": due, "idCompanyRate": 10,
            "idRate": 1 if category == "student" else 2, "simpleBirthDate": "2004-05-06",
            "ine": ine, "rneOrgCode": site.school.uai}))
        row = csv_card(conn, csn)
        assert row is not None
        out.append(("POST", f"{PREFIX}/rightholders/{pid}/smartcard", card_body(row)))
    return out


def bare(site: Any, url: str, requests: list[tuple[str, str, Any]]) -> float:
    """Send `requests` (and a token request) through a CrousClient's httpx.Client."""
    api = site.crous.api.model_copy(update={"base_url": url,
                                            "token_url": f"{url}/api/oauth/token"})
    with CrousClient(api, site.tree) as client:
        started = time.perf_counter()
        headers = {"Authorization": f"Bearer {client.token()}"}
        for method, path, body in requests:
            answer = client.http.request(method, path, json=body, headers=headers)
            assert answer.status_code in (200, 201, 404), answer.status_code
        return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        folder = Path(tmp)
        now = datetime.now(UTC)
        with peer(folder) as ours_url, peer(folder) as before_url, \
                peer(folder) as after_url:
            (folder / "ours").mkdir()
            host = make_school(folder / "ours", ours_url)
            site = host.load_site()
            conn = open_store(host.state_dir)
            populate(conn, args.people, academic_year_start(now).year)
            requests = bare_requests(conn, site, now)

            # The baseline runs before and after ours (each on a fresh peer), and counts
            # as their mean: the load of a shared machine drifts over a long run.
            before = bare(site, before_url, requests)
            started = time.perf_counter()
            first = sync(conn, site, now)
            ours = time.perf_counter() - started
            assert first.failed == 0 and first.pending == 0, first.failures[:3]
            after = bare(site, after_url, requests)
            second = sync(conn, site, now)
            baseline = (before + after) / 2
            bare_calls = len(requests) + 1

        print(f"people: {args.people}, calls: first sync {first.calls}, bare {bare_calls}")
        print(f"baseline (bare calls): {baseline:.2f} s ({baseline / bare_calls * 1e3:.2f} ms "
              f"per call; {before:.2f} s before ours, {after:.2f} s after)")
        print(f"first sync: {ours:.2f} s ({first.done} holders and cards told)")
        print(f"second sync: {second.calls} calls in {second.duration:.2f} s")
        ratio = ours / baseline
        print(f"(goals: ratio <= {GOAL}, second sync 0 calls)")
        # For bench/run_all: machine-readable figures, one per line.
        print(f"ours: {ours:.3f} s")
        print(f"baseline: {baseline:.3f} s")
        print(f"ratio: {ratio:.3f}")
        print(f"figure: second_sync_calls {second.calls} calls")
        return 0


if __name__ == "__main__":
    sys.exit(main())
