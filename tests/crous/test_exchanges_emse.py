"""EMSE's CROUS files over two academic years, delivered by a real SMTP server (STARTTLS,
AUTH) to the right mailboxes, exactly once, with the right bytes."""

from __future__ import annotations

import json
from datetime import datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from smtpkit import Recorder, SmtpServer, make_pki

from badged.cli import main
from badged.config.host import load_host
from badged.config.model import ExchangeKind as K
from badged.crous import exchanges
from badged.crous.deadlines import PARIS
from badged.store import people
from badged.store.db import open_store

REPO = Path(__file__).resolve().parents[2]
MONETIQUE = "monetique@crous-lyon.example.org"
RESTAURATION = "restauration@crous-lyon.example.org"
YEAR1 = datetime(2026, 9, 15, 6, 30, tzinfo=PARIS)
YEAR2 = datetime(2027, 9, 20, 6, 30, tzinfo=PARIS)


@pytest.fixture
def smtp(tmp_path: Path):
    pki = make_pki(tmp_path / "pki")
    recorder = Recorder(users={"badged": "s3cret-é"})
    server = SmtpServer(pki, recorder).start()
    yield server, pki, recorder
    server.stop()


@pytest.fixture
def host(tmp_path: Path, smtp):
    server, pki, _ = smtp
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "smtp-password").write_text("s3cret-é\n", encoding="utf-8")
    (etc / "smtp-password").chmod(0o600)
    (etc / "badged.yaml").write_text(
        f"tree: {REPO / 'config'}\nschool: emse\nstate_dir: ../state\nruntime_dir: ../run\n"
        f"smtp:\n  host: 127.0.0.1\n  port: {server.port}\n  starttls: true\n"
        f"  ca_file: {pki.ca_file}\n  username: badged\n"
        f"  password: {{file: smtp-password}}\n")
    return load_host(etc / "badged.yaml")


def person(pid: str, category: str, **kw) -> people.Person:
    names = {"s1": ("Lefèvre", "Zoé"), "s2": ("Nguyen", "Minh"), "s3": ("Durand", "Léa"),
             "t1": ("Martin", "Paul"), "t2": ("Bernard", "Anne"), "t3": ("Petit", "Luc")}
    last, first = names[pid]
    return people.Person(id=pid, last_name=last, first_name=first, category=category,
                         email=f"{pid}@emse.example.org", source=f"{category}s"
                         if category == "student" else "staff", **kw)


def received(recorder: Recorder) -> list[tuple[list[str], str, bytes]]:
    """(recipients, attachment name, attachment bytes) of each message the server got."""
    out = []
    for r in recorder.received:
        msg = BytesParser(policy=policy.default).parsebytes(r.content)
        [part] = list(msg.iter_attachments())
        out.append((sorted(r.rcpt_tos), part.get_filename(), part.get_payload(decode=True)))
    return out


def run(host, kind, now):
    conn = open_store(host.state_dir)
    return exchanges.run(conn, host, host.load_site(), kind, now)


