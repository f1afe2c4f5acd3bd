"""Operators' outbox commands against a real relay (aiosmtpd, STARTTLS, AUTH):
`exchange retry` delivers at once despite the backoff, `exchange resend` sends a sent batch
again with the same Message-ID and records it, `exchange plan --summary` counts reasons."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from smtpkit import Recorder, SmtpServer, make_pki

from badged.cli import main
from badged.config.host import load_host
from badged.config.model import ExchangeKind as K
from badged.crous import exchanges
from badged.store import people
from badged.store.db import open_store

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-relay"


@pytest.fixture
def relay(tmp_path: Path):
    pki = make_pki(tmp_path / "pki")
    recorder = Recorder(users={"badged": PASSWORD})
    server = SmtpServer(pki, recorder).start()
    yield server, pki, recorder
    server.stop()


@pytest.fixture
def host_file(tmp_path: Path, relay) -> Path:
    server, pki, _ = relay
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "smtp-password").write_text("wrong\n")
    (etc / "smtp-password").chmod(0o600)
    (etc / "badged.yaml").write_text(
        f"tree: {REPO / 'config'}\nschool: emse\nstate_dir: ../state\nruntime_dir: ../run\n"
        f"smtp: {{host: 127.0.0.1, port: {server.port}, ca_file: {pki.ca_file}, "
        f"username: badged, password: {{file: smtp-password}}}}\n")
    return etc / "badged.yaml"


def staff(conn: sqlite3.Connection) -> None:
    for pid, status, index in (("t1", "psg", 420), ("t2", "psg", 430), ("t3", "prs", 500)):
        people.upsert(conn, people.Person(
            id=pid, last_name="Martin", first_name="Paul", category="staff",
            email=f"{pid}@emse.example.org", source="staff", status_code=status,
            staff_index=index))


def cli(host_file: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--host-config", str(host_file), *args])


def test_plan_summary_counts_per_kind_and_reason(host_file: Path) -> None:
    host = load_host(host_file)
    staff(open_store(host.state_dir))
    result = cli(host_file, "exchange", "plan", "personnels", "--summary")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "personnels: 3 to send, 0 unchanged"
    assert lines[1:] == ["       2  staff psg: 78 / 1", "       1  staff prs: 78 / 2"]
    data = json.loads(cli(host_file, "exchange", "plan", "--summary", "--json").stdout)
    assert {row["kind"]: row["reasons"] for row in data}["personnels"] == {
        "staff psg: 78 / 1": 2, "staff prs: 78 / 2": 1}


def test_retry_ignores_the_backoff_and_resend_keeps_the_message_id(host_file: Path,
                                                                    relay) -> None:
    _, _, recorder = relay
    host = load_host(host_file)
    conn = open_store(host.state_dir)
    staff(conn)
    first = exchanges.run(conn, host, host.load_site(), K.PERSONNELS, datetime.now(UTC))
    assert first.delivery.failed == 1 and recorder.received == []
    [batch] = conn.execute("SELECT id, next_attempt_at FROM batches").fetchall()
    assert datetime.fromisoformat(batch[1]) > datetime.now(UTC)  # backing off (3 h)

    still = cli(host_file, "exchange", "retry")
    assert still.exit_code == 1
    assert "login as 'badged' refused" in still.stderr

    (host_file.parent / "smtp-password").write_text(PASSWORD + "\n")
    done = cli(host_file, "exchange", "retry", str(batch[0]))
    assert done.exit_code == 0, done.output
    assert "retried 1 batch(es): 1 sent, 0 failed, 0 pending" in done.stdout
    assert len(recorder.received) == 1

    again = cli(host_file, "exchange", "retry", str(batch[0]))
    assert again.exit_code == 1
    assert f"batch {batch[0]} is sent, not pending" in again.stderr

    resent = cli(host_file, "exchange", "resend", str(batch[0]))
    assert resent.exit_code == 0, resent.output
    ids = [BytesParser(policy=policy.default).parsebytes(r.content)["Message-ID"]
           for r in recorder.received]
    assert len(ids) == 2 and ids[0] == ids[1]
    assert ids[0] in resent.stdout
    listing = cli(host_file, "exchange", "list")
    assert "  resent " in listing.stdout and ": sent" in listing.stdout
    [shown] = json.loads(cli(host_file, "exchange", "list", "--json").stdout)
    assert [r["outcome"] for r in shown["resends"]] == ["sent"]

    missing = cli(host_file, "exchange", "resend", "99")
    assert missing.exit_code == 1
    assert missing.stderr.splitlines()[-1] == (
        "error: no batch 99 (badged exchange list shows them)")
