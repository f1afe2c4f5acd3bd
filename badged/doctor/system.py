"""Doctor: disk space for the archive, the clock's synchronisation, the daemon itself."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

from ..config.host import Host
from ..daemon.control import ControlClient, ControlError, DaemonUnreachable, socket_path
from . import Check, fail, ok, warn

MIB = 1024 * 1024
DISK_FAIL = 100 * MIB   # a day of archives and the WAL need far less; below this, act now
DISK_WARN = 1024 * MIB


def disk(host: Host) -> list[Check]:
    folder = host.state_dir
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # not created yet: the file system it will live on
    try:
        usage = shutil.disk_usage(folder)
    except OSError as exc:
        return [fail("disk", f"{folder}: {exc.strerror}", "check the state folder's mount")]
    free = f"{usage.free / MIB:,.0f} MiB free of {usage.total / MIB:,.0f} MiB on {folder}"
    if usage.free < DISK_FAIL:
        return [fail("disk", free, "free space there: the outbox archive and the store "
                     "need it (archive_retention_days shortens the archive)")]
    if usage.free < DISK_WARN or usage.free < usage.total * 0.05:
        return [warn("disk", free, "free space soon (archive_retention_days shortens the "
                     "archive)")]
    return [ok("disk", free)]


def _run(*argv: str) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def clock() -> list[Check]:
    """Deadlines, Date headers and API tokens need the right time: NTP synchronised."""
    synced = _run("timedatectl", "show", "-p", "NTPSynchronized", "--value")
    if synced is not None and synced.strip() in ("yes", "no"):
        if synced.strip() == "yes":
            return [ok("clock", "synchronised (timedatectl)")]
        return [warn("clock", "not synchronised (timedatectl: NTPSynchronized=no)",
                     "systemctl enable --now systemd-timesyncd (or chrony)")]
    tracking = _run("chronyc", "-n", "tracking")
    if tracking is not None:
        if "Leap status     : Normal" in tracking or "Leap status : Normal" in tracking:
            return [ok("clock", "synchronised (chrony)")]
        return [warn("clock", "chrony is not synchronised", "chronyc sources -v")]
    return [warn("clock", "synchronisation unknown (no timedatectl answer, no chrony)",
                 "run systemd-timesyncd or chrony")]


def ask_daemon(host: Host, timeout: float) -> dict[str, Any] | ControlError:
    """The daemon's status answer, or why it gave none."""
    try:
        return ControlClient(socket_path(host.runtime_dir)).request("status", timeout=timeout)
    except ControlError as exc:
        return exc


def daemon(host: Host, answer: dict[str, Any] | ControlError) -> list[Check]:
    path = socket_path(host.runtime_dir)
    if isinstance(answer, DaemonUnreachable):
        return [fail("daemon", f"not answering on {path}: {answer}",
                     "systemctl start badged; journalctl -u badged -e says why it stopped")]
    if isinstance(answer, ControlError):
        return [fail("daemon", f"{path}: {answer}", "check the socket's group (badged) and "
                     "that this user is a member of it")]
    seen = f"pid {answer.get('pid')}, up {answer.get('uptime_seconds')} s: "
    problems = answer.get("problems") or []
    if problems:
        return [warn("daemon", seen + "degraded: " + "; ".join(problems),
                     "badged status shows each problem; the lines above say how to fix them")]
    return [ok("daemon", seen + str(answer.get("summary")))]


