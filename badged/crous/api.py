"""The API CROUS client: tokens, timeouts, retries with backoff, a request budget.

One `CrousClient` per run, on one `httpx.Client` (connections reused). What the API does and
how each answer is handled is described in docs/crous-api.md; this module only talks HTTP:

- tokens: the current OAuth2 client-credentials flow or the legacy one, cached until they
  expire, fetched again once when a call answers 401/403;
- retries with exponential backoff and full jitter on 5xx, 429 (Retry-After honoured) and
  network errors. A write (POST, PATCH) whose answer was lost after it was sent (read
  timeout, dropped connection) is never sent again blindly: `AmbiguousWrite` tells the
  caller to look the object up first;
- a per-run budget of requests (`BudgetExhausted` once spent: the rest waits for next run).

The client secret is read from its reference when the first token is needed and lives only
in the Authorization header of token requests: no log line, exception or repr shows it.
"""

from __future__ import annotations

import base64
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from ..config.model import CrousApi, TokenFlow
from ..config.secrets import read_secret

log = logging.getLogger(__name__)
# httpx logs every request at INFO: a sync of 10 000 people would flood the journal.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

PREFIX = "/beforeizly/v1"
TOKEN_MARGIN_SECONDS = 60       # renew a token this long before it expires
LEGACY_TOKEN_SECONDS = 1800     # the legacy flow says nothing of expiry: assume 30 min
DEFAULT_TOKEN_SECONDS = 3600
RETRY_AFTER_CAP_SECONDS = 120.0
BACKOFF_CAP_SECONDS = 60.0
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
SAFE_METHODS = frozenset({"GET", "PUT", "DELETE"})  # sending them twice changes nothing


# --- errors ---------------------------------------------------------------------------------

class ApiError(Exception):
    """The API CROUS cannot be used for this run (never carries a secret)."""


class AuthError(ApiError):
    """The token endpoint refused our credentials, or a token is refused right after issue."""


class BudgetExhausted(ApiError):  # noqa: N818 (a state, not a failure)
    """The run's request budget is spent: what is left waits for the next run."""


class TransientError(ApiError):
    """No answer after every retry (network error or timeout); `code` says which."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class AmbiguousWrite(TransientError):  # noqa: N818
    """A write was sent but its answer lost: it may have landed. Look it up first."""


# --- answers and dates ----------------------------------------------------------------------

@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, parsed JSON body (or None) and the CROUS error, if any."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error(self) -> dict[str, Any]:
        errors = self.body.get("errors") if isinstance(self.body, dict) else None
        return errors[0] if isinstance(errors, list) and errors and isinstance(
            errors[0], dict) else {}

    @property
    def code(self) -> str | None:
        code = self.error.get("code")
        return None if code is None else str(code)

    @property
    def message(self) -> str:
        message = self.error.get("message")
        return str(message) if message else f"HTTP {self.status}"


def format_date(when: datetime) -> str:
    """The API's date form: `yyyy-MM-dd'T'HH:mm:ss.SSS'Z'`, in UTC."""
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


_DATE = re.compile(r"(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d+))?)?)?"
                   r"\s*(Z|[+-]\d\d(?::?\d\d)?)?$")


def parse_date(text: object) -> datetime | None:
    """A date as the API sends it back, leniently: with or without time, milliseconds or
    offset (`2031-04-16T01:59:59.000+02`, `…Z`, `…+02:00`, `2031-04-16`); naive is UTC.
    A JSON number is epoch milliseconds (a Java date's default form); anything else that
    cannot be read is a ValueError, never another exception."""
    if text is None or text == "":
        return None
    if isinstance(text, int | float) and not isinstance(text, bool):
        try:
            return datetime.fromtimestamp(text / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"unreadable date {text!r}") from None
    if not isinstance(text, str):
        raise ValueError(f"unreadable date {text!r}")
    m = _DATE.match(text.strip())
    if not m:
        raise ValueError(f"unreadable date {text!r}")
    year, month, day, hour, minute, second, fraction, offset = m.groups()
    tz: timezone = UTC
    if offset and offset != "Z":
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0)))
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    return datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                    int(second or 0), micro, tzinfo=tz).astimezone(UTC)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


# --- the client -----------------------------------------------------------------------------

RequestHook = Callable[[str, "int | str"], None]


