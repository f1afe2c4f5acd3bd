"""Bench: the cost of holding the card (PC/SC transaction) for each read, same pcscd, same run.

On the simulator (demo/cards/crous-card.yaml, served by a process of its own) in a private
pcscd + vpcd, with the demo school's profile, one connection per read as the daemon and
`badged card read` do:
- baseline: connect, read, disconnect (`CardConnection`, no transaction: what reads did
  before, and what fails ~40 % of the time when two programs read one card);
- ours: `held_card` (connect and SCardBeginTransaction, bounded by a helper thread), read,
  end, disconnect.
Then both at once from two processes (`--concurrent N` reads each, ours only): every read
must be right. Goals (bench/run_all): ratio (ours / baseline, median per read) at most
1.5; no wrong or half read (`figure: bad_reads`). Exit 1 when one is missed.

    .venv/bin/python bench/card_transaction.py [--reads 300] [--concurrent 500]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from badged.cards.pcsc import CardConnection, held_card
from badged.cards.profile import ProfileReader
from badged.cards.simulator import SimulatedDesfire
from badged.cards.vpcd import VpcdCard
from badged.config.tree import load_card_profile
from badged.demo.pcscd_sandbox import PcscdSandbox
from badged.demo.runner import DEMO_KEYS

REPO = Path(__file__).resolve().parent.parent
CARD = REPO / "demo" / "cards" / "crous-card.yaml"
READER_SCRIPT = REPO / "tests" / "cards" / "concurrent_reader.py"
MAX_RATIO = 1.5
EXPECTED = {"csn": "04112233445566", "crous_number": "249760531028417",
            "escn": "9b1a2c3d-4e5f-4071-8293-a4b5c6d7e8f9"}


def serve_card(port: int) -> None:
    VpcdCard(SimulatedDesfire.from_file(CARD), port=port).serve_forever()


def timed(read: object, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        read()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--concurrent", type=int, default=500, metavar="N",
                        help="reads per process in the two-process run (0: skip)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="badged-bench-") as tmp:
        credentials = Path(tmp) / "credentials"
        credentials.mkdir(mode=0o700)
        for name, value in DEMO_KEYS.items():
            fd = os.open(credentials / name, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(value + "\n")
        os.environ["CREDENTIALS_DIRECTORY"] = str(credentials)
        profile = ProfileReader(*load_card_profile(REPO / "config", "demo"))
        with PcscdSandbox(Path(tmp) / "pcscd") as sandbox:
            assert sandbox.port is not None
            card = multiprocessing.get_context("spawn").Process(
                target=serve_card, args=(sandbox.port,), daemon=True)
            card.start()
            try:
                sandbox.wait_card(present=True, timeout=20)
                return run(sandbox, profile, args)
            finally:
                card.terminate()
                card.join()


def run(sandbox: PcscdSandbox, profile: ProfileReader, args: argparse.Namespace) -> int:
    name = sandbox.readers[0]

    def plain() -> None:
        with CardConnection(name) as conn:
            profile.read(conn.transmit, reader=name, atr=conn.atr)

    def held() -> None:
        with held_card(name) as conn:
            profile.read(conn.transmit, reader=name, atr=conn.atr)

    timed(plain, 20), timed(held, 20)  # warm-up
    baseline = statistics.median(timed(plain, args.reads))
    ours = statistics.median(timed(held, args.reads))
    ratio = ours / baseline
    print(f"one read per connection, n={args.reads}, median: baseline without a "
          "transaction, ours with held_card")
    print(f"ours: {ours * 1000:.3f} ms")
    print(f"baseline: {baseline * 1000:.3f} ms")
    print(f"ratio: {ratio:.3f}")
    ok = ratio <= MAX_RATIO
    if args.concurrent:
        env = {**os.environ, **sandbox.env()}
        argv = [sys.executable, str(READER_SCRIPT), name, str(args.concurrent),
                json.dumps(EXPECTED)]
        start = time.perf_counter()
        procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
                 for _ in range(2)]
        results = [json.loads(p.communicate()[0]) for p in procs]
        wall = time.perf_counter() - start
        print(f"two processes × {args.concurrent} reads at once: {results} in {wall:.1f} s")
        bad = sum(args.concurrent - r["ok"] for r in results)
        print(f"figure: bad_reads {bad}")
        ok = ok and not bad
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
