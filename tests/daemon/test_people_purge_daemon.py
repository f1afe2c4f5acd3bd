"""The daemon's daily `people-purge` job: leavers past retention_days are erased, the
metric counts them, and no INFO line names them."""

from __future__ import annotations

import time
from datetime import date, timedelta

from click.testing import CliRunner

from badged.cli import main
from badged.store import people
from badged.store.db import open_store


def cli(site, *args: str) -> str:
    result = CliRunner().invoke(main, ["--host-config", str(site.host_file), *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_the_daily_job_purges_leavers(site, start_daemon) -> None:
    for pid, last, first in (("gone-1", "Brunequelle", "Anatolie"),
                             ("here-1", "Sauvemiel", "Corentin")):
        cli(site, "person", "add", pid, "--last-name", last, "--first-name", first,
            "--category", "staff", "--email", f"{first.lower()}@example.org",
            "--birth-date", "1970-04-05")
    conn = open_store(site.state_dir)
    conn.execute("UPDATE people SET leaving_since = ? WHERE id = 'gone-1'",
                 ((date.today() - timedelta(days=401)).isoformat(),))
    # The job last ran two days ago: a daily slot passed, so it catches up at start.
    conn.execute("INSERT INTO job_runs (job, last_run_at, last_success_at) VALUES "
                 "('people-purge', ?, ?)", (time.time() - 2 * 86400,) * 2)
    daemon = start_daemon()
    daemon.wait_metric("badged_people_purged_total", 1)
    assert people.get(conn, "gone-1") is None
    assert people.get(conn, "here-1") is not None
    jobs = {j["name"]: j for j in daemon.status()["jobs"]}
    assert jobs["people-purge"]["last_error"] is None
    info = [line for line in daemon.log().splitlines() if not line.startswith("DEBUG")]
    assert any("retention: purged 1 people" in line for line in info), daemon.log()
    for value in ("gone-1", "Brunequelle", "Anatolie", "anatolie@example.org", "1970-04-05"):
        assert not any(value in line for line in info), value
