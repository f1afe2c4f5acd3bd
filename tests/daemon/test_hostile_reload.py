"""SIGHUP with a hostile tree: the reload is refused at once and the daemon keeps its memory.

Before the loader had limits, the alias bomb sent by SIGHUP grew a running daemon from 264
to 417 MB in 3 s; a recursive alias or deep nesting raised out of the reload.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from daemonkit import Site, StartDaemon

FIXTURES = Path(__file__).parents[1] / "fixtures" / "config"
HOSTILE = ["yaml-alias-bomb", "yaml-recursive-alias", "yaml-deep-nesting", "yaml-complex-key",
           "yaml-long-integer", "yaml-control-character"]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def fixture_body(case: str) -> str:
    return (FIXTURES / f"{case}.yaml").read_text(encoding="utf-8").split("\n", 1)[1]


def test_sighup_with_hostile_trees_is_refused_and_memory_stays_flat(
        site: Site, notifications, start_daemon: StartDaemon) -> None:
    daemon = start_daemon()
    good = site.school_file.read_text()
    daemon.status()  # every lazy import of a request done before the first measure
    before = rss_kib(daemon.pid)
    for case in HOSTILE:
        site.school_file.write_text(fixture_body(case), encoding="utf-8")
        mark = time.monotonic()
        daemon.send(signal.SIGHUP)
        notifications.wait_for("RELOADING=1", after=mark)
        notifications.wait_for("READY=1", after=mark, timeout=10)  # back on the old tree
        assert daemon.alive, daemon.log()
        assert daemon.metric("badged_config_last_reload_successful") == 0
        assert f"reload refused: {site.school_file}:" in daemon.log(), case
        grown = rss_kib(daemon.pid) - before
        assert grown < 16 * 1024, f"{case}: the daemon grew by {grown // 1024} MB"
    assert daemon.status()["name"] == "École Démo"
    assert "Traceback" not in daemon.log()
    site.school_file.write_text(good)
    mark = time.monotonic()
    daemon.send(signal.SIGHUP)
    notifications.wait_for("READY=1", after=mark)
    assert daemon.metric("badged_config_last_reload_successful") == 1
    assert daemon.stop() == 0
