"""The API CROUS sync in the real daemon: scheduled (IMT Nantes), through the control socket,
and exactly once across a SIGKILL in the middle of a run."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing

import pytest
import yaml
from daemonkit import BADGED, Site, wait_until

from badged.store import cards, people
from badged.store.db import open_store, utcnow
from badged.testing.crous_peer import CrousPeer, Fault

CLIENT_ID, SECRET = "imt", "daemon-test-secret-42"


@pytest.fixture
def peer() -> Iterator[CrousPeer]:
    with CrousPeer(clients={CLIENT_ID: SECRET}) as p:
        yield p


def point_crous_at(site: Site, crous: str, peer: CrousPeer, **extra: object) -> None:
    path = site.tree / "crous" / f"{crous}.yaml"
    data = yaml.safe_load(path.read_text())
    data["api"] = {"base_url": peer.base_url, "token_url": peer.token_url,
                   "client_id": CLIENT_ID, "client_secret": {"credential": "crous-api"},
                   "connect_timeout_seconds": 2.0, "read_timeout_seconds": 5.0,
                   "backoff_seconds": 0.0, **extra}
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    secret = site.credentials / "crous-api"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)


def populate(site: Site, n: int, year: int) -> None:
    with closing(open_store(site.state_dir)) as conn:
        for i in range(n):
            pid = f"E{i:03d}"
            people.upsert(conn, people.Person(
                id=pid, last_name="Nom", first_name=f"P{i}", category="student",
                email=f"{pid.lower()}@example.org", ine=f"INE{i:05d}", birth_date="2005-01-01",
                academic_year=year, first_enrolment_year=year if i % 2 else year - 1,
                source="students"))
            csn = f"04{i:012X}"
            conn.execute(
                "INSERT INTO crous_cards (csn, rid, num_carte, pix_ss, pix_nn, appl, nfo, "
                "cnous, crous, emetteur, mapping, date_creation, imported_at, source_file) "
                "VALUES (?, ?, ?, '03', '0000', 'D1', '0', '0', '0441', 65, 1, '2026-09-01', "
                "?, 't.csv')", (csn, csn, 37000000 + i, utcnow()))
            cards.link(conn, csn, pid, 37000000 + i)


def academic_year() -> int:
    from datetime import UTC, datetime

    from badged.crous.deadlines import academic_year_start
    return academic_year_start(datetime.now(UTC)).year


def catch_up(site: Site, *jobs: str) -> None:
    """The jobs last ran days ago: their scheduled runs were missed, so they run at start."""
    with closing(open_store(site.state_dir)) as conn:
        for job in jobs:
            conn.execute("INSERT INTO job_runs (job, last_run_at, last_success_at) "
                         "VALUES (?, ?, ?)", (job, time.time() - 3 * 86400,
                                              time.time() - 3 * 86400))


def cli(site: Site, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BADGED), "--host-config", str(site.host_file), *args],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


def test_imt_nantes_api_exchanges_run_on_schedule(site, start_daemon, peer) -> None:
    text = site.host_file.read_text().replace("school: demo", "school: imt-nantes")
    site.host_file.write_text(text + "smtp: {host: 127.0.0.1, port: 25}\n")
    point_crous_at(site, "nantes", peer)
    populate(site, 6, academic_year())
    catch_up(site, "exchange-primo_entrants", "exchange-reinscriptions")
    daemon = start_daemon()
    wait_until(lambda: len(peer.cards) == 6, 20, "six cards told to the peer")
    assert len(peer.holders) == 6
    daemon.wait_metric("badged_crous_api_requests_total", 6, op="create-holder", code="201")
    daemon.wait_metric("badged_crous_pending_changes", 0)
    for job in ("exchange-primo_entrants", "exchange-reinscriptions"):
        assert daemon.metric("badged_task_last_success_timestamp_seconds", task=job) > 0
    assert daemon.metric("badged_crous_people_in_error", blocking="true") == 0
    assert daemon.metric("badged_crous_sync_duration_seconds") > 0
    assert SECRET not in daemon.log()
    # `badged crous sync` goes through the daemon: nothing changed, no call.
    out = cli(site, "crous", "sync", "--json", env=daemon.env)
    assert out.returncode == 0, out.stderr
    assert '"calls": 0' in out.stdout and "not running" not in out.stderr
    assert daemon.stop() == 0


def test_sigkill_mid_sync_then_restart_tells_everything_exactly_once(
        site, start_daemon, peer) -> None:
    school = yaml.safe_load(site.school_file.read_text())
    school["exchanges"] = [{"kind": "primo_entrants", "schedule": "every day at 03:00",
                            "transport": "api"},
                           {"kind": "reinscriptions", "schedule": "every day at 03:00",
                            "transport": "api"}]
    site.school_file.write_text(yaml.safe_dump(school, allow_unicode=True))
    # A read timeout longer than the test: the daemon is still waiting when it is killed.
    point_crous_at(site, "demo", peer, read_timeout_seconds=120.0)
    n = 20
    populate(site, n, academic_year())
    # The 8th card's answer hangs after the card is stored: the daemon dies waiting for it.
    peer.inject(Fault("POST", r"/smartcard$", kind="slow", delay=300.0, skip=7, times=1))
    catch_up(site, "exchange-primo_entrants", "exchange-reinscriptions")
    daemon = start_daemon()
    wait_until(lambda: len(peer.cards) == 8, 30, "8 cards at the peer")
    daemon.kill()
    assert (len(peer.cards), len(peer.holders)) == (8, 8), daemon.log()
    daemon = start_daemon()
    out = cli(site, "crous", "sync", "--json", env=daemon.env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(peer.holders) == n and len(peer.cards) == n
    writes = Counter((method, path, body.get("identifier") if method == "POST" and
                      path.endswith("rightholders") else None)
                     for method, path, body in peer.writes)
    assert all(count == 1 for count in writes.values()), writes
    assert len(peer.writes) == 2 * n
    again = cli(site, "crous", "sync", "--json", env=daemon.env)
    assert '"calls": 0' in again.stdout
    assert daemon.stop() == 0

