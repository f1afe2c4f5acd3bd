"""The local control socket: how `badged status`, `enrol`, `exchange run` … reach the daemon.

A Unix stream socket at `<runtime_dir>/control.sock`, mode 0660 (group `badged` may
connect) whatever the umask. Protocol: JSON lines, one request and one answer per
connection:

    → {"op": "status"}
    ← {"ok": true, ...}            or   {"ok": false, "error": "message"}

- `protocol`: the framing, the limits and the validation of a request;
- `server`: `ControlServer`, the daemon's side (the socket, the slots, the time limits);
- `client`: `ControlClient`, the CLI's side (one connection per request);
- `errors`: what each side raises.

What the daemon answers (status, enrol, exchange run …) is `badged.daemon.operations`.
"""

from .client import ControlClient
from .errors import (
    ControlError,
    ControlSocketError,
    DaemonTimeout,
    DaemonUnreachable,
    OpError,
    RequestError,
)
from .protocol import MAX_ANSWER, MAX_LINE, socket_path
from .server import ControlServer

__all__ = [
    "MAX_ANSWER", "MAX_LINE", "ControlClient", "ControlError", "ControlServer",
    "ControlSocketError", "DaemonTimeout", "DaemonUnreachable", "OpError", "RequestError",
    "socket_path",
]
