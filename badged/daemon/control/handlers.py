"""An op of the control socket and the run of its handler.

A handler gets the validated request dict (with its "op") and returns a dict, merged into
the answer. It raises `OpError("message")` for a clean error answer; any other exception
is logged with its traceback and answered as an internal error, as is a result that is not
a JSON object. A `cancellable` handler is called as `handler(request, cancelled)`:
`cancelled` is a `threading.Event` set when the client hangs up while it runs (e.g. Ctrl-C
on `badged enrol`), so a waiting enrolment stops instead of linking whatever card is tapped
after the operator gave up.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import OpError
from .protocol import FieldType, encode

log = logging.getLogger(__name__)

Handler = Callable[..., Mapping[str, Any] | None]


@dataclass(frozen=True)
class Op:
    """A registered op: its handler, its fields, and how it is served."""

    handler: Handler
    required: Mapping[str, FieldType] = field(default_factory=dict)
    optional: Mapping[str, FieldType] = field(default_factory=dict)
    cancellable: bool = False
    light: bool = False


def run(op_name: str, op: Op, request: dict[str, Any], conn: socket.socket) -> dict[str, Any]:
    """The answer to a validated request: the handler's result, or a clean error."""
    log.debug("control op %s", op_name)
    watcher = None
    try:
        if op.cancellable:
            cancelled = threading.Event()
            watcher = HangupWatcher(conn, cancelled)
            result = op.handler(request, cancelled)
        else:
            result = op.handler(request)
    except OpError as exc:
        # The message may name a person (the client gets it): the journal does not.
        log.info("control op %s refused", op_name)
        log.debug("control op %s refused: %s", op_name, exc)
        return {"ok": False, "error": str(exc)}
    except Exception as exc:
        log.exception("control op %s failed", op_name)
        return {"ok": False, "error": f"internal error in {op_name}: "
                                      f"{type(exc).__name__}: {exc}"}
    finally:
        if watcher is not None:
            watcher.stop()
    if result is None:
        result = {}
    if not isinstance(result, Mapping):
        log.error("control op %s returned %s, not a dict", op_name, type(result).__name__)
        return {"ok": False, "error": f"internal error in {op_name}: bad result"}
    answer = {"ok": True, **{k: v for k, v in result.items() if k != "ok"}}
    try:
        encode(answer)
    except (TypeError, ValueError) as exc:
        log.error("control op %s returned an unserialisable result: %s", op_name, exc)
        return {"ok": False, "error": f"internal error in {op_name}: bad result"}
    return answer


class HangupWatcher:
    """Sets `cancelled` when the client closes its end while a handler runs."""

    def __init__(self, conn: socket.socket, cancelled: threading.Event) -> None:
        self._conn = conn
        self._cancelled = cancelled
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="control-hangup", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._conn, selectors.EVENT_READ)
            while not self._done.is_set():
                if not sel.select(timeout=0.2):
                    continue
                try:
                    data = self._conn.recv(4096, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:  # EOF: the client is gone
                    self._cancelled.set()
                    return

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=1)
