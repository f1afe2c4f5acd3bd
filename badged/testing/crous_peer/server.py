"""The peer's HTTP side: parse a request, apply an injected fault or route it (token
endpoints, then the API behind a bearer token), answer JSON."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from .schema import PREFIX, RefusedError

if TYPE_CHECKING:
    from .peer import CrousPeer


class Handler(BaseHTTPRequestHandler):
    peer: CrousPeer
    protocol_version = "HTTP/1.1"
    server_version = "crous-peer"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle's algorithm and the
        # client's delayed ACK hold the body back ~40 ms on every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        peer = self.peer
        url = urlsplit(self.path)
        path = url.path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        fault = None
        extra: dict[str, str] = {}
        with peer.lock:
            for candidate in peer.faults:
                if candidate.take(method, path):
                    fault = candidate
                    break
            if fault is not None and fault.kind == "expire-tokens":
                peer.tokens.clear()
                fault = None
            if fault is not None and fault.kind == "drop" and not fault.after_write:
                self._drop()
                return
            if fault is not None and fault.kind == "status":
                status: int = fault.status
                body: Any = {"errors": [{"code": fault.code, "message": fault.message,
                                         "field": None}]}
                if fault.retry_after is not None:
                    extra["Retry-After"] = fault.retry_after
            else:
                try:
                    status, body = self._route(method, url, path, raw, extra)
                except RefusedError as exc:
                    status = exc.status
                    body = {"errors": [{"code": exc.code, "message": exc.message,
                                        "field": exc.field}]}
            peer.requests.append((method, path, status))
        if fault is not None and fault.kind == "drop":
            self._drop()
            return
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
        self._answer(status, body, extra)

    def _route(self, method: str, url: Any, path: str, raw: bytes,
               extra: dict[str, str]) -> tuple[int, Any]:
        peer = self.peer
        if path.endswith("/oauth/token") and method == "POST":
            peer.check_basic(self.headers.get("Authorization"))
            if parse_qs(url.query).get("grant_type") != ["client_credentials"]:
                raise RefusedError(400, None, "grant_type=client_credentials expected")
            return 200, {"access_token": peer.issue_token(), "token_type": "bearer",
                         "expires_in": int(peer.token_ttl)}
        if path == "/v1/token" and method == "POST":
            peer.check_basic(self.headers.get("Authorization"))
            if self.headers.get_content_type() != "application/x-www-form-urlencoded":
                raise RefusedError(415, None, "application/x-www-form-urlencoded expected")
            form = parse_qs(raw.decode("utf-8", "replace"))
            if form.get("grant_type") != ["client_credentials"] or \
                    form.get("env") not in (["PRD"], ["PPD"]):
                raise RefusedError(400, None, "grant_type=client_credentials&env=PRD|PPD expected")
            extra["authorization"] = peer.issue_token()
            return 200, None
        if not path.startswith(PREFIX):
            raise RefusedError(404, None, f"no {path}")
        peer.check_bearer(self.headers.get("Authorization"))
        body = None
        if method in ("POST", "PUT", "PATCH"):
            if self.headers.get_content_type() != "application/json":
                raise RefusedError(415, None, "application/json expected")
            try:
                body = json.loads(raw)
            except ValueError:
                raise RefusedError(400, None, "malformed JSON") from None
        return peer.handle_api(method, path, body, self.headers.get("uid"))

    def _answer(self, status: int, body: Any, extra: dict[str, str]) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        with contextlib.suppress(OSError):
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