def test_two_years_of_files(host, smtp) -> None:
    _, _, recorder = smtp
    conn = open_store(host.state_dir)
    for p in (person("s1", "student", academic_year=2026, first_enrolment_year=2026,
                     birth_date="2005-03-09", ine="0A1B2C3D4E5"),
              person("s2", "student", academic_year=2026, first_enrolment_year=2026),
              person("t1", "staff", status_code="psg", staff_index=420),
              person("t2", "staff", status_code="prs", staff_index=500),
              person("t3", "staff", status_code="stg")):
        people.upsert(conn, p)

    # Year 1: everyone is a primo-entrant or a staff member.
    for kind in K:
        result = run(host, kind, YEAR1)
        assert result.delivery.failed == 0
    got = received(recorder)
    assert [(to, name) for to, name, _ in got] == [
        ([MONETIQUE, RESTAURATION], "0429999A-primo_entrants-20260915.csv"),
        ([MONETIQUE, RESTAURATION], "0429999A-personnels-20260915.csv")]
    assert got[0][2] == (
        "identifier;lastName;firstName;email;birthDate;ine;rneOrgCode;idCompanyRate;tarif;"
        "dueDate\r\n"
        "s1;Lefèvre;Zoé;s1@emse.example.org;09/03/2005;0A1B2C3D4E5;0429999A;10;1;31/08/2027"
        "\r\n"
        "s2;Nguyen;Minh;s2@emse.example.org;;;0429999A;10;1;31/08/2027\r\n").encode()
    assert got[1][2].decode().splitlines()[1:] == [
        "t1;Martin;Paul;t1@emse.example.org;;;0429999A;78;1;31/08/2027",
        "t2;Bernard;Anne;t2@emse.example.org;;;0429999A;78;2;31/08/2027",
        "t3;Petit;Luc;t3@emse.example.org;;;0429999A;78;1;31/08/2027"]
    # Exactly once: running again the same day sends nothing.
    for kind in K:
        assert run(host, kind, YEAR1).batch_id is None
    assert len(recorder.received) == 2

    # Year 2: s1 re-enrols, s3 arrives, t1 and t2 leave.
    people.upsert(conn, person("s1", "student", academic_year=2027, first_enrolment_year=2026,
                               birth_date="2005-03-09", ine="0A1B2C3D4E5"))
    people.upsert(conn, person("s3", "student", academic_year=2027, first_enrolment_year=2027))
    # t1 went missing from the staff export (30 days of grace), t2's contract ended.
    conn.execute("UPDATE people SET leaving_since = '2027-08-01' WHERE id = 't1'")
    conn.execute("UPDATE people SET end_of_rights = '2027-06-30' WHERE id = 't2'")
    for kind in (K.REINSCRIPTIONS, K.PRIMO_ENTRANTS, K.DEPARTS):
        run(host, kind, YEAR2)
    got = received(recorder)[2:]
    assert [(to, name) for to, name, _ in got] == [
        ([MONETIQUE, RESTAURATION], "0429999A-reinscriptions-20270920.csv"),
        ([MONETIQUE, RESTAURATION], "0429999A-primo_entrants-20270920.csv"),
        ([MONETIQUE, RESTAURATION], "0429999A-departs-20270920.csv")]
    assert got[0][2].decode().splitlines()[1:] == [
        "s1;Lefèvre;Zoé;s1@emse.example.org;09/03/2005;0A1B2C3D4E5;0429999A;10;1;31/08/2028"]
    assert got[1][2].decode().splitlines()[1:] == [
        "s3;Durand;Léa;s3@emse.example.org;;;0429999A;10;1;31/08/2028"]
    # A départ is dated the last day of the rights, never the day it is sent (20/09).
    assert got[2][2] == (
        b"identifier;lastName;firstName;email;birthDate;ine;rneOrgCode;idCompanyRate;tarif;"
        b"dueDate\r\n"
        b"t1;Martin;Paul;t1@emse.example.org;;;0429999A;78;99;30/08/2027\r\n"
        b"t2;Bernard;Anne;t2@emse.example.org;;;0429999A;78;99;30/06/2027\r\n")
    # Every message went over STARTTLS, authenticated, with its own stable Message-ID.
    assert all(r.tls and r.login == "badged" for r in recorder.received)
    ids = [BytesParser(policy=policy.default).parsebytes(r.content)["Message-ID"]
           for r in recorder.received]
    assert len(set(ids)) == 5 and all(i.startswith("<badged.emse.") for i in ids)


def test_plan_run_and_list_through_the_cli(host, smtp) -> None:
    conn = open_store(host.state_dir)
    year = datetime.now(PARIS).year if datetime.now(PARIS).month >= 9 else (
        datetime.now(PARIS).year - 1)
    people.upsert(conn, person("s1", "student", academic_year=year, first_enrolment_year=year))
    people.upsert(conn, person("t1", "staff", status_code="psg", staff_index=100))
    args = ["--host-config", str(host.file)]
    plan = CliRunner().invoke(main, [*args, "exchange", "plan", "--json"])
    assert plan.exit_code == 0, plan.output
    by_kind = {p["kind"]: p for p in json.loads(plan.stdout)}
    assert by_kind["primo_entrants"]["lines"] == [
        {"person": "s1", "reason": f"first enrolment in {year}-{year + 1}"}]
    assert by_kind["personnels"]["lines"] == [
        {"person": "t1", "reason": "staff psg index 100: 78 / 1"}]
    # The day as configured (10-30), and the instant it passes (24:00 Paris).
    assert by_kind["reinscriptions"]["deadline"] == f"{year}-10-30"
    assert by_kind["reinscriptions"]["deadline_passes_at"].startswith(f"{year}-10-31T00:00:00")
    assert by_kind["departs"]["recipients"] == [
        {"mailbox": "monetique", "address": MONETIQUE},
        {"mailbox": "restauration", "address": RESTAURATION}]
    text = CliRunner().invoke(main, [*args, "exchange", "plan", "personnels"]).stdout
    assert "t1: staff psg index 100: 78 / 1" in text
    ran = CliRunner().invoke(main, [*args, "exchange", "run", "personnels"])
    assert ran.exit_code == 0, ran.output
    assert "batch 1 with 1 line(s) written" in ran.stdout
    assert "1 sent, 0 failed, 0 pending" in ran.stdout
    again = CliRunner().invoke(main, [*args, "exchange", "run", "personnels"])
    assert "personnels: nothing to send" in again.stdout
    listed = json.loads(CliRunner().invoke(main, [*args, "exchange", "list", "--json"]).stdout)
    [batch] = listed
    assert batch["state"] == "sent" and batch["recipients"] == [MONETIQUE, RESTAURATION]
    assert len(batch["files"][0]["sha256"]) == 64
    assert (Path(batch["archive_path"]).stat().st_mode & 0o777) == 0o600
