"""Bench: registry import + change sets + rendering of every kind, against a bare `csv`
read and write of the same rows, in the same run.

Generates the demo school's two registry exports (students UTF-8, staff Windows-1252) with
`--people` rows in all (90 % students, half of them re-enrolled), then times, best of N:
- ours: `import_population` of both files on a fresh store, then for each exchange kind
  `changes.compute` and `layouts.render` of the lines due (what `exchange run` does before
  the outbox);
- baseline: `csv.reader` over both files and `csv.writer` of every row into one CSV, the
  least any tool doing the same job must do;
- floor (no goal, shown beside): the baseline plus one bare `executemany` of every row into
  the store's `people` table: the least any tool that keeps the registry in SQLite must do.
It prints them, the ratio (goal ≤ 3), the lines per kind, and the peak memory of ours
(peak RSS of one run in a forked process of its own: goal ≤ 150 MB). And, as an extra line
(no goal), the steady state: the next run on a store holding the first one with its lines
recorded as sent, against exports where 1 % of the people changed (their e-mail).

    .venv/bin/python bench/exchanges.py [--people 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import random
import resource
import shutil
import sys
import tempfile
import time
import traceback
import tracemalloc
from datetime import date, datetime
from pathlib import Path

from badged.config.model import ExchangeKind
from badged.config.tree import Site, load_tree
from badged.crous import changes
from badged.crous.deadlines import PARIS
from badged.crous.population import import_population
from badged.store.db import bulk_write, open_store

REPO = Path(__file__).resolve().parents[1]
GOAL = 3.0
GOAL_RSS_MB = 150
NOW = datetime(2026, 9, 20, 6, 30, tzinfo=PARIS)
FIRST = ("Élodie", "Noël", "Zoé", "Léa", "Hugo", "Chloé", "Jérôme", "Maël", "Inès", "Luc")
LAST = ("Lefèvre", "Dupont", "Nguyen", "Martin", "Bérard", "Lecœur", "Durand", "Petit")


def generate(folder: Path, people: int, seed: int = 2026) -> tuple[Path, Path]:
    rng = random.Random(seed)
    students, staff = folder / "students.csv", folder / "staff.csv"
    n_students = people * 9 // 10
    with students.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter=";", lineterminator="\r\n")
        w.writerow(["NUM_ETU", "INE", "NOM", "PRENOM", "DATE_NAISSANCE", "FORMATION", "MAIL",
                    "ANNEE", "ANNEE_PREMIERE_INSCRIPTION"])
        for i in range(n_students):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            w.writerow([f"2{i:07d}", f"{i:010d}X", last, first,
                        f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/"
                        f"{rng.randint(1998, 2008)}", "Cycle ingénieur",
                        f"e{i}@example.org", 2026, rng.choice((2024, 2025, 2026, 2026))])
    with staff.open("w", encoding="cp1252", newline="") as f:
        w = csv.writer(f, delimiter=";", lineterminator="\r\n")
        w.writerow(["MATRICULE", "NOM", "PRENOM", "DATE_NAISSANCE", "MAIL", "STATUT",
                    "INDICE", "FIN_CONTRAT"])
        for i in range(people - n_students):
            w.writerow([f"D{i:06d}", rng.choice(LAST).replace("œ", "oe"),
                        rng.choice(FIRST), "01/01/1980", f"s{i}@example.org",
                        rng.choice(("psg", "prs", "ctr", "stg")), rng.randint(0, 900), ""])
    return students, staff


def ours(site: Site, files: tuple[Path, Path], state: Path) -> dict[str, int]:
    conn = open_store(state)
    for name, path in zip(("students", "staff"), files, strict=True):
        report = import_population(conn, path, name, site.school.population[name],
                                   today=date(2026, 9, 20))
        assert not report.rejections, report.rejections[:3]
    counts = {}
    for kind, found in changes.compute_all(conn, site, list(ExchangeKind), NOW).items():
        _, layout = site.layouts[kind]
        found.render(layout, kind.value)
        counts[kind.value] = len(found.lines)
    conn.close()
    return counts


def mark_sent(state: Path, site: Site) -> None:
    """Record every line due as sent, as the outbox does when it writes a batch."""
    conn = open_store(state)
    with conn:
        for kind, found in changes.compute_all(conn, site, list(ExchangeKind), NOW).items():
            batch = conn.execute(
                "INSERT INTO batches (kind, transport, message_id, recipients, created_at) "
                "VALUES (?, 'mail', ?, '[]', ?)", (kind.value, f"<bench-{kind.value}>",
                                                   NOW.isoformat())).lastrowid
            conn.executemany(
                "INSERT INTO exchange_items (batch_id, kind, person_id, fingerprint, reason) "
                "VALUES (?, ?, ?, ?, ?)", [(batch, kind.value, line.person_id,
                                            line.fingerprint, line.reason)
                                           for line in found.lines])
    conn.close()


def changed_copies(files: tuple[Path, Path], folder: Path) -> tuple[Path, Path]:
    """The exports again with one person in 100 at a new e-mail address."""
    copies = []
    for path, encoding in zip(files, ("utf-8", "cp1252"), strict=True):
        lines = path.read_bytes().decode(encoding).split("\r\n")
        for i in range(1, len(lines), 100):
            lines[i] = lines[i].replace("@example.org", "@new.example.org")
        copy = folder / f"changed-{path.name}"
        copy.write_bytes("\r\n".join(lines).encode(encoding))
        copies.append(copy)
    return copies[0], copies[1]


def steady(site: Site, files: tuple[Path, Path], folder: Path, runs: int
           ) -> tuple[float, dict[str, int]]:
    """The next run in steady state: a store holding the first run, its lines sent, and
    exports where 1 % of the people changed; best of `runs` (each on a copy)."""
    first = folder / "state-first"
    ours(site, files, first)
    mark_sent(first, site)
    changed = changed_copies(files, folder)
    times, counts = [], {}
    for n in range(runs):
        state = folder / f"state-steady{n}"
        shutil.copytree(first, state)
        started = time.perf_counter()
        counts = ours(site, changed, state)
        times.append(time.perf_counter() - started)
    return min(times), counts


def baseline(files: tuple[Path, Path]) -> int:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    rows = 0
    for path, encoding in zip(files, ("utf-8", "cp1252"), strict=True):
        with path.open(encoding=encoding, newline="") as f:
            for row in csv.reader(f, delimiter=";"):
                writer.writerow(row)
                rows += 1
    out.getvalue().encode("utf-8")
    return rows


# Where each export's columns go in `people` (the demo school's mapping), for `floor`: the
# `people` column of each CSV column, None for one the school does not store (FORMATION).
FLOOR_COLUMNS = (
    ("id", "ine", "last_name", "first_name", "birth_date", None, "email", "academic_year",
     "first_enrolment_year"),  # students.csv
    ("id", "last_name", "first_name", "birth_date", "email", "status_code", "staff_index",
     "end_of_rights"),  # staff.csv
)


def floor(files: tuple[Path, Path], state: Path) -> int:
    """The least a tool that keeps the registry in SQLite does: the baseline's csv read and
    write, plus one bare `executemany` of every row into `people` (the real table, its keys
    and indexes, a fresh WAL store as `ours` opens it) in one transaction. No check, no
    conversion, no classification, no fingerprint: what `ours` does on top costs the rest.
    """
    conn = open_store(state)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    now = NOW.isoformat()
    rows = 0
    with bulk_write(conn, "people") as tx:  # as the import: one transaction, a large cache
        for path, encoding, columns, category in zip(files, ("utf-8", "cp1252"), FLOOR_COLUMNS,
                                                     ("student", "staff"), strict=True):
            with path.open(encoding=encoding, newline="") as f:
                reader = csv.reader(f, delimiter=";")
                next(reader)
                data = list(reader)
            # Numbered parameters: a column not stored is bound, and not used.
            stored = [(name, f"?{i}") for i, name in enumerate(columns, start=1) if name]
            conn.executemany(
                f"INSERT INTO people ({', '.join(n for n, _ in stored)}, category, created_at, "
                f"updated_at) VALUES ({', '.join(p for _, p in stored)}, '{category}', "
                f"'{now}', '{now}')", data)
            writer.writerows(data)
            rows += len(data)
        tx.commit()
    conn.close()
    out.getvalue().encode("utf-8")
    return rows


def peak_rss(func) -> float:
    """Peak RSS (MB) of a forked child running `func` once: what a process importing the
    exports and writing the files needs (a process that ran it several times keeps
    freed-but-fragmented memory of the earlier runs, which no real run has)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        try:
            func()
            os.write(write_end, str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
                     .encode())
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        kib = f.read()
    os.waitpid(pid, 0)
    if not kib:
        raise SystemExit("the peak RSS child failed")
    return int(kib) * 1024 / 1e6


