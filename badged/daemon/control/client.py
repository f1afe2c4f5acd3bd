"""The control socket's client side, what the CLI and `badged doctor` use.

`ControlClient(path).request("status", timeout=5)` returns the answer dict or raises
`DaemonUnreachable` (→ exit code 4) or `RequestError` (the daemon said no).
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ControlError, DaemonTimeout, DaemonUnreachable, RequestError
from .protocol import MAX_ANSWER, encode


class ControlClient:
    """The CLI's side: one connection per request."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def request(self, op: str, *, timeout: float | None = 10.0, **fields: Any) -> dict[str, Any]:
        """Send `{"op": op, **fields}` (None fields left out); the answer if ok.

        `timeout` bounds the connection and the wait for the answer (None: no bound; pass
        more than a blocking op waits, e.g. an enrolment's wait + a margin). Raises
        DaemonUnreachable (exit 4), RequestError (the daemon refused), ControlError
        (garbled answer).
        """
        answer = self.send({"op": op, **{k: v for k, v in fields.items() if v is not None}},
                           timeout=timeout)
        if answer.get("ok") is not True:
            raise RequestError(str(answer.get("error") or "the daemon refused the request"),
                                answer)
        return answer

    def send(self, request: Mapping[str, Any], *, timeout: float | None = 10.0
             ) -> dict[str, Any]:
        """Send a raw request and return the raw answer (ok or not)."""
        where = str(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            try:
                sock.connect(where)
            except FileNotFoundError:
                raise DaemonUnreachable(f"badged is not running: no control socket at "
                                        f"{where}") from None
            except ConnectionRefusedError:
                raise DaemonUnreachable(f"badged is not running: nothing answers on "
                                        f"{where} (stale socket)") from None
            except PermissionError:
                raise DaemonUnreachable(f"permission denied on {where}: run as a member of "
                                        "group badged (or root)") from None
            except TimeoutError:
                raise DaemonTimeout(f"badged did not accept the connection on {where} "
                                    f"within {timeout:g} s") from None
            except OSError as exc:
                raise DaemonUnreachable(f"cannot reach badged on {where}: "
                                        f"{exc.strerror or exc}") from None
            try:
                # The daemon may have answered (e.g. "busy") without reading: read anyway.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    sock.sendall(encode(request))
                data = _read_answer(sock)
            except TimeoutError:
                raise DaemonTimeout(f"badged did not answer on {where} within "
                                    f"{timeout:g} s") from None
            except OSError as exc:
                raise DaemonUnreachable(f"lost the connection to badged on {where}: "
                                        f"{exc.strerror or exc}") from None
        finally:
            sock.close()
        if not data:
            raise DaemonUnreachable(f"badged closed the connection on {where} "
                                    "without answering")
        try:
            answer = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ControlError(f"garbled answer from badged on {where}") from None
        if not isinstance(answer, dict):
            raise ControlError(f"garbled answer from badged on {where}")
        return answer


def _read_answer(sock: socket.socket) -> bytes:
    buf = bytearray()
    while b"\n" not in buf and len(buf) <= MAX_ANSWER:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return bytes(buf.split(b"\n", 1)[0])
