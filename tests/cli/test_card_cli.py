"""`badged reader list`, `badged card read` and `badged card simulate` on the private pcscd."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from badged.cards.profile import ProfileReader
from badged.cards.reading import read_one
from badged.cards.simulator import SimulatedDesfire
from badged.cli import main
from badged.config.tree import load_card_profile

REPO = Path(__file__).resolve().parents[2]
CARDS = REPO / "demo" / "cards"
BAD_CARDS = REPO / "tests" / "fixtures" / "cards"
BADGED = Path(sys.executable).with_name("badged")


def badged(host_file: Path, credentials: Path, *args: str) -> Result:
    return CliRunner().invoke(
        main,
        ["--host-config", str(host_file), *args],
        env={"CREDENTIALS_DIRECTORY": str(credentials)},
    )


def test_reader_list_json_roles_and_cards(
    pcsc, insert_card, host_file: Path, credentials: Path
) -> None:
    insert_card(SimulatedDesfire.from_file(CARDS / "crous-card.yaml"), reader=0)
    result = badged(host_file, credentials, "reader", "list", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {"name": pcsc.readers[0], "role": "enrolment", "card": True, "atr": "3B8180018080"},
        {"name": pcsc.readers[1], "role": "lookup", "card": False, "atr": None},
    ]
    text = badged(host_file, credentials, "reader", "list")
    assert text.exit_code == 0
    assert text.stdout.splitlines() == [
        f"{pcsc.readers[0]}\tenrolment\tcard 3B8180018080",
        f"{pcsc.readers[1]}\tlookup\tno card",
    ]


def test_card_read_without_a_card_times_out(pcsc, host_file: Path, credentials: Path) -> None:
    start = time.monotonic()
    result = badged(host_file, credentials, "card", "read", "--timeout", "0.5")
    assert time.monotonic() - start < 3
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: no card ")
    assert result.stderr.strip() == (
        f"error: no card on {pcsc.readers[0]!r}, {pcsc.readers[1]!r} after 0.5 s")

    on_reader = badged(host_file, credentials, "card", "read", "--timeout", "0.5",
                       "--reader", pcsc.readers[1])  # fmt: skip
    assert on_reader.exit_code == 1
    assert on_reader.stderr.strip() == (
        f"error: no card on {pcsc.readers[1]!r} after 0.5 s"
    )

    start = time.monotonic()
    missing = badged(host_file, credentials, "card", "read", "--timeout", "30",
                     "--reader", "ACS ACR1252*")
    assert time.monotonic() - start < 3  # at once, not after the timeout
    assert missing.exit_code == 1
    assert missing.stderr.strip() == (
        "error: no reader matches reader pattern 'ACS ACR1252*' "
        f"(readers: {pcsc.readers[0]!r}, {pcsc.readers[1]!r})")


@pytest.mark.parametrize("name", ["bad-many-problems.yaml", "bad-yaml-syntax.yaml"])
def test_card_simulate_bad_card_file(name: str) -> None:
    path = BAD_CARDS / name
    result = CliRunner().invoke(main, ["card", "simulate", "--card", str(path)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert lines
    for line in lines:
        assert re.fullmatch(rf"{re.escape(str(path))}:\d+:\d+: \S+: .+", line), line
    if name == "bad-many-problems.yaml":
        assert len(lines) == 5  # every problem, all at once, in file order
        positions = [tuple(map(int, line.split(":")[1:3])) for line in lines]
        assert positions == sorted(positions)


def test_card_simulate_missing_card_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["card", "simulate", "--card", str(tmp_path / "no.yaml")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert str(tmp_path / "no.yaml") in result.stderr


def test_card_simulate_serves_a_card_through_vpcd(pcsc, host_file: Path, credentials: Path) -> None:
    assert pcsc.port is not None
    proc = subprocess.Popen(
        [str(BADGED), "card", "simulate", "--card", str(CARDS / "crous-card.yaml"),
         "--vpcd-port", str(pcsc.port + 1)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        pcsc.wait_card(present=True, reader=1, timeout=20)
        reader = pcsc.readers[1]
        result = read_one(
            ProfileReader(*load_card_profile(REPO / "config", "demo")), reader, timeout=5
        )
        assert result.csn == "04112233445566"
        assert result.crous_number == "249760531028417"
        assert result.apdus == 7

        # The CLI with the host's school profile (no --profile), as text.
        text = badged(host_file, credentials, "card", "read", "--reader", reader, "--timeout", "5")
        assert text.exit_code == 0, text.output
        assert f"reader        {reader}" in text.stdout
        assert "CSN           04112233445566 (reversed 66554433221104)" in text.stdout
        assert "CROUS number  249760531028417" in text.stdout
        assert "read in       7 APDUs" in text.stdout
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the card leaves the reader, exit 0
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    assert proc.returncode == 0, err
    assert f"card crous-card.yaml on vpcd 127.0.0.1:{pcsc.port + 1}" in err.decode()
    pcsc.wait_card(present=False, reader=1)


def test_card_simulate_finds_the_demo_pcscd_port(pcsc, host_file: Path,
                                                 credentials: Path) -> None:
    """No --vpcd-port: the port the host's (demo) pcscd wrote in its state folder; the
    second demo card on the slot asked for, read with the demo profile."""
    from badged.demo.pcscd_sandbox import PORT_FILE

    assert (pcsc.dir / PORT_FILE).read_text() == f"{pcsc.port}\n"
    state = load_host_state(host_file)
    (state / "pcscd").mkdir(parents=True, exist_ok=True)
    (state / "pcscd" / PORT_FILE).write_text(f"{pcsc.port}\n")
    proc = subprocess.Popen(
        [str(BADGED), "--host-config", str(host_file), "card", "simulate", "--card",
         str(CARDS / "student-card.yaml"), "--slot", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        pcsc.wait_card(present=True, reader=1, timeout=20)
        read = badged(host_file, credentials, "card", "read", "--reader", pcsc.readers[1],
                      "--timeout", "5", "--json")
        assert read.exit_code == 0, read.output
        data = json.loads(read.stdout)
        assert (data["csn"], data["crous_number"]) == ("04A1B2C3D4E5F6", "249760531044556")
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert f"card student-card.yaml on vpcd 127.0.0.1:{pcsc.port + 1}" in err.decode()
    pcsc.wait_card(present=False, reader=1)


def test_card_simulate_without_vpcd_fails_at_once_with_the_port(tmp_path: Path,
                                                                 host_file: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    result = CliRunner().invoke(main, ["--host-config", str(host_file), "card", "simulate",
                                       "--card", str(CARDS / "student-card.yaml"),
                                       "--vpcd-port", str(port)])
    assert time.monotonic() - start < 5
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: no vpcd listening on 127.0.0.1:{port} "
                                    "(--vpcd-port, slot 0): start the demo")


def load_host_state(host_file: Path) -> Path:
    from badged.config.host import load_host

    return load_host(host_file).state_dir