def best(runs: int, func) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    site = load_tree(REPO / "config").site("demo")
    with tempfile.TemporaryDirectory(prefix="bench-exchanges-") as tmp:
        folder = Path(tmp)
        files = generate(folder, args.people)
        rss = peak_rss(lambda: ours(site, files, folder / "state-rss"))
        n = iter(range(1_000_000))
        base = best(args.runs, lambda: baseline(files))
        ours_time = best(args.runs, lambda: ours(site, files, folder / f"state{next(n)}"))
        floor_time = best(args.runs, lambda: floor(files, folder / f"floor{next(n)}"))
        tracemalloc.start()
        counts = ours(site, files, folder / "state-mem")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        steady_time, steady_counts = steady(site, files, folder, args.runs)
    ratio = ours_time / base
    print(f"people:              {args.people} ({args.people * 9 // 10} students)")
    print(f"lines due per kind:  {counts}")
    print(f"baseline csv r/w:    {base:.3f} s")
    print(f"ours (import+sets+render): {ours_time:.3f} s")
    print(f"peak memory (ours):  {peak / 2**20:.1f} MiB traced, process max RSS "
          f"{rss:.1f} MB (one run in a process of its own; goals: ratio <= {GOAL}, "
          f"RSS <= {GOAL_RSS_MB} MB)")
    print(f"floor (csv read, bare insert of every row into people, csv write): "
          f"{floor_time:.3f} s, {floor_time / base:.2f} x the baseline; ours is "
          f"{ours_time / floor_time:.2f} x the floor")
    print(f"steady state (next run, the first run's lines sent, 1 % of the people changed): "
          f"{steady_time:.3f} s, {steady_time / base:.2f} x the baseline; lines due: "
          f"{steady_counts}")
    # For bench/run_all: machine-readable figures, one per line.
    print(f"ours: {ours_time:.3f} s")
    print(f"baseline: {base:.3f} s")
    print(f"ratio: {ratio:.3f}")
    print(f"figure: peak_rss {rss:.1f} MB")
    print(f"figure: floor_ratio {floor_time / base:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