class CrousClient:
    """The API CROUS of one CROUS, for one run. Use as a context manager (closes the pool).

    `on_request(op, code)` is told of every HTTP request (code: the status, or "timeout" /
    "network"); `sleep` and `rng` make backoff testable; `budget` overrides the config's.
    """

    def __init__(self, api: CrousApi, base_dir: Path, *, on_request: RequestHook | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: Callable[[], float] = random.random, budget: int | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.api = api
        self.base_dir = base_dir
        self.on_request = on_request
        self.sleep = sleep
        self.rng = rng
        self.budget = api.request_budget if budget is None else budget
        self.calls = 0
        self._token: str | None = None
        self._token_expires = 0.0
        timeout = httpx.Timeout(api.read_timeout_seconds, connect=api.connect_timeout_seconds)
        self.http = httpx.Client(base_url=api.base_url.rstrip("/"), timeout=timeout,
                                 transport=transport, follow_redirects=False,
                                 headers={"Accept": "application/json"})

    def __enter__(self) -> CrousClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def __repr__(self) -> str:
        return f"CrousClient({self.api.base_url}, client_id={self.api.client_id})"

    # --- tokens -------------------------------------------------------------------------

    def _basic(self) -> str:
        secret = read_secret(self.api.client_secret, self.base_dir)
        raw = self.api.client_id.encode() + b":" + secret
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def token(self, *, renew: bool = False) -> str:
        """A valid bearer token: the cached one, or a new one from the token endpoint."""
        if not renew and self._token and time.monotonic() < self._token_expires:
            return self._token
        self._token = None
        headers = {"Authorization": self._basic()}
        if self.api.token_flow is TokenFlow.OAUTH2:
            assert self.api.token_url is not None  # config rule
            answer, response = self._send("token", "POST", self.api.token_url,
                                          params={"grant_type": "client_credentials"},
                                          headers=headers, safe=True)
            token = answer.body.get("access_token") if isinstance(answer.body, dict) else None
            lifetime = DEFAULT_TOKEN_SECONDS
            if isinstance(answer.body, dict) and isinstance(answer.body.get("expires_in"),
                                                            int | float):
                lifetime = float(answer.body["expires_in"])
        else:
            answer, response = self._send(
                "token", "POST", f"{self.api.base_url.rstrip('/')}/v1/token",
                data={"grant_type": "client_credentials", "env": self.api.legacy_env},
                headers=headers, safe=True)
            token = response.headers.get("authorization") if response is not None else None
            if token and token.lower().startswith("bearer "):
                token = token[7:]
            lifetime = LEGACY_TOKEN_SECONDS
        if answer.status in (400, 401, 403):
            raise AuthError(f"the API CROUS token endpoint refused client id "
                            f"{self.api.client_id!r} (HTTP {answer.status}): check the client "
                            "id and the client secret file")
        if not answer.ok or not token:
            raise TransientError(f"no token from the API CROUS (HTTP {answer.status})",
                                 str(answer.status))
        self._token = str(token)
        self._token_expires = time.monotonic() + max(0.0, lifetime - TOKEN_MARGIN_SECONDS)
        return self._token

    # --- calls --------------------------------------------------------------------------

    def call(self, op: str, method: str, path: str, *, json: Any = None,
             headers: dict[str, str] | None = None) -> Answer:
        """One API call with a bearer token; on 401/403 the token is renewed once.

        Returns every HTTP answer (errors included) for the caller to judge; raises
        BudgetExhausted, AuthError, TransientError (retries spent) or AmbiguousWrite.
        """
        safe = method in SAFE_METHODS
        renewed = False
        while True:
            token = self.token()
            answer, _ = self._send(op, method, PREFIX + path, json=json, safe=safe,
                                   headers={**(headers or {}), "Authorization": f"Bearer {token}"})
            if answer.status in (401, 403) and not renewed:
                renewed = True
                self.token(renew=True)
                continue
            if answer.status == 401:
                raise AuthError(f"the API CROUS refuses a fresh token ({op}): check the "
                                "client's rights with the CROUS")
            return answer

    def _send(self, op: str, method: str, url: str, *, safe: bool, **kwargs: Any
              ) -> tuple[Answer, httpx.Response | None]:
        attempt = 0
        while True:
            if self.calls >= self.budget:
                raise BudgetExhausted(f"request budget of {self.budget} spent")
            self.calls += 1
            delay: float | None = None
            try:
                response = self.http.request(method, url, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                failure, sent = _failure(exc), False
            except (httpx.TimeoutException, httpx.NetworkError,
                    httpx.RemoteProtocolError) as exc:
                failure, sent = _failure(exc), True
            else:
                self._count(op, response.status_code)
                answer = _answer(response)
                if response.status_code not in RETRIED_STATUSES or attempt >= \
                        self.api.max_retries:
                    return answer, response
                delay = _retry_after(response.headers.get("retry-after"))
                log.info("API CROUS %s: HTTP %d, retrying", op, response.status_code)
                failure = None
            if failure is not None:
                code, text = failure
                self._count(op, code)
                if sent and not safe:
                    raise AmbiguousWrite(f"{op}: {text} after the request was sent: it may "
                                         "have landed", code)
                if attempt >= self.api.max_retries:
                    raise TransientError(f"{op}: {text} ({attempt + 1} tries)", code)
                log.info("API CROUS %s: %s, retrying", op, text)
            if delay is None:
                cap = min(BACKOFF_CAP_SECONDS, self.api.backoff_seconds * 2 ** attempt)
                delay = self.rng() * cap
            self.sleep(min(delay, RETRY_AFTER_CAP_SECONDS))
            attempt += 1

    def _count(self, op: str, code: int | str) -> None:
        if self.on_request is not None:
            self.on_request(op, code)

    # --- the operations -----------------------------------------------------------------

    def get_holder(self, identifier: str) -> Answer:
        return self.call("get-holder", "GET", f"/rightholders/{_seg(identifier)}")

    def create_holder(self, body: dict[str, Any]) -> Answer:
        return self.call("create-holder", "POST", "/rightholders", json=body)

    def update_holder(self, identifier: str, body: dict[str, Any]) -> Answer:
        return self.call("update-holder", "PUT", f"/rightholders/{_seg(identifier)}", json=body)

    def rename_holder(self, current: str, new: str, email: str | None) -> Answer:
        return self.call("rename-holder", "PATCH", f"/rightholders/{_seg(current)}",
                         json={"currentIdentifier": current, "email": email,
                               "newIdentifier": new})

    def reopen_holder(self, identifier: str) -> Answer:
        """Re-open a closed account (accountStatus CLOTURE or CLOTURE_EN_COURS)."""
        return self.call("reopen-holder", "DELETE", f"/closed-rightholders/{_seg(identifier)}")

    def get_card(self, identifier: str, id_zdc: int) -> Answer:
        return self.call("get-card", "GET",
                         f"/rightholders/{_seg(identifier)}/smartcard/{id_zdc}")

    def add_card(self, identifier: str, body: dict[str, Any]) -> Answer:
        return self.call("add-card", "POST", f"/rightholders/{_seg(identifier)}/smartcard",
                         json=body)

    def patch_card(self, op: str, identifier: str, id_zdc: int, csn: str,
                   body: dict[str, Any]) -> Answer:
        return self.call(op, "PATCH", f"/rightholders/{_seg(identifier)}/smartcard/{id_zdc}",
                         json=body, headers={"uid": csn.upper()})

    def tariff_rules(self, crous_number: str, rne: str) -> Answer:
        return self.call("tariffs", "GET",
                         f"/crous/{_seg(crous_number)}/organization/{_seg(rne)}")


def _seg(value: str) -> str:
    return quote(str(value), safe="")


def _answer(response: httpx.Response) -> Answer:
    body: Any = None
    if response.content:
        try:
            body = response.json()
        except ValueError:
            body = None
    return Answer(response.status_code, body, dict(response.headers))


def _failure(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout", f"timed out ({type(exc).__name__})"
    return "network", f"network error ({type(exc).__name__})"


def check_token(api: CrousApi, base_dir: Path, *,
                transport: httpx.BaseTransport | None = None) -> str:
    """Fetch one token and nothing else (for `badged doctor`): a one-line verdict, or raises
    ApiError / SecretError with a message that never shows the secret."""
    with CrousClient(api, base_dir, transport=transport, budget=api.max_retries + 1) as client:
        started = time.monotonic()
        client.token()
        return (f"API CROUS token obtained for client id {api.client_id!r} "
                f"({api.token_flow.value} flow, {time.monotonic() - started:.2f} s)")
