"""sd_notify: tell systemd (Type=notify) that badged is ready, alive, reloading or stopping.

A thin wrapper over the `sdnotify` library. Every function is a no-op when
`$NOTIFY_SOCKET` is unset (badged run by hand, in tests, in a container): callers never
check. `sdnotify.SystemdNotifier` reads `$NOTIFY_SOCKET` and connects when it is
constructed, so the notifier is (re)built whenever the variable changes; an abstract
socket (`@name`) is supported by sdnotify itself.

    notify.ready()                      READY=1 (config valid, store open, metrics bound)
    notify.status("2 readers, 0 pending")   STATUS=… (one line, shown by systemctl status)
    notify.watchdog()                   WATCHDOG=1 (every watchdog_interval() seconds)
    notify.reloading()                  RELOADING=1 + MONOTONIC_USEC (SIGHUP); ready() after
    notify.stopping()                   STOPPING=1 (SIGTERM)
"""

from __future__ import annotations

import os
import threading
import time

import sdnotify

_lock = threading.Lock()
_notifier: sdnotify.SystemdNotifier | None = None
_notifier_for: str | None = None


def _get() -> sdnotify.SystemdNotifier | None:
    """The notifier for the current `$NOTIFY_SOCKET`, or None when it is unset."""
    global _notifier, _notifier_for
    addr = os.environ.get("NOTIFY_SOCKET") or None
    with _lock:
        if addr != _notifier_for:
            if _notifier is not None and _notifier.socket is not None:
                _notifier.socket.close()
            _notifier = sdnotify.SystemdNotifier() if addr else None
            _notifier_for = addr
        return _notifier


def close() -> None:
    """Close the notification socket (at exit, in tests); the next message reopens it."""
    global _notifier, _notifier_for
    with _lock:
        if _notifier is not None and _notifier.socket is not None:
            _notifier.socket.close()
        _notifier, _notifier_for = None, None


def notify(state: str) -> None:
    """Send raw `KEY=value` lines; errors are swallowed (sdnotify's non-debug mode).

    sdnotify encodes as Latin-1; systemd reads UTF-8, so the text is passed as the
    Latin-1 view of its UTF-8 bytes (accents in STATUS= arrive intact).
    """
    notifier = _get()
    if notifier is not None:
        notifier.notify(state.encode("utf-8").decode("latin-1"))


def ready() -> None:
    notify("READY=1")


def status(text: str) -> None:
    """One-line STATUS= (newlines would start new assignments: they become spaces)."""
    notify("STATUS=" + " ".join(str(text).split()))


def watchdog() -> None:
    notify("WATCHDOG=1")


def reloading() -> None:
    """RELOADING=1 with the CLOCK_MONOTONIC timestamp Type=notify-reload requires.

    Send `ready()` once the reload is done (or rejected: the old config is back in use).
    """
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")


def stopping() -> None:
    notify("STOPPING=1")


def watchdog_interval() -> float | None:
    """Seconds between two WATCHDOG=1 pings (half of `$WATCHDOG_USEC`), or None.

    None when no watchdog is configured, the value is invalid, or `$WATCHDOG_PID` names
    another process (the variable was inherited, not meant for us).
    """
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000
