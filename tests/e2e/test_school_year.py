"""A school's year, end to end, in the real daemon: a private pcscd with simulated cards, a
real SMTP server, the local API CROUS, the door system's folder and promtool on /metrics,
with time moved by the daemon's test clock (never by sleeping). See docs/testing.md.

Two schools, one daemon each (the demo school rewired): one mails its files to both CROUS
mailboxes (EMSE's practice), one runs its year through the API CROUS (IMT Nantes's).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from yearkit import (
    API_CLIENT,
    API_SECRET,
    BADGED,
    MONETIQUE,
    RESTAURATION,
    SMTP_PASSWORD,
    SMTP_USER,
    Clock,
    DaemonProcess,
    Notifications,
    Recorder,
    Site,
    SmtpServer,
    card_file,
    check_alerts,
    crous_cards_csv,
    door_cards,
    ine,
    make_pki,
    make_site,
    paris,
    reload,
    rewire,
    staff_csv,
    students_csv,
    wait_until,
)

from badged.cards.simulator import SimulatedDesfire
from badged.cards.vpcd import VpcdCard
from badged.cli import main
from badged.crous.deadlines import academic_year_start, deadline
from badged.demo.pcscd_sandbox import PcscdSandbox
from badged.store.db import open_store
from badged.testing.crous_peer import CrousPeer

pytestmark = pytest.mark.timeout(180)
API = "/beforeizly/v1/rightholders"

# The people of the year: CSN and CROUS card number of the card each gets at the desk.
CARDS = {"s1": ("04A1000000000A", 249760531000001), "s2": ("04A2000000000B", 249760531000002),
         "t1": ("04B1000000000C", 249760531000003), "t2": ("04B2000000000D", 249760531000004)}
STUDENTS_2026 = [("s1", "Lefèvre", "Zoé", 2026, 2025), ("s2", "Nguyen", "Minh", 2026, 2026)]
STUDENTS_2027 = [("s1", "Lefèvre", "Zoé", 2027, 2025), ("s2", "Nguyen", "Minh", 2027, 2026)]
STAFF = [("T1", "Martin", "Paul", "psg", 420, ""), ("T2", "Bernard", "Anne", "prs", 500, "")]
STAFF_LEFT = [("T1", "Martin", "Paul", "psg", 420, "09/10/2026"),
              ("T2", "Bernard", "Anne", "prs", 500, "14/10/2026")]
PEOPLE = {"s1": "s1", "s2": "s2", "t1": "T1", "t2": "T2"}


class Year:
    """One school's daemon and the world around it, driven through the CLI."""

    def __init__(self, tmp: Path, site: Site, clock: Clock, pcsc: PcscdSandbox,
                 monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp, self.site, self.clock, self.pcsc = tmp, site, clock, pcsc
        for name, value in clock.env().items():  # this process's "now" (the CLI) too
            monkeypatch.setenv(name, value)
        self.notifications = Notifications()
        self.daemon = DaemonProcess(site, {**pcsc.env(), **clock.env()}, self.notifications)

    def start(self) -> Year:
        self.daemon.start().wait_ready()
        return self

    def close(self) -> None:
        self.daemon.kill()
        self.notifications.close()

    def cli(self, *args: str) -> str:
        result = CliRunner().invoke(main, ["--host-config", str(self.site.host_file), *args])
        assert result.exit_code == 0, f"{args}: {result.output}\n{self.daemon.log()}"
        return result.stdout

    def at(self, when: datetime) -> None:
        """Move the school's clock (the daemon reloads: its gauges follow)."""
        self.clock.set(when)
        reload(self.daemon)

    def september(self, students: list, staff: list) -> None:
        """The registry's exports and the CROUS card CSV imported, cards tapped at the desk."""
        self.import_registry(students, staff)
        self.cli("crous", "import-cards", str(crous_cards_csv(
            self.tmp / "crous-cards.csv", dict(CARDS.values()))))
        self.cli("stock", "receive", "10")
        for key, (csn, number) in CARDS.items():
            self.tap_at_the_desk(PEOPLE[key], csn, number)
        conn = open_store(self.site.state_dir)
        with closing(conn):
            linked = dict(conn.execute("SELECT csn, person_id FROM cards WHERE state = 'active'"))
        assert linked == {csn: PEOPLE[key] for key, (csn, _) in CARDS.items()}
        assert self.daemon.metric("badged_enrolments_total") == 4
        assert self.daemon.metric("badged_card_stock") == 6

    def import_registry(self, students: list, staff: list) -> None:
        self.cli("population", "import", "--source", "students",
                 str(students_csv(self.tmp / "students.csv", students)))
        self.cli("population", "import", "--source", "staff",
                 str(staff_csv(self.tmp / "staff.csv", staff)))

    def tap_at_the_desk(self, person: str, csn: str, number: int) -> None:
        enrol = subprocess.Popen(
            [str(BADGED), "--host-config", str(self.site.host_file), "enrol", "--person",
             person, "--timeout", "30", "--json"],
            env=self.daemon.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_until(lambda: self.daemon.status()["enrolments_waiting"] == 1,
                   what=f"enrol request for {person}")
        card = VpcdCard(SimulatedDesfire.from_file(card_file(self.tmp, csn, number)),
                        port=self.pcsc.port)
        card.insert()
        try:
            out, err = enrol.communicate(timeout=30)
        finally:
            card.remove()
            self.pcsc.wait_card(present=False, reader=0)
        assert enrol.returncode == 0, err
        done = json.loads(out)
        assert (done["csn"], done["person_id"], done["crous_number"]) == (csn, person, number)

    def alerts(self, firing: dict[str, set[str]]) -> None:
        check_alerts(self.daemon.scrape(), self.clock.now(), firing, self.tmp)

    def door(self) -> dict[str, bool]:
        return door_cards(self.site)


@pytest.fixture
def year(tmp_path: Path, pcsc: PcscdSandbox, monkeypatch: pytest.MonkeyPatch
         ) -> Iterator[tuple[Path, Site, Clock, PcscdSandbox, pytest.MonkeyPatch]]:
    site = make_site(tmp_path)
    clock = Clock(tmp_path / "clock")
    clock.set(paris(2026, 9, 7))
    yield tmp_path, site, clock, pcsc, monkeypatch
    site.cleanup()


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[tuple[SmtpServer, Path, Recorder]]:
    pki = make_pki(tmp_path / "pki")
    recorder = Recorder(users={SMTP_USER: SMTP_PASSWORD})
    server = SmtpServer(pki, recorder).start()
    yield server, pki.ca_file, recorder
    server.stop()


def mails(recorder: Recorder) -> list[tuple[list[str], str, str]]:
    """(recipients, attachment name, attachment text) of each message received."""
    out = []
    for r in recorder.received:
        msg = BytesParser(policy=policy.default).parsebytes(r.content)
        [part] = list(msg.iter_attachments())
        out.append((sorted(r.rcpt_tos), part.get_filename(),
                    part.get_payload(decode=True).decode()))
    return out


HEADER = ("identifier;lastName;firstName;email;birthDate;ine;rneOrgCode;idCompanyRate;tarif;"
          "dueDate\r\n")
BOTH = [MONETIQUE, RESTAURATION]


def test_a_year_by_mail(year, smtp) -> None:
    """EMSE's practice: every file mailed to both CROUS mailboxes."""
    tmp, site, clock, pcsc, monkeypatch = year
    server, ca_file, recorder = smtp
    rewire(site, transport="mail", smtp_port=server.port, ca_file=ca_file)
    y = Year(tmp, site, clock, pcsc, monkeypatch).start()
    try:
        # September: registry, CROUS cards, taps; the primo-entrants and staff files go.
        y.september(STUDENTS_2026, STAFF)
        y.cli("exchange", "run", "primo_entrants")
        y.cli("exchange", "run", "personnels")
        assert mails(recorder) == [
            (BOTH, "0009999Z-primo_entrants-20260907.csv", HEADER +
             "s2;Nguyen;Minh;s2@example.org;14/03/2006;0000000002S;0009999Z;10;1;31/08/2027\r\n"),
            (BOTH, "0009999Z-personnels-20260907.csv", HEADER +
             "T1;Martin;Paul;t1@example.org;21/09/1978;;0009999Z;78;1;31/08/2027\r\n"
             "T2;Bernard;Anne;t2@example.org;21/09/1978;;0009999Z;78;2;31/08/2027\r\n")]
        assert all(r.tls and r.login == SMTP_USER for r in recorder.received)
        wait_until(lambda: y.door() == dict.fromkeys(PEOPLE.values(), True), 60,
                   "the four cards at the doors")
        reload(y.daemon)
        deadline_2026 = deadline(clock.now(), "10-30").timestamp()
        assert y.daemon.metric("badged_exchange_deadline_timestamp_seconds",
                               kind="reinscriptions") == deadline_2026
        assert y.daemon.metric("badged_exchange_last_sent_timestamp_seconds",
                               kind="reinscriptions") == 0
        assert y.daemon.metric("badged_cards", state="active") == 4
        y.alerts({})  # 30 October is far

        # October: the two staff members' contracts ended; their départs go, tarif 99,
        # dated the last day of their rights.
        y.at(paris(2026, 10, 15))
        y.import_registry(STUDENTS_2026, STAFF_LEFT)
        y.cli("exchange", "run", "departs")
        assert mails(recorder)[2:] == [
            (BOTH, "0009999Z-departs-20261015.csv", HEADER +
             "T1;Martin;Paul;t1@example.org;21/09/1978;;0009999Z;78;99;09/10/2026\r\n"
             "T2;Bernard;Anne;t2@example.org;21/09/1978;;0009999Z;78;99;14/10/2026\r\n")]
        # The réinscriptions are still unsent: the deadline alert fires…
        y.at(paris(2026, 10, 20))
        y.alerts({"BadgedCrousDeadlineNear": {"reinscriptions"}})
        # …30 October passes, and it keeps firing until the file is sent.
        y.at(paris(2026, 11, 2))
        y.alerts({"BadgedCrousDeadlineMissed": {"reinscriptions"}})
        y.cli("exchange", "run", "reinscriptions")
        assert mails(recorder)[3:] == [
            (BOTH, "0009999Z-reinscriptions-20261102.csv", HEADER +
             "s1;Lefèvre;Zoé;s1@example.org;14/03/2006;0000000001S;0009999Z;10;1;31/08/2027\r\n")]
        reload(y.daemon)
        y.alerts({})

        # The next September: both students re-enrol; the file goes before the deadline.
        y.at(paris(2027, 9, 6))
        assert y.daemon.metric("badged_academic_year_start_timestamp_seconds") == \
            academic_year_start(clock.now()).timestamp()
        y.import_registry(STUDENTS_2027, STAFF_LEFT)
        y.cli("exchange", "run", "reinscriptions")
        assert mails(recorder)[4:] == [
            (BOTH, "0009999Z-reinscriptions-20270906.csv", HEADER +
             "s1;Lefèvre;Zoé;s1@example.org;14/03/2006;0000000001S;0009999Z;10;1;31/08/2028\r\n"
             "s2;Nguyen;Minh;s2@example.org;14/03/2006;0000000002S;0009999Z;10;1;31/08/2028\r\n")]
        y.at(paris(2027, 10, 20))
        y.alerts({})  # sent this academic year: quiet before and after the deadline
        assert y.daemon.metric("badged_exchange_batches_sent_total",
                               kind="reinscriptions") == 2
        assert len(recorder.received) == 5  # each file once, nothing sent twice
        assert y.daemon.status()["health"] == "healthy", y.daemon.status()["problems"]

        # One year after leaving (the school's retention_days, 400, after their rights
        # ended), the leavers' records are purged: nothing personal of theirs is left.
        y.at(paris(2027, 11, 16))  # T1 left on 10 October 2026: 400 days are over; not T2
        dry = json.loads(y.cli("person", "purge", "--dry-run", "--json"))
        assert [x["person_id"] for x in dry["leavers"]] == ["T1"]
        assert {t for t, _ in personal_values(site.state_dir, LEAVERS_PERSONAL)} >= {"people"}
        y.at(paris(2027, 11, 20))
        done = json.loads(y.cli("person", "purge", "--json"))
        assert sorted(x["person_id"] for x in done["leavers"]) == ["T1", "T2"]
        assert done["cards"] == 2
        assert personal_values(site.state_dir, LEAVERS_PERSONAL) == []
        assert personal_values(site.state_dir, ["Lefèvre", "Nguyen"]) != []  # students stay
        reload(y.daemon)
        assert y.daemon.metric("badged_people_purged_total") == 2
    finally:
        y.close()


LEAVERS_PERSONAL = ["Martin", "Paul", "Bernard", "Anne", "t1@example.org", "t2@example.org",
                    "1978-09-21", "21/09/1978"]


def personal_values(state_dir: Path, needles: list[str]) -> list[tuple[str, str]]:
    """(table, value) of every text value in the store that contains one of `needles`."""
    conn = open_store(state_dir)
    found = []
    with closing(conn):
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    text = value.decode(errors="replace") if isinstance(value, bytes) else value
                    if isinstance(text, str) and any(n in text for n in needles):
                        found.append((table, text[:80]))
    return found


def test_a_year_through_the_api(year, smtp) -> None:
    """IMT Nantes's practice: holders and cards pushed to the API CROUS."""
    tmp, site, clock, pcsc, monkeypatch = year
    server, ca_file, recorder = smtp
    with CrousPeer(clients={API_CLIENT: API_SECRET}, clock=clock.now) as peer:
        rewire(site, transport="api", smtp_port=server.port, ca_file=ca_file,
               api_base=peer.base_url)
        y = Year(tmp, site, clock, pcsc, monkeypatch).start()
        try:
            # September: everyone and their card pushed.
            y.september(STUDENTS_2026, STAFF)
            y.cli("crous", "sync")
            assert sorted(peer.api_requests()) == sorted(
                [("GET", f"{API}/{pid}", 404) for pid in ("T1", "T2", "s1", "s2")]
                + [("GET", f"{API}/{ine(pid)}", 404) for pid in ("s1", "s2")]
                + [("POST", API, 201)] * 4
                + [("POST", f"{API}/{pid}/smartcard", 201) for pid in ("T1", "T2", "s1", "s2")])
            holders = {h["email"].split("@")[0].upper(): h for h in peer.holders.values()}
            assert sorted(holders) == ["S1", "S2", "T1", "T2"]
            assert {k: (h["idCompanyRate"], h["idRate"]) for k, h in holders.items()} == {
                "S1": (10, 1), "S2": (10, 1), "T1": (78, 1), "T2": (78, 2)}
            assert holders["S1"]["dueDate"].startswith("2027-08-31T")
            assert sorted(c["uid"] for c in peer.cards.values()) == sorted(
                csn for csn, _ in CARDS.values())
            assert all(c["cancelDate"] is None for c in peer.cards.values())
            wait_until(lambda: y.door() == dict.fromkeys(PEOPLE.values(), True), 60,
                       "the four cards at the doors")

            # October: s2's card is lost: blocked at the doors within a minute (on_change),
            # cancelled at the CROUS with reason DP.
            y.at(paris(2026, 10, 12))
            lost_csn, lost_number = CARDS["s2"]
            y.cli("card", "set-state", lost_csn, "lost", "--reason", "reported at the desk")
            wait_until(lambda: y.door().get("s2") is False, 60, "s2's card blocked")
            assert y.door() == {"s1": True, "s2": False, "T1": True, "T2": True}
            calls = len(peer.api_requests())
            y.cli("crous", "sync")
            assert peer.api_requests()[calls:] == [
                ("PATCH", f"{API}/s2/smartcard/{lost_number}", 200)]
            calls += 1
            [lost] = [c for c in peer.cards.values() if c["uid"] == lost_csn]
            assert lost["reason"] == "DP" and lost["cancelDate"].startswith("2026-10-12T")
            assert sum(1 for c in peer.cards.values() if c["cancelDate"]) == 1

            # Two staff members leave: tarif 99, their past end of rights clamped by the
            # API CROUS's rule to now + 3 h.
            y.at(paris(2026, 10, 15))
            y.import_registry(STUDENTS_2026, STAFF_LEFT)
            y.cli("crous", "sync")
            assert peer.api_requests()[calls:] == [
                ("GET", f"{API}/T1", 200), ("PUT", f"{API}/T1", 200),
                ("GET", f"{API}/T2", 200), ("PUT", f"{API}/T2", 200)]
            y.cli("access", "export")  # the hourly export: their cards closed at the doors
            assert y.door() == {"s1": True, "s2": False, "T1": False, "T2": False}
            clamped = (clock.now() + timedelta(hours=3)).astimezone(UTC)
            for key in ("T1", "T2"):
                holder = next(h for h in peer.holders.values()
                          if h["email"] == f"{key.lower()}@example.org")
                assert holder["idRate"] == 99
                assert datetime.strptime(holder["dueDate"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                    tzinfo=UTC) == clamped
            assert holders["S1"]["idRate"] == 1
            reload(y.daemon)
            assert y.daemon.metric("badged_crous_pending_changes") == 0
            assert y.daemon.metric("badged_crous_people_in_error", blocking="true") in (0, None)
            assert y.daemon.metric("badged_crous_sync_last_success_timestamp_seconds") == \
                clock.now().timestamp()
            assert y.daemon.metric("badged_access_cards_exported", export="doors") == 4
            assert y.daemon.metric("badged_cards", state="lost") == 1

            # The next September: the réinscriptions pushed before the deadline.
            y.at(paris(2027, 9, 6))
            y.import_registry(STUDENTS_2027, STAFF_LEFT)
            y.cli("crous", "sync")
            students = [h for h in peer.holders.values() if h["email"].startswith("s")]
            assert sorted(h["dueDate"][:10] for h in students) == ["2028-08-31"] * 2
            assert y.daemon.status()["health"] == "healthy", y.daemon.status()["problems"]
            assert recorder.received == []  # nothing of this school went by mail
        finally:
            y.close()
