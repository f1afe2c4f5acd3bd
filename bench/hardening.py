"""Hostile input vs ordinary input, side by side in one run (issue: hardening).

1. YAML: loading the shipped config tree (the baseline) vs loading a tree where one school
   file is each hostile fixture of tests/fixtures/config/yaml-*.yaml (refused): time (best
   of --runs) and peak Python memory (tracemalloc) of each.
2. Control socket: the median time of a `status` round trip on an idle server (baseline) vs
   the same with 16 idle connections and 16 half-sent requests open.

Prints a table, then the machine-readable lines of bench/run_all (`ours:` the slowest
refusal, `baseline:` the shipped tree's load, `figure:` lines, `ratio:` ours / baseline);
the goals live in bench/run_all.

    .venv/bin/python bench/hardening.py [--runs 5]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from badged.config.errors import ConfigError  # noqa: E402
from badged.config.tree import load_tree  # noqa: E402
from badged.daemon.control import ControlClient, ControlServer, socket_path  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "config"


def measure(load: Callable[[], object], runs: int) -> tuple[float, int]:
    """(best time in s, peak traced bytes) of `load` (ConfigError counts as done)."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        with contextlib.suppress(ConfigError):
            load()
        best = min(best, time.perf_counter() - start)
    tracemalloc.start()
    with contextlib.suppress(ConfigError):
        load()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return best, peak


def yaml_rows(runs: int, tmp: Path) -> list[tuple[str, float, int]]:
    rows = [("shipped tree (baseline)", *measure(lambda: load_tree(REPO / "config"), runs))]
    for case in sorted(FIXTURES.glob("yaml-*.yaml")):
        tree = tmp / case.stem
        shutil.copytree(REPO / "config", tree)
        shutil.copy(case, tree / "schools" / "demo.yaml")
        rows.append((case.stem, *measure(lambda tree=tree: load_tree(tree), runs)))
    return rows


def status_median(path: Path, n: int = 50) -> float:
    client = ControlClient(path)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        client.request("status", timeout=5)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def control_rows(tmp: Path) -> tuple[float, float]:
    with ControlServer(socket_path(tmp)) as server:
        server.register("status", lambda req: {"readers": 2}, light=True)
        idle = status_median(server.path)
        socks = []
        for i in range(32):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(server.path))
            if i % 2:
                sock.sendall(b'{"op": "sta')
            socks.append(sock)
        try:
            crowded = status_median(server.path)
        finally:
            for sock in socks:
                sock.close()
    return idle, crowded


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bd-", dir="/tmp") as tmp:
        rows = yaml_rows(args.runs, Path(tmp))
        idle, crowded = control_rows(Path(tmp))
    print(f"{'tree':32} {'best time':>10} {'peak traced':>12}")
    for name, seconds, peak in rows:
        print(f"{name:32} {seconds * 1000:8.1f} ms {peak / 2**20:9.2f} MiB")
    print(f"control socket status round trip: idle {idle * 1000:.2f} ms, with 16 idle and "
          f"16 half-sent connections {crowded * 1000:.2f} ms")
    baseline = rows[0][1]
    worst = max(seconds for _, seconds, _ in rows[1:])
    peak = max(peak for _, _, peak in rows[1:])
    print(f"ours: {worst:.4f} s")
    print(f"baseline: {baseline:.4f} s")
    print(f"figure: slowest_refusal {worst:.3f} s")
    print(f"figure: refusal_peak {peak / 2**20:.2f} MB")
    print(f"figure: status_crowded {crowded * 1000:.2f} ms")
    print(f"ratio: {worst / baseline:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
