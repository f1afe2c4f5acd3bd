"""A strict local API CROUS on loopback: for the tests, the bench and the demo.

It implements what docs/crous-api.md describes, and is strict where the real service is:

- both token endpoints (`POST …/oauth/token?grant_type=client_credentials`, JSON
  `access_token`; legacy `POST /v1/token` with `grant_type=client_credentials&env=PRD|PPD`,
  token in the `authorization` header), HTTP Basic, tokens that expire;
- holders and cards with their exact JSON fields: an unknown or missing field, a wrong type
  or a date not in `yyyy-MM-dd'T'HH:mm:ss.SSS'Z'` is a 400; an existing holder is 422 `-11`,
  a past dueDate 422 `-8`, an unknown holder or card 404; the `uid` header of a card PATCH
  must name the card;
- answers carry dates in varying forms (`…+02`, `…Z`, no milliseconds) like the real one;
- faults on demand (`Fault`): any status and CROUS code, 5xx bursts, slow answers past the
  client's read timeout whose write still lands, dropped connections (before or after the
  write), and tokens revoked mid-run.

In-process: `with CrousPeer(clients={"id": "secret"}) as peer: peer.base_url …`; the test
reads `peer.holders`, `peer.cards`, `peer.writes` (every write applied, in order).
Standalone (the demo): `python -m badged.testing.crous_peer --listen 127.0.0.1:8791
--client-id demo --secret-file FILE`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import json
import re
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

PREFIX = "/beforeizly/v1"
API_DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SIMPLE_DATE = re.compile(r"^\d{4}-\d\d-\d\d$")

HOLDER_FIELDS: dict[str, tuple[type | tuple[type, ...], bool]] = {
    # name: (types, required)
    "identifier": (str, True), "firstName": (str, True), "lastName": (str, True),
    "email": ((str, type(None)), False), "dueDate": (str, True),
    "idCompanyRate": (int, True), "idRate": (int, True),
    "simpleBirthDate": ((str, type(None)), False), "ine": ((str, type(None)), False),
    "rneOrgCode": (str, True),
}
RENAME_FIELDS = {"currentIdentifier": (str, True), "email": ((str, type(None)), False),
                 "newIdentifier": (str, True)}
CARD_FIELDS = {"idTransmitter": (int, True), "idMapping": (int, True), "idZdc": (int, True),
               "zdcCreationDate": (str, True), "pixSs": (str, True), "pixNn": (str, True),
               "appl": (str, True), "uid": (str, True), "rid": (str, True)}
CARD_PATCH_FIELDS = {"revalidationDate": (str, True), "cancelDate": (str, True),
                     "reason": (str, True)}
REASONS = {"DP", "DV", "CD", "HS"}
PARIS = ZoneInfo("Europe/Paris")


@dataclass
class Fault:
    """An injected behaviour for requests matching `method` and `path` (a regex searched in
    the path, query excluded), `times` times (None: always), after `skip` matches.

    kind: "status" (answer `status` with CROUS `code`, nothing applied), "slow" (apply, then
    answer after `delay` seconds), "drop" (close without answering; `after_write`: apply
    first), "expire-tokens" (revoke every token, then handle the request: it gets a 401).
    """

    method: str
    path: str
    kind: str = "status"
    status: int = 500
    code: str | None = None
    message: str = "Erreur"
    times: int | None = 1
    skip: int = 0
    delay: float = 0.0
    after_write: bool = False
    retry_after: str | None = None
    seen: int = 0

    def take(self, method: str, path: str) -> bool:
        if self.method not in ("*", method) or not re.search(self.path, path):
            return False
        self.seen += 1
        if self.seen <= self.skip:
            return False
        if self.times is not None:
            if self.times <= 0:
                return False
            self.times -= 1
        return True


class _RefusedError(Exception):
    def __init__(self, status: int, code: str | None, message: str,
                 field_name: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field_name


@dataclass
class CrousPeer:
    """The peer: state, faults, and an HTTP server on 127.0.0.1 (port 0: any free one)."""

    clients: dict[str, str] = field(default_factory=lambda: {"badged": "secret"})
    token_ttl: float = 3600.0
    host: str = "127.0.0.1"
    port: int = 0
    tariffs: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self.holders: dict[str, dict[str, Any]] = {}
        self.cards: dict[int, dict[str, Any]] = {}   # idZdc → card (with "holder")
        self.tokens: dict[str, float] = {}            # token → monotonic expiry
        self.faults: list[Fault] = []
        self.writes: list[tuple[str, str, Any]] = []  # (method, path, body) applied
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status) answered
        self.token_requests = 0
        self._formats = itertools.cycle(range(4))
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> CrousPeer:
        peer = self

        class Handler(_Handler):
            pass

        Handler.peer = peer
        server = ThreadingHTTPServer((self.host, self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": 0.2}, name="crous-peer",
                                        daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> CrousPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/api/oauth/token"

    # --- test helpers -------------------------------------------------------------------

    def inject(self, *faults: Fault) -> None:
        with self.lock:
            self.faults.extend(faults)

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def api_requests(self) -> list[tuple[str, str, int]]:
        """Answered requests other than token ones."""
        with self.lock:
            return [r for r in self.requests if r[1].startswith(PREFIX)]

    def add_holder(self, holder: dict[str, Any], **extra: Any) -> None:
        """Preset a holder (e.g. one the CROUS knows under another identifier)."""
        with self.lock:
            self.holders[holder["identifier"]] = {
                "accountStatus": "ACTIF", "blockingStatus": "NON_BLOQUE", **holder, **extra}

    # --- dates --------------------------------------------------------------------------

    def show_date(self, text: str | None) -> str | None:
        """A stored API date, shown in one of the forms the real service uses."""
        if not text:
            return text
        when = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        form = next(self._formats)
        if form == 0:
            return text
        if form == 1:
            local = when.astimezone(PARIS)  # the real service answers in local time
            return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}" \
                + local.strftime("%z")[:3]
        if form == 2:
            return when.strftime("%Y-%m-%dT%H:%M:%SZ")
        return when.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")

    # --- request handling (under the lock) ----------------------------------------------

    def check_basic(self, header: str | None) -> str:
        if not header or not header.startswith("Basic "):
            raise _RefusedError(401, None, "Basic authentication required")
        try:
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise _RefusedError(401, None, "bad Basic header") from None
        if self.clients.get(client_id) != secret:
            raise _RefusedError(401, None, "bad client credentials")
        return client_id

    def issue_token(self) -> str:
        token = secrets.token_urlsafe(24)
        self.tokens[token] = time.monotonic() + self.token_ttl
        self.token_requests += 1
        return token

    def check_bearer(self, header: str | None) -> None:
        token = header[7:] if header and header.startswith("Bearer ") else None
        expiry = self.tokens.get(token or "")
        if expiry is None or expiry < time.monotonic():
            raise _RefusedError(401, None, "invalid or expired token")

    def handle_api(self, method: str, path: str, body: Any, uid: str | None
                   ) -> tuple[int, Any]:
        parts = [unquote(p) for p in path[len(PREFIX):].strip("/").split("/")]
        now = self.clock()
        if parts[0] == "rightholders" and len(parts) == 1 and method == "POST":
            holder = _fields(body, HOLDER_FIELDS)
            self._holder_dates(holder, now)
            if holder["identifier"] in self.holders:
                raise _RefusedError(422, "-11", "Client existant")
            self.holders[holder["identifier"]] = {**holder, "accountStatus": "NON_CONFIRME",
                                                  "blockingStatus": "NON_BLOQUE"}
            self.writes.append((method, path, body))
            return 201, self.show_holder(holder["identifier"])
        if parts[0] == "rightholders" and len(parts) == 2:
            identifier = parts[1]
            if method == "GET":
                return 200, self.show_holder(self._holder(identifier)["identifier"])
            if method == "PUT":
                current = self._holder(identifier)
                holder = _fields(body, HOLDER_FIELDS)
                if holder["identifier"] != identifier:
                    raise _RefusedError(400, None, "identifier differs from the path: use PATCH",
                                   "identifier")
                self._holder_dates(holder, now)
                current.update(holder)
                self.writes.append((method, path, body))
                return 200, self.show_holder(identifier)
            if method == "PATCH":
                change = _fields(body, RENAME_FIELDS)
                if change["currentIdentifier"] != identifier:
                    raise _RefusedError(400, None, "currentIdentifier differs from the path",
                                   "currentIdentifier")
                holder = self._holder(identifier)
                new = change["newIdentifier"]
                if new in self.holders:
                    raise _RefusedError(422, "-11", "Client existant")
                del self.holders[identifier]
                holder["identifier"] = new
                if change.get("email"):
                    holder["email"] = change["email"]
                self.holders[new] = holder
                for card in self.cards.values():
                    if card["holder"] == identifier:
                        card["holder"] = new
                self.writes.append((method, path, body))
                return 200, self.show_holder(new)
        if parts[0] == "rightholders" and len(parts) in (3, 4) and parts[2] == "smartcard":
            identifier = parts[1]
            self._holder(identifier)
            if len(parts) == 3 and method == "POST":
                card = _fields(body, CARD_FIELDS)
                if not API_DATE.match(card["zdcCreationDate"]):
                    raise _RefusedError(400, None, "bad date format", "zdcCreationDate")
                if card["idZdc"] in self.cards:
                    raise _RefusedError(422, "-30", "Carte déjà connue")
                self.cards[card["idZdc"]] = {**card, "holder": identifier, "cancelDate": None,
                                             "reason": None, "revalidationDate": None}
                self.writes.append((method, path, body))
                return 201, self.show_card(card["idZdc"])
            if len(parts) == 4:
                try:
                    id_zdc = int(parts[3])
                except ValueError:
                    raise _RefusedError(400, None, "idZdc is a number") from None
                card = self.cards.get(id_zdc)
                if card is None or card["holder"] != identifier:
                    raise _RefusedError(404, None, "Carte inconnue")
                if method == "GET":
                    return 200, self.show_card(id_zdc)
                if method == "PATCH":
                    if (uid or "") != card["uid"]:
                        raise _RefusedError(400, None, "the uid header does not name this card",
                                       "uid")
                    change = _fields(body, CARD_PATCH_FIELDS)
                    if change["reason"] == "" and change["cancelDate"] == "":
                        if not API_DATE.match(change["revalidationDate"]):
                            raise _RefusedError(400, None, "bad date format", "revalidationDate")
                        card.update(cancelDate=None, reason=None,
                                    revalidationDate=change["revalidationDate"])
                    else:
                        if change["reason"] not in REASONS:
                            raise _RefusedError(400, None, "unknown reason", "reason")
                        if not API_DATE.match(change["cancelDate"]):
                            raise _RefusedError(400, None, "bad date format", "cancelDate")
                        card.update(cancelDate=change["cancelDate"], reason=change["reason"])
                    self.writes.append((method, path, body))
                    return 200, self.show_card(id_zdc)
        if parts[0] == "crous" and len(parts) == 4 and parts[2] == "organization" \
                and method == "GET":
            rules = self.tariffs.get((parts[1], parts[3]))
            if rules is None:
                raise _RefusedError(404, None, "Organisation inconnue")
            return 200, rules
        raise _RefusedError(405 if parts[0] in ("rightholders", "crous") else 404, None,
                       f"no {method} {path}")

    def _holder(self, identifier: str) -> dict[str, Any]:
        holder = self.holders.get(identifier)
        if holder is None:
            raise _RefusedError(404, None, "Client inconnu")
        return holder

    def _holder_dates(self, holder: dict[str, Any], now: datetime) -> None:
        if not API_DATE.match(holder["dueDate"]):
            raise _RefusedError(400, None, "bad date format", "dueDate")
        birth = holder.get("simpleBirthDate")
        if birth is not None and not SIMPLE_DATE.match(birth):
            raise _RefusedError(400, None, "bad date format", "simpleBirthDate")
        due = datetime.strptime(holder["dueDate"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        if due < now:
            raise _RefusedError(422, "-8", "La date de fin de droits est dans le passé", "dueDate")

    def show_holder(self, identifier: str) -> dict[str, Any]:
        holder = dict(self.holders[identifier])
        holder["dueDate"] = self.show_date(holder.get("dueDate"))
        return holder

    def show_card(self, id_zdc: int) -> dict[str, Any]:
        card = {k: v for k, v in self.cards[id_zdc].items() if k != "holder"}
        for key in ("zdcCreationDate", "cancelDate", "revalidationDate"):
            card[key] = self.show_date(card.get(key))
        return card


def _fields(body: Any, spec: dict[str, tuple[Any, bool]]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _RefusedError(400, None, "a JSON object is expected")
    for name in body:
        if name not in spec:
            raise _RefusedError(400, None, f"unknown field {name}", name)
    for name, (types, required) in spec.items():
        if name not in body:
            if required:
                raise _RefusedError(400, None, f"missing field {name}", name)
            continue
        value = body[name]
        if isinstance(value, bool) or not isinstance(value, types):
            raise _RefusedError(400, None, f"bad type for {name}", name)
    return dict(body)


class _Handler(BaseHTTPRequestHandler):
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
                except _RefusedError as exc:
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
                raise _RefusedError(400, None, "grant_type=client_credentials expected")
            return 200, {"access_token": peer.issue_token(), "token_type": "bearer",
                         "expires_in": int(peer.token_ttl)}
        if path == "/v1/token" and method == "POST":
            peer.check_basic(self.headers.get("Authorization"))
            form = parse_qs(raw.decode("utf-8", "replace"))
            if form.get("grant_type") != ["client_credentials"] or \
                    form.get("env") not in (["PRD"], ["PPD"]):
                raise _RefusedError(400, None, "grant_type=client_credentials&env=PRD|PPD expected")
            extra["authorization"] = peer.issue_token()
            return 200, None
        if not path.startswith(PREFIX):
            raise _RefusedError(404, None, f"no {path}")
        peer.check_bearer(self.headers.get("Authorization"))
        body = None
        if method in ("POST", "PUT", "PATCH"):
            if self.headers.get_content_type() != "application/json":
                raise _RefusedError(415, None, "application/json expected")
            try:
                body = json.loads(raw)
            except ValueError:
                raise _RefusedError(400, None, "malformed JSON") from None
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


def main(argv: list[str] | None = None) -> int:
    """Serve a peer until interrupted (the demo's CROUS)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8791")
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--secret-file", type=Path, required=True)
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the peer listens on loopback only")
    secret = args.secret_file.read_text(encoding="utf-8").strip()
    peer = CrousPeer(clients={args.client_id: secret}, host=host, port=int(port))
    peer.tariffs = DEMO_TARIFFS
    peer.start()
    print(f"crous-peer: API CROUS on {peer.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        peer.close()
    return 0


# The demo CROUS's published grid (differs from config/tariffs/demo.yaml on purpose: the
# demo's `badged crous tariffs` shows a difference).
DEMO_TARIFFS: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("99", "0009999Z"): [
        {"statusCode": "psg", "indexMin": 0, "indexMax": 0, "idCompanyRate": 78, "idRate": 99},
        {"statusCode": "psg", "indexMin": 1, "indexMax": 474, "idCompanyRate": 78, "idRate": 1},
        {"statusCode": "psg", "indexMin": 475, "indexMax": None, "idCompanyRate": 78,
         "idRate": 2},
    ],
}

if __name__ == "__main__":
    sys.exit(main())
