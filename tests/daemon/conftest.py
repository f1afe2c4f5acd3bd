"""Fixtures for the daemon tests that run the real `badged run` (see daemonkit.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemonkit import DaemonProcess, Notifications, Site, StartDaemon, make_site

from badged.demo.pcscd_sandbox import PcscdSandbox


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """Host file + copy of config/ (school demo, metrics on a free port) + test keys."""
    made = make_site(tmp_path)
    yield made
    made.cleanup()


@pytest.fixture
def notifications() -> Iterator[Notifications]:
    """A $NOTIFY_SOCKET datagram socket, as systemd's."""
    with Notifications() as listener:
        yield listener


@pytest.fixture
def start_daemon(site: Site, pcsc: PcscdSandbox, notifications: Notifications
                 ) -> Iterator[StartDaemon]:
    """`start_daemon(ready=True, **kw) -> DaemonProcess`: killed at teardown if still up."""
    started: list[DaemonProcess] = []

    def start(*, ready: bool = True, **kwargs: Any) -> DaemonProcess:
        proc = DaemonProcess(site, pcsc.env(), notifications, **kwargs).start()
        started.append(proc)
        if ready:
            proc.wait_ready()
        return proc

    yield start
    for proc in started:
        proc.kill()
