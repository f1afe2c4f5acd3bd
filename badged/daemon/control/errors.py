"""The control socket's errors: the client's (exit code 4, a refusal) and the handlers'."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ControlError(Exception):
    """Base of the control socket errors (a garbled answer is a plain ControlError)."""


class DaemonUnreachable(ControlError):  # noqa: N818 (name fixed by the CLI contract)
    """No daemon answers on the socket (missing, refused, permission denied, timeout)."""


class DaemonTimeout(DaemonUnreachable):
    """The daemon accepted the connection but did not answer in time."""


class RequestError(ControlError):
    """The daemon answered `{"ok": false, "error": …}`; `.error` is its message."""

    def __init__(self, error: str, answer: Mapping[str, Any] | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.answer = dict(answer or {})


class ControlSocketError(ControlError):
    """The server cannot take the socket path (another daemon answers, not a socket, …)."""


class OpError(Exception):
    """Raised by a handler: answered as `{"ok": false, "error": str(exc)}`, no traceback."""
