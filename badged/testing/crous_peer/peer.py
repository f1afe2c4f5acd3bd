"""The peer's state and rules: holders, cards and tokens, what each API call does to them
(`handle_api`), faults waiting to be injected, and the HTTP server's life cycle."""

from __future__ import annotations

import base64
import itertools
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo

from .faults import Fault
from .schema import (
    CARD_FIELDS,
    CARD_PATCH_FIELDS,
    CLOSED,
    CSN,
    HOLDER_FIELDS,
    PREFIX,
    REASONS,
    RENAME_FIELDS,
    RefusedError,
    checked_date,
    checked_fields,
)
from .server import Handler

PARIS = ZoneInfo("Europe/Paris")


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
        self.card_uids: dict[str, int] = {}           # uid → idZdc of the cards added
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

        class PeerHandler(Handler):
            pass

        PeerHandler.peer = peer
        server = ThreadingHTTPServer((self.host, self.port), PeerHandler)
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
            raise RefusedError(401, None, "Basic authentication required")
        try:
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise RefusedError(401, None, "bad Basic header") from None
        if self.clients.get(client_id) != secret:
            raise RefusedError(401, None, "bad client credentials")
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
            raise RefusedError(401, None, "invalid or expired token")

    def handle_api(self, method: str, path: str, body: Any, uid: str | None
                   ) -> tuple[int, Any]:
        parts = [unquote(p) for p in path[len(PREFIX):].strip("/").split("/")]
        now = self.clock()
        if parts[0] == "rightholders" and len(parts) == 1 and method == "POST":
            holder = checked_fields(body, HOLDER_FIELDS)
            self._holder_dates(holder, now)
            if holder["identifier"] in self.holders:
                raise RefusedError(422, "-11", "Client existant")
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
                holder = checked_fields(body, HOLDER_FIELDS)
                if holder["identifier"] != identifier:
                    raise RefusedError(400, None, "identifier differs from the path: use PATCH",
                                       "identifier")
                self._holder_dates(holder, now)
                current.update(holder)
                self.writes.append((method, path, body))
                return 200, self.show_holder(identifier)
            if method == "PATCH":
                change = checked_fields(body, RENAME_FIELDS)
                if change["currentIdentifier"] != identifier:
                    raise RefusedError(400, None, "currentIdentifier differs from the path",
                                       "currentIdentifier")
                holder = self._holder(identifier)
                new = change["newIdentifier"]
                if new in self.holders:
                    raise RefusedError(422, "-11", "Client existant")
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
                card = checked_fields(body, CARD_FIELDS)
                checked_date(card["zdcCreationDate"], "zdcCreationDate")
                for name in ("uid", "rid"):
                    if not CSN.match(card[name]):
                        raise RefusedError(400, None, f"{name} is upper-case hexadecimal",
                                           name)
                if card["idZdc"] <= 0:
                    raise RefusedError(400, None, "idZdc is a positive number", "idZdc")
                if self.holders[identifier]["accountStatus"] in CLOSED:
                    # What the known client reads from this answer: the account is closed.
                    raise RefusedError(404, None, "Compte clôturé")
                if card["idZdc"] in self.cards or card["uid"] in self.card_uids:
                    raise RefusedError(422, "-30", "Carte déjà connue")  # a CSN is one card
                self.card_uids[card["uid"]] = card["idZdc"]
                self.cards[card["idZdc"]] = {**card, "holder": identifier, "cancelDate": None,
                                             "reason": None, "revalidationDate": None}
                self.writes.append((method, path, body))
                return 201, self.show_card(card["idZdc"])
            if len(parts) == 4:
                try:
                    id_zdc = int(parts[3])
                except ValueError:
                    raise RefusedError(400, None, "idZdc is a number") from None
                card = self.cards.get(id_zdc)
                if card is None or card["holder"] != identifier:
                    raise RefusedError(404, None, "Carte inconnue")
                if method == "GET":
                    return 200, self.show_card(id_zdc)
                if method == "PATCH":
                    if (uid or "") != card["uid"]:
                        raise RefusedError(400, None, "the uid header does not name this card",
                                           "uid")
                    change = checked_fields(body, CARD_PATCH_FIELDS)
                    if change["reason"] == "" and change["cancelDate"] == "":
                        checked_date(change["revalidationDate"], "revalidationDate")
                        card.update(cancelDate=None, reason=None,
                                    revalidationDate=change["revalidationDate"])
                    else:
                        if change["reason"] not in REASONS:
                            raise RefusedError(400, None, "unknown reason", "reason")
                        checked_date(change["cancelDate"], "cancelDate")
                        card.update(cancelDate=change["cancelDate"], reason=change["reason"])
                    self.writes.append((method, path, body))
                    return 200, self.show_card(id_zdc)
        if parts[0] == "closed-rightholders" and len(parts) == 2 and method == "DELETE":
            holder = self._holder(parts[1])
            if holder["accountStatus"] not in CLOSED:
                raise RefusedError(404, None, "Compte non clôturé")
            holder["accountStatus"] = "ACTIF"
            self.writes.append((method, path, None))
            return 204, None
        if parts[0] == "crous" and len(parts) == 4 and parts[2] == "organization" \
                and method == "GET":
            rules = self.tariffs.get((parts[1], parts[3]))
            if rules is None:
                raise RefusedError(404, None, "Organisation inconnue")
            return 200, rules
        raise RefusedError(405 if parts[0] in ("rightholders", "closed-rightholders", "crous")
                           else 404, None,
                           f"no {method} {path}")

    def _holder(self, identifier: str) -> dict[str, Any]:
        holder = self.holders.get(identifier)
        if holder is None:
            raise RefusedError(404, None, "Client inconnu")
        return holder

    def _holder_dates(self, holder: dict[str, Any], now: datetime) -> None:
        due = checked_date(holder["dueDate"], "dueDate")
        birth = holder.get("simpleBirthDate")
        if birth is not None:
            checked_date(birth, "simpleBirthDate", simple=True)
        if due < now:
            raise RefusedError(422, "-8", "La date de fin de droits est dans le passé", "dueDate")

    def show_holder(self, identifier: str) -> dict[str, Any]:
        holder = dict(self.holders[identifier])
        holder["dueDate"] = self.show_date(holder.get("dueDate"))
        return holder

    def show_card(self, id_zdc: int) -> dict[str, Any]:
        card = {k: v for k, v in self.cards[id_zdc].items() if k != "holder"}
        for key in ("zdcCreationDate", "cancelDate", "revalidationDate"):
            if key in card:  # a card preset without one is shown without it
                card[key] = self.show_date(card[key])
        return card
