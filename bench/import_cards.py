"""Bench: `badged crous import-cards` against the sqlite3 shell's `.import`, same file, same run.

Generates a realistic CROUS card CSV (CSN `04` + 6 random bytes, unique 8-digit NUM_CARTE,
a few EMETTEUR/MAPPING values, dates over three years), then times, best of N runs each:
- ours: the service function `import_cards` on a fresh store (WAL, migrations applied);
- baseline: `sqlite3 DB` with `.mode csv`, `.separator ;`, `.import --skip 1` into a table
  with the same keys (CSN primary key, NUM_CARTE unique).
Then a re-import of the same file into our filled store (every row unchanged), and the peak
memory of one more, untimed, run of ours (tracemalloc: Python objects; SQLite's own page
cache is not traced) plus the process's peak RSS.

    .venv/bin/python bench/import_cards.py [--rows 100000] [--runs 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from badged.crous.cards_csv import EXPECTED_HEADER, import_cards
from badged.store.db import open_store

GOAL = 1.5

BASELINE_SCRIPT = """\
CREATE TABLE crous_cards (
    pix_ss TEXT, pix_nn TEXT, appl TEXT, csn TEXT PRIMARY KEY, rid TEXT, nfo TEXT,
    cnous TEXT, crous TEXT, emetteur TEXT, mapping TEXT, num_carte TEXT UNIQUE,
    date_creation TEXT
);
.mode csv
.separator ;
.import --skip 1 {file} crous_cards
"""


def generate(path: Path, rows: int, seed: int = 20240901) -> None:
    """Write a CROUS card CSV of `rows` rows, CRLF like the CROUS's Windows exports."""
    rng = random.Random(seed)
    numbers = rng.sample(range(36_000_000, 99_999_999), rows)
    seen: set[str] = set()
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(EXPECTED_HEADER + "\r\n")
        for number in numbers:
            csn = "04" + rng.randbytes(6).hex().upper()
            while csn in seen:
                csn = "04" + rng.randbytes(6).hex().upper()
            seen.add(csn)
            crous = rng.choice(("0691", "0441", "0591"))
            emetteur = rng.choice(("41", "65", "1A"))
            date = f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(2023, 2025)}"
            out.write(f"03;0000;D1;{csn};{csn};0;0;{crous};{emetteur};1;{number};{date}\r\n")


def best_of(runs: int, once: Callable[[], float]) -> float:
    return min(once() for _ in range(runs))


def time_ours(csv_path: Path, work: Path) -> float:
    state = Path(tempfile.mkdtemp(dir=work))
    conn = open_store(state)  # migrations are not part of the import
    try:
        start = time.perf_counter()
        report = import_cards(conn, csv_path)
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    assert report.outcome == "ok" and report.imported == report.read, report.summary()
    shutil.rmtree(state)
    return elapsed


def time_reimport(csv_path: Path, work: Path) -> float:
    state = Path(tempfile.mkdtemp(dir=work))
    conn = open_store(state)
    try:
        import_cards(conn, csv_path)
        start = time.perf_counter()
        report = import_cards(conn, csv_path)
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    assert report.unchanged == report.read, report.summary()
    shutil.rmtree(state)
    return elapsed


def time_baseline(csv_path: Path, work: Path, rows: int) -> float:
    db = work / "baseline.sqlite3"
    db.unlink(missing_ok=True)
    script = BASELINE_SCRIPT.format(file=csv_path)
    start = time.perf_counter()
    subprocess.run(["sqlite3", str(db)], input=script, text=True, check=True)
    elapsed = time.perf_counter() - start
    count = subprocess.run(["sqlite3", str(db), "SELECT count(*) FROM crous_cards"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert count == str(rows), f"baseline imported {count} rows, not {rows}"
    return elapsed


def peak_python_memory(csv_path: Path, work: Path) -> int:
    tracemalloc.start()
    try:
        time_ours(csv_path, work)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="work in DIR and keep the CSV there")
    args = parser.parse_args(argv)
    if shutil.which("sqlite3") is None:
        print("sqlite3 command-line tool not found (apt install sqlite3)", file=sys.stderr)
        return 1
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-import-cards-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        csv_path = work / "cards.csv"
        generate(csv_path, args.rows)
        size_mb = csv_path.stat().st_size / 1e6
        print(f"file: {args.rows} rows, {size_mb:.1f} MB; best of {args.runs} runs each")
        # Alternate the two so that both see the same machine load.
        ours, baseline = [], []
        for _ in range(args.runs):
            baseline.append(time_baseline(csv_path, work, args.rows))
            ours.append(time_ours(csv_path, work))
        best_ours, best_baseline = min(ours), min(baseline)
        reimport = best_of(args.runs, lambda: time_reimport(csv_path, work))
        peak = peak_python_memory(csv_path, work)
        ratio = best_ours / best_baseline
        print(f"sqlite3 .import:        {best_baseline:7.3f} s")
        print(f"badged import-cards:    {best_ours:7.3f} s  (fresh store)")
        print(f"ours / baseline:        {ratio:7.2f}    (goal <= {GOAL}: "
              f"{'met' if ratio <= GOAL else 'NOT met'})")
        print(f"badged re-import:       {reimport:7.3f} s  (same file, all unchanged)")
        print(f"peak Python memory:     {peak / 2**20:7.1f} MiB (tracemalloc, one import)")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS, this process: {rss:7.1f} MiB (ru_maxrss, whole bench)")
        # For bench/run_all: machine-readable figures, one per line.
        print(f"ours: {best_ours:.3f} s")
        print(f"baseline: {best_baseline:.3f} s")
        print(f"ratio: {ratio:.3f}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
