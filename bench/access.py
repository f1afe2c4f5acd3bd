"""Bench: one door-system export after a card state change (what `on_change` costs), against
a bare query and `csv` write of the same cards, in the same run.

Fills a store with `--cards` cards (one per person; 5 % lost, 3 % expired), delivers a first
TIL export into a folder, then times, best of N, one card set lost followed by:
- ours: `badged.access.export.run` of the TIL export (the cards and holders read, who is
  valid judged, every line rendered and its fingerprint taken, compared with what was
  delivered, the file written atomically and fsync'ed, the delivered set recorded);
- baseline: the same join in SQL, every row through `csv.writer`, encoded ISO-8859-1 and
  written to a file: the least any tool writing this file must do.
It prints both and the ratio (goal ≤ 5), and the peak Python memory of one export.

    .venv/bin/python bench/access.py [--cards 20000] [--runs 5]
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

from badged.access import export
from badged.config.host import load_host
from badged.enrolment.lifecycle import change_state
from badged.store.db import open_store

REPO = Path(__file__).resolve().parents[1]
GOAL = 5.0
FIRST = ("Élodie", "Noël", "Zoé", "Léa", "Hugo", "Chloé", "Jérôme", "Maël", "Inès", "Luc")
LAST = ("Lefèvre", "Dupont", "Nguyen", "Martin", "Bérard", "Durand", "Petit", "Roux")


def fill(conn: sqlite3.Connection, cards: int, seed: int = 2026) -> list[str]:
    rng = random.Random(seed)
    csns, people, rows, changes = [], [], [], []
    for i in range(cards):
        csn = "04" + rng.randbytes(6).hex().upper()
        state = rng.choices(("active", "lost", "expired"), (92, 5, 3))[0]
        enrolled = f"20{rng.randint(20, 26)}-09-{rng.randint(1, 28):02d}T08:00:00+00:00"
        people.append((f"p{i:06d}", rng.choice(LAST), rng.choice(FIRST), "student",
                       f"{rng.randint(1998, 2008)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
                       "2026-09-01T00:00:00+00:00", "2026-09-01T00:00:00+00:00"))
        rows.append((csn, f"p{i:06d}", state, enrolled, enrolled))
        changes.append((csn, state, enrolled))
        if state == "active":
            csns.append(csn)
    conn.execute("PRAGMA foreign_keys = OFF")  # set-up only: the rows are consistent
    with conn:
        conn.executemany("INSERT INTO people (id, last_name, first_name, category, birth_date, "
                         "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)", people)
        conn.executemany("INSERT INTO cards (csn, person_id, state, enrolled_at, updated_at) "
                         "VALUES (?, ?, ?, ?, ?)", rows)
        conn.executemany("INSERT INTO card_state_changes (csn, old_state, new_state, actor, "
                         "at) VALUES (?, NULL, ?, 'bench', ?)", changes)
    conn.execute("PRAGMA foreign_keys = ON")
    return csns


BASELINE_SQL = (
    "SELECT p.id, p.last_name, p.first_name, c.csn, c.enrolled_at, p.end_of_rights, "
    "c.state = 'active', p.birth_date FROM cards AS c JOIN people AS p ON p.id = c.person_id "
    "ORDER BY p.id, c.enrolled_at, c.csn")


def baseline(db: Path, out: Path) -> int:
    conn = sqlite3.connect(db)
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    rows = 0
    for row in conn.execute(BASELINE_SQL):
        writer.writerow((*row, "Mines Saint-Étienne (ICM)", "A"))
        rows += 1
    conn.close()
    out.write_bytes(buffer.getvalue().encode("iso-8859-1"))
    return rows


def best(runs: int, before, func) -> float:
    times = []
    for _ in range(runs):
        before()
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-access-") as tmp:
        folder = Path(tmp)
        host_file = folder / "badged.yaml"
        host_file.write_text(f"tree: {REPO / 'config'}\nschool: emse\nstate_dir: "
                             f"{folder / 'state'}\nruntime_dir: {folder / 'run'}\n"
                             "smtp: {host: 127.0.0.1}\n")
        host = load_host(host_file)
        site = host.load_site()
        conn = open_store(host.state_dir)
        active = iter(fill(conn, args.cards))
        first = export.run(conn, host, site, "til", datetime.now(UTC))
        assert first.written and first.plan.cards == args.cards, first.error

        def lose_one() -> None:
            change_state(conn, next(active), "lost", who="bench")

        def ours() -> None:
            result = export.run(conn, host, site, "til", datetime.now(UTC))
            assert result.written and [c.what for c in result.plan.changes] == ["blocked"]

        db = host.state_dir / "badged.sqlite3"
        base = best(args.runs, lambda: None, lambda: baseline(db, folder / "baseline.csv"))
        ours_time = best(args.runs, lose_one, ours)
        lose_one()
        tracemalloc.start()
        ours()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        size = (host.state_dir / "access/til/cartes-til.csv").stat().st_size
    ratio = ours_time / base
    print(f"cards:               {args.cards} (file {size / 1e6:.1f} MB)")
    print(f"baseline query+csv:  {base:.3f} s")
    print(f"ours (export after one card lost): {ours_time:.3f} s")
    print(f"peak Python memory (ours): {peak / 2**20:.1f} MiB (goal: ratio <= {GOAL})")
    print(f"ours: {ours_time:.3f} s")
    print(f"baseline: {base:.3f} s")
    print(f"ratio: {ratio:.3f}")
    print(f"figure: peak_traced {peak / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
