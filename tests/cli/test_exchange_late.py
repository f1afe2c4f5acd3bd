"""Deadlines that pass are said, and `exchange run` tells an undelivered batch by its exit
code (3, partial) and when it is tried next."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from badged.cli import main
from badged.crous.deadlines import PARIS
from badged.store import people
from badged.store.db import open_store

REPO = Path(__file__).resolve().parents[2]


def make_host(tmp_path: Path, *, deadline: str | None = None, year_start: str | None = None,
              smtp_port: int | None = None) -> Path:
    tree = tmp_path / "config"
    shutil.copytree(REPO / "config", tree)
    if deadline is not None:
        crous = tree / "crous" / "demo.yaml"
        crous.write_text(crous.read_text().replace('reinscriptions: "10-30"',
                                                   f'reinscriptions: "{deadline}"'))
    if year_start is not None:
        with (tree / "schools" / "demo.yaml").open("a") as f:
            f.write(f'academic_year_start: "{year_start}"\n')
    host = tmp_path / "badged.yaml"
    text = (f"tree: {tree}\nschool: demo\nstate_dir: {tmp_path / 'state'}\n"
            f"runtime_dir: {tmp_path / 'run'}\n")
    if smtp_port is not None:
        text += f"smtp: {{host: 127.0.0.1, port: {smtp_port}, starttls: false}}\n"
    host.write_text(text)
    return host


def cli(host: Path, *args: str):
    return CliRunner().invoke(main, ["--host-config", str(host), *args])


def test_deadline_shows_as_configured(tmp_path: Path) -> None:
    host = make_host(tmp_path)  # the demo CROUS: réinscriptions "10-30"
    text = cli(host, "exchange", "plan", "reinscriptions")
    assert text.exit_code == 0, text.output
    assert re.search(r"deadline 30/10/\d{4}", text.stdout), text.stdout
    assert "31/10" not in text.stdout and "-10-31" not in text.stdout
    [plan] = json.loads(cli(host, "exchange", "plan", "reinscriptions", "--json").stdout)
    assert re.fullmatch(r"\d{4}-10-30", plan["deadline"])
    assert plan["deadline_passes_at"].startswith(f"{plan['deadline'][:4]}-10-31T00:00:00")


def test_missed_deadline_is_said_until_the_file_is_sent(tmp_path: Path) -> None:
    today = datetime.now(PARIS).date()
    passed = today - timedelta(days=2)
    host = make_host(tmp_path, deadline=f"{passed:%m-%d}",
                     year_start=f"{today - timedelta(days=10):%m-%d}")
    year = (today - timedelta(days=10)).year
    shown = f"{passed:%d/%m/%Y}"

    plan = cli(host, "exchange", "plan", "reinscriptions")
    assert plan.exit_code == 0, plan.output
    assert f"late since {shown} 24:00" in plan.stdout
    [as_json] = json.loads(cli(host, "exchange", "plan", "reinscriptions", "--json").stdout)
    assert as_json["late"] is True and as_json["deadline"] == passed.isoformat()

    # Nothing to send (registry not imported): still late, and `run` says so.
    ran = cli(host, "exchange", "run", "reinscriptions")
    assert ran.exit_code == 0, ran.output
    assert "nothing to send" in ran.stdout
    assert f"late since {shown} 24:00" in ran.stderr

    conn = open_store(tmp_path / "state")
    people.upsert(conn, people.Person(
        id="s1", last_name="Martin", first_name="Alex", category="student",
        email="s1@example.org", source="students", academic_year=year,
        first_enrolment_year=year - 1))
    ran = cli(host, "exchange", "run", "reinscriptions")
    assert ran.exit_code == 0, ran.output
    assert "1 sent" in ran.stdout and "late since" not in ran.output
    plan = cli(host, "exchange", "plan", "reinscriptions")
    assert "late since" not in plan.stdout and "LATE" not in plan.stdout


@pytest.fixture
def closed_port():
    import socket
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    yield sock.getsockname()[1]
    sock.close()


def test_undelivered_batch_exits_3_and_says_when_next(tmp_path: Path, closed_port) -> None:
    host = make_host(tmp_path, smtp_port=closed_port)
    conn = open_store(tmp_path / "state")
    people.upsert(conn, people.Person(
        id="t1", last_name="Martin", first_name="Paul", category="staff",
        email="t1@example.org", source="staff", status_code="psg", staff_index=100))

    first = cli(host, "exchange", "run", "personnels")
    assert first.exit_code == 3, first.output
    assert "0 sent, 1 failed, 1 pending" in first.stdout
    assert re.search(r"batch 1 \(personnels\) not delivered yet, 1 attempt\(s\): next "
                     r"attempt at \d{4}-\d\d-\d\dT", first.stderr), first.stderr

    # In its backoff: not tried, still undelivered: not a success either.
    second = cli(host, "exchange", "run", "personnels", "--json")
    assert second.exit_code == 3, second.output
    result = json.loads(second.stdout)
    assert (result["sent"], result["failed"], result["pending"]) == (0, 0, 1)
    [waiting] = result["waiting"]
    assert waiting["batch_id"] == 1 and waiting["next_attempt_at"] > datetime.now(
        UTC).isoformat(timespec="seconds")
