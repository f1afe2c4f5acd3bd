"""The real daemon's control socket under idle, slow and malformed clients (issue: fairness).

Before, 16 idle connections took every slot and any other client waited for "busy"; a
lone surrogate or an absurd number got "internal error" or no answer at all.
"""

from __future__ import annotations

import json
import socket
import subprocess

from daemonkit import BADGED, StartDaemon

BAD_REQUESTS = [
    (b'{"op": "enrol", "person": "\\ud800"}\n', "lone surrogate"),
    (b'{"op": "exchange-run", "kind": "\\udfff"}\n', "lone surrogate"),
    (b'{"op": "enrol", "person": "E1", "wait_seconds": 1e999}\n', "number out of range"),
    (b'{"op": "enrol", "person": "E1", "wait_seconds": NaN}\n', "NaN is not a number"),
    (b'{"op": "status", "x": ' + b"[" * 10000 + b"]" * 10000 + b"}\n", "nested too deeply"),
    # numbers JSON allows but no wait can be: refused by the op, not an internal error
    (b'{"op": "enrol", "person": "E1", "wait_seconds": 1e308}\n', "wait_seconds must be"),
    (b'{"op": "enrol", "person": "E1", "wait_seconds": -5}\n', "wait_seconds must be"),
    # a batch number SQLite cannot bind was an internal error in exchange-retry/resend
    (b'{"op": "exchange-retry", "batch": 1' + b"0" * 30 + b"}\n",
     "bad exchange-retry request: field 'batch' must be an integer"),
    (b'{"op": "exchange-resend", "batch": 1' + b"0" * 30 + b"}\n",
     "bad exchange-resend request: field 'batch' must be an integer"),
]


def raw_request(path: str, payload: bytes) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(payload)
        return json.loads(sock.makefile("rb").readline())


def test_status_answers_past_16_idle_connections(start_daemon: StartDaemon) -> None:
    daemon = start_daemon()
    path = str(daemon.site.control_socket)
    idle = []
    try:
        for i in range(32):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
            if i % 2:
                sock.sendall(b'{"op": "sta')  # half a request, never finished
            idle.append(sock)
        # the client's timeout is the bound: 1 s
        assert daemon.site.client().request("status", timeout=1)["school"] == "demo"
        result = subprocess.run([str(BADGED), "--host-config", str(daemon.site.host_file),
                                 "status", "--json"], capture_output=True, timeout=30,
                                env=daemon.env)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["school"] == "demo"
    finally:
        for sock in idle:
            sock.close()
    assert daemon.stop() == 0


def test_malformed_requests_to_the_daemon_get_clean_errors(start_daemon: StartDaemon) -> None:
    daemon = start_daemon()
    for payload, error in BAD_REQUESTS:
        answer = raw_request(str(daemon.site.control_socket), payload)
        assert answer["ok"] is False and error in answer["error"], (payload, answer)
    assert daemon.status()["ok"] is True
    assert "Traceback" not in daemon.log()
    assert daemon.stop() == 0

