"""Bench: a full card-profile read against the raw APDU round trip, same pcscd, same run.

On the simulator (demo/cards/crous-card.yaml) in a private pcscd + vpcd, read with the demo
school's profile (config/card-profiles/demo.yaml: UID, CROUS app AES auth, enciphered read,
ESCN), measures:
- baseline: the raw round trip, `FF CA 00 00 00` through `CardConnection.transmit`;
- ours: `ProfileReader.read` repeated on one connection: APDUs per read, median read time,
  and the overhead ratio = wall time of the reads / time spent inside `transmit` (what the
  reader's own code adds on top of PC/SC: crypto, secure messaging, decoding).
Goals: at most 8 APDUs per read, overhead ratio at most 1.2.

    .venv/bin/python bench/card_read.py [--rtt 1000] [--reads 200] [--profile-top 0]
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

from badged.cards.pcsc import CardConnection
from badged.cards.profile import ProfileReader
from badged.cards.simulator import SimulatedDesfire
from badged.cards.vpcd import VpcdCard
from badged.config.tree import load_card_profile
from badged.demo.pcscd_sandbox import PcscdSandbox
from badged.demo.runner import DEMO_KEYS

REPO = Path(__file__).resolve().parent.parent
CARD = REPO / "demo" / "cards" / "crous-card.yaml"
GET_UID = bytes.fromhex("FFCA000000")
MAX_APDUS = 8
MAX_RATIO = 1.2


def write_credentials(directory: Path) -> None:
    """The demo keys as systemd-style credentials: 0600 files."""
    for name, value in DEMO_KEYS.items():
        fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtt", type=int, default=1000, help="raw FF CA round trips")
    parser.add_argument("--reads", type=int, default=200, help="full profile reads")
    parser.add_argument(
        "--profile-top",
        type=int,
        default=0,
        metavar="N",
        help="also cProfile the reads and print the N costliest functions",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="serve the simulated card from a thread of this process "
        "(its Python work then competes with the reader's for the GIL)",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="badged-bench-") as tmp:
        credentials = Path(tmp) / "credentials"
        credentials.mkdir(mode=0o700)
        write_credentials(credentials)
        os.environ["CREDENTIALS_DIRECTORY"] = str(credentials)
        profile, base = load_card_profile(REPO / "config", "demo")
        reader = ProfileReader(profile, base)

        with PcscdSandbox(Path(tmp) / "pcscd") as sandbox:
            assert sandbox.port is not None
            if args.in_process:
                with VpcdCard(SimulatedDesfire.from_file(CARD), port=sandbox.port):
                    sandbox.wait_card(present=True)
                    with CardConnection(sandbox.readers[0]) as conn:
                        return run(conn, reader, args)
            card = multiprocessing.get_context("spawn").Process(
                target=serve_card, args=(sandbox.port,), daemon=True
            )
            card.start()
            try:
                sandbox.wait_card(present=True, timeout=20)
                with CardConnection(sandbox.readers[0]) as conn:
                    return run(conn, reader, args)
            finally:
                card.terminate()
                card.join()


def serve_card(port: int) -> None:
    """The simulated card, in a process of its own like a real card has its own chip."""
    VpcdCard(SimulatedDesfire.from_file(CARD), port=port).serve_forever()


def run(conn: CardConnection, reader: ProfileReader, args: argparse.Namespace) -> int:
    # Warm-up: first exchanges, imports, caches.
    for _ in range(20):
        conn.transmit(GET_UID)
    reader.read(conn.transmit, reader=conn.reader, atr=conn.atr)

    rtts = []
    for _ in range(args.rtt):
        start = time.perf_counter()
        conn.transmit(GET_UID)
        rtts.append(time.perf_counter() - start)

    conn.apdu_count, conn.transmit_seconds = 0, 0.0
    times, apdus = [], set()
    wall_start = time.perf_counter()
    for _ in range(args.reads):
        start = time.perf_counter()
        result = reader.read(conn.transmit, reader=conn.reader, atr=conn.atr)
        times.append(time.perf_counter() - start)
        apdus.add(result.apdus)
    wall = time.perf_counter() - wall_start
    inside = conn.transmit_seconds
    ratio = wall / inside
    per_read = conn.apdu_count / args.reads

    print(f"card {CARD.relative_to(REPO)}, profile demo, reader {conn.reader!r}")
    print(
        f"raw APDU round trip (FF CA, n={args.rtt}): median {ms(statistics.median(rtts))}, "
        f"p95 {ms(statistics.quantiles(rtts, n=20)[-1])}"
    )
    print(
        f"full read (n={args.reads}): {per_read:g} APDUs/read (reported {sorted(apdus)}), "
        f"median {ms(statistics.median(times))}, "
        f"min {ms(min(times))}, max {ms(max(times))}"
    )
    print(
        f"  of which in transmit: {ms(inside / args.reads)} per read; "
        f"own code: {ms((wall - inside) / args.reads)} per read"
    )
    print(
        f"  read median / (APDUs × RTT median): "
        f"{statistics.median(times) / (per_read * statistics.median(rtts)):.2f}"
    )
    ok_apdus = max(apdus) <= MAX_APDUS
    ok_ratio = ratio <= MAX_RATIO
    print(f"APDUs per read: {max(apdus)} (goal ≤ {MAX_APDUS}) {'ok' if ok_apdus else 'MISSED'}")
    print(
        f"overhead ratio (read wall / transmit time): {ratio:.3f} (goal ≤ {MAX_RATIO}) "
        f"{'ok' if ok_ratio else 'MISSED'}"
    )

    # For bench/run_all: machine-readable figures, one per line.
    print(f"ours: {wall / args.reads * 1000:.4f} ms")  # wall time per read
    print(f"baseline: {inside / args.reads * 1000:.4f} ms")  # inside transmit per read
    print(f"ratio: {ratio:.4f}")
    print(f"figure: apdus {max(apdus)}")

    if args.profile_top:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.reads):
            reader.read(conn.transmit, reader=conn.reader, atr=conn.atr)
        prof.disable()
        pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(args.profile_top)
    return 0 if ok_apdus and ok_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
