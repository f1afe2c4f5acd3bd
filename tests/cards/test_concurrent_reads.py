"""Two programs reading the same card at once (the daemon on its reader, an operator's
`badged card read`): each read runs in a PC/SC transaction, so neither ever gets a wrong
or half-read card. Real private pcscd + vpcd + simulator (500 reads each: about 15 s)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

from badged.cards.pcsc import CardConnection, ReaderBusy, held_card
from badged.cards.simulator import SimulatedDesfire

REPO = Path(__file__).resolve().parents[2]
CARD = REPO / "demo" / "cards" / "crous-card.yaml"
READER_SCRIPT = Path(__file__).with_name("concurrent_reader.py")
READS = 500  # per process; without transactions about 40 % of them fail


def expected() -> dict[str, str]:
    doc = yaml.safe_load(CARD.read_text())
    apps = {a["aid"]: a for a in doc["applications"]}
    escn = bytes.fromhex(apps["F58840"]["files"][0]["hex"])
    return {"csn": doc["uid"], "crous_number": apps["F58540"]["files"][0]["text"],
            "escn": str(uuid.UUID(bytes=escn[:16]))}


def test_two_programs_reading_one_card_never_get_a_wrong_or_half_read(
        pcsc, insert_card, credentials) -> None:
    insert_card(SimulatedDesfire.from_file(CARD))
    env = {**pcsc.env(), "CREDENTIALS_DIRECTORY": str(credentials),
           "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    argv = [sys.executable, str(READER_SCRIPT), pcsc.readers[0], str(READS),
            json.dumps(expected())]
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=100)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    for r in results:
        assert r == {"ok": READS, "wrong": 0, "busy": 0, "errors": {}}, results


def test_a_held_card_makes_the_other_wait_then_reader_busy(pcsc, insert_card) -> None:
    insert_card(SimulatedDesfire.from_file(CARD))
    reader = pcsc.readers[0]
    with held_card(reader) as holder:
        # pcsc-lite makes both a new connection and a transaction wait for the holder.
        started = time.monotonic()
        with pytest.raises(ReaderBusy, match="reader busy: another program is using the "
                           r"card \(waited 0.3 s\)"), held_card(reader, wait=0.3):
            pass
        assert 0.3 <= time.monotonic() - started < 2
        assert holder.transmit(bytes.fromhex("FFCA000000"))[-2:] == b"\x90\x00"
    # The holder let go: the abandoned attempt released what it got, the card answers.
    with held_card(reader, wait=2) as conn:
        assert conn.transmit(bytes.fromhex("FFCA000000"))[-2:] == b"\x90\x00"


def test_transaction_on_an_open_connection_is_bounded_too(pcsc, insert_card) -> None:
    insert_card(SimulatedDesfire.from_file(CARD))
    reader = pcsc.readers[0]
    with CardConnection(reader) as first, CardConnection(reader) as second:
        with first.transaction():
            with pytest.raises(ReaderBusy), second.transaction(wait=0.2):
                pass
            assert not second.connected  # handed over; closing it is a no-op
            second.disconnect()
            assert first.transmit(bytes.fromhex("FFCA000000"))[-2:] == b"\x90\x00"
        with CardConnection(reader) as third, third.transaction(wait=2):
            assert third.transmit(bytes.fromhex("FFCA000000"))[-2:] == b"\x90\x00"


def test_a_waiting_read_goes_on_once_the_holder_is_done(pcsc, insert_card) -> None:
    insert_card(SimulatedDesfire.from_file(CARD))
    reader = pcsc.readers[0]
    holder = CardConnection(reader)
    with holder.transaction():
        threading.Timer(0.3, holder.disconnect).start()
        started = time.monotonic()
        with held_card(reader, wait=5) as conn:
            assert time.monotonic() - started >= 0.2
            assert conn.transmit(bytes.fromhex("FFCA000000"))[-2:] == b"\x90\x00"
