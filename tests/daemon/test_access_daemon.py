"""Door-system exports through the running daemon: `badged access export` goes through the
control socket, and a card set lost by `badged card set-state` (another process, writing
the store) is blocked in the door file within seconds by the `on_change` export."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from click.testing import CliRunner
from daemonkit import BADGED, wait_until

from badged.cli import main

LOST = "0471928A083C80"
CROUS_CSV = Path(__file__).resolve().parents[1] / "fixtures/crous-csv/good.csv"


def cli(site, *args: str) -> str:
    result = CliRunner().invoke(main, ["--host-config", str(site.host_file), *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_lost_card_is_blocked_at_the_doors_within_a_minute(site, start_daemon,
                                                             tmp_path) -> None:
    for pid, last in (("s1", "Martin"), ("s2", "Durand")):
        cli(site, "person", "add", pid, "--last-name", last, "--first-name", "Alex",
            "--category", "student", "--birth-date", "2004-05-06")
    links = tmp_path / "links.csv"
    links.write_text(f"person_id;csn\ns1;04A1B2C3D4E5F6\ns2;{LOST}\n")
    cli(site, "crous", "import-cards", str(CROUS_CSV))
    cli(site, "enrol", "--csv", str(links))
    daemon = start_daemon()
    door_file = site.state_dir / "access" / "doors" / "doors.csv"

    result = CliRunner().invoke(main, ["--host-config", str(site.host_file), "access",
                                       "export"])
    assert result.exit_code == 0, result.output
    assert "badged is not running" not in result.stderr  # the daemon did it
    out = result.stdout
    assert "doors (til) → directory " in out and "2 card(s), 2 valid, 0 blocked" in out
    assert "  wrote doors.csv (" in out
    assert f";{LOST};" in door_file.read_text("iso-8859-1")
    assert door_file.stat().st_mode & 0o777 == 0o640
    assert daemon.metric("badged_access_cards_exported", export="doors") == 2
    assert daemon.metric("badged_access_exports_written_total", export="doors") == 1
    assert daemon.metric("badged_access_interval_seconds", export="doors") == 3600
    assert daemon.metric("badged_access_last_success_timestamp_seconds", export="doors") > 0

    lost_at = time.monotonic()
    proc = subprocess.run([str(BADGED), "--host-config", str(site.host_file), "card",
                           "set-state", LOST, "lost"], env=daemon.env, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    line = wait_until(
        lambda: next((li for li in door_file.read_text("iso-8859-1").splitlines()
                      if f";{LOST};" in li and ";0;" in li), None),
        timeout=60, what="the lost card blocked in the door file", step=0.2)
    assert time.monotonic() - lost_at < 60
    assert line.startswith(f"s2;Durand;Alex;{LOST};") and line.endswith(";A")
    assert "access export doors: running now (card change)" in daemon.log()
    daemon.wait_metric("badged_access_exports_written_total", 2, export="doors")

    again = cli(site, "access", "export", "doors")
    assert "identical to the previous export: nothing rewritten" in again
    assert daemon.metric("badged_access_exports_written_total", export="doors") == 2
    jobs = {job["name"]: job for job in daemon.status()["jobs"]}
    assert jobs["access-doors"]["schedule"] == "every 1 hours"
    assert jobs["access-doors"]["last_error"] is None


def test_a_failing_destination_is_reported_through_the_daemon(site, start_daemon,
                                                              tmp_path) -> None:
    share = tmp_path / "share-not-mounted"
    text = site.school_file.read_text()
    assert "directory: {path: access/doors, keep: 3}" in text
    site.school_file.write_text(text.replace("directory: {path: access/doors, keep: 3}",
                                             f"directory: {{path: {share}}}"))
    cli(site, "person", "add", "s1", "--last-name", "Martin", "--first-name", "Alex",
        "--category", "student")
    daemon = start_daemon()

    result = CliRunner().invoke(main, ["--host-config", str(site.host_file), "access",
                                       "export", "doors"])
    assert result.exit_code == 1, result.output
    assert "badged is not running" not in result.stderr
    assert (f"error: doors: directory {share}: no such folder (is the door system's share "
            "mounted?) (the previous export stays in place; retried after a backoff, "
            "1 failure(s) in a row)") in result.stderr
    assert daemon.metric("badged_access_failures_total", export="doors") == 1
    assert daemon.metric("badged_access_last_success_timestamp_seconds", export="doors") == 0
    assert daemon.metric("badged_access_last_run_timestamp_seconds", export="doors") > 0
    status = daemon.status()
    assert status["health"] == "degraded"
    assert any(p.startswith("job access-doors failing: AccessError: not delivered (1 "
                            "failure(s) in a row, retry at ") for p in status["problems"])
