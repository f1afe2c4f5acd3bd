"""The API CROUS client against the strict local peer: tokens, retries, budget, dates."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from badged.config.errors import SecretError
from badged.config.model import CrousApi
from badged.crous.api import (
    AmbiguousWrite,
    AuthError,
    BudgetExhausted,
    CrousClient,
    TransientError,
    check_token,
    format_date,
    parse_date,
)
from badged.testing.crous_peer import CrousPeer, Fault

SECRET = "client-secret-value-1234"


@pytest.fixture
def peer() -> Iterator[CrousPeer]:
    with CrousPeer(clients={"school": SECRET}) as p:
        yield p


@pytest.fixture
def secret_dir(tmp_path: Path) -> Path:
    fd = os.open(tmp_path / "secret", os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(SECRET + "\n")
    return tmp_path


def api(peer: CrousPeer, **kw) -> CrousApi:
    return CrousApi(**{"base_url": peer.base_url, "token_url": peer.token_url,
                       "client_id": "school", "client_secret": {"file": "secret"},
                       "read_timeout_seconds": 0.5, "connect_timeout_seconds": 0.5,
                       "max_retries": 3, "backoff_seconds": 2.0, **kw})


def client(peer, secret_dir, sleeps=None, **kw) -> CrousClient:
    sleeps = sleeps if sleeps is not None else []
    budget = kw.pop("budget", None)
    return CrousClient(api(peer, **kw), secret_dir, sleep=sleeps.append, rng=lambda: 0.5,
                       budget=budget)


def test_oauth2_token_is_cached_and_renewed_once_on_401(peer, secret_dir):
    with client(peer, secret_dir) as c:
        assert c.get_holder("X").status == 404
        assert c.get_holder("Y").status == 404
        assert peer.token_requests == 1
        peer.expire_tokens()
        assert c.get_holder("Z").status == 404
        assert peer.token_requests == 2


def test_legacy_token_flow(peer, secret_dir):
    with client(peer, secret_dir, token_flow="legacy", token_url=None,
                legacy_env="PPD") as c:
        assert c.get_holder("X").status == 404
    assert peer.token_requests == 1
    assert ("POST", "/v1/token", 200) in peer.requests


def test_a_token_refused_twice_is_an_auth_error_without_the_secret(peer, secret_dir):
    peer.clients["school"] = "rotated"
    with client(peer, secret_dir) as c, pytest.raises(AuthError) as exc:
        c.get_holder("X")
    assert SECRET not in str(exc.value) and "'school'" in str(exc.value)
    assert SECRET not in repr(c)


def test_check_token_fetches_a_token_and_nothing_else(peer, secret_dir):
    verdict = check_token(api(peer), secret_dir)
    assert "token obtained for client id 'school'" in verdict
    assert peer.token_requests == 1 and peer.api_requests() == []
    with pytest.raises(SecretError):
        check_token(api(peer, client_secret={"file": "missing"}), secret_dir)


def test_5xx_retried_with_exponential_backoff_and_jitter(peer, secret_dir):
    sleeps: list[float] = []
    peer.inject(Fault("GET", r"/rightholders/X$", status=502, times=3))
    with client(peer, secret_dir, sleeps) as c:
        assert c.get_holder("X").status == 404
    assert sleeps == [1.0, 2.0, 4.0]  # rng 0.5 × 2 s × 2^attempt


def test_429_honours_retry_after(peer, secret_dir):
    sleeps: list[float] = []
    peer.inject(Fault("GET", r"/rightholders/X$", status=429, times=1, retry_after="7"))
    with client(peer, secret_dir, sleeps) as c:
        assert c.get_holder("X").status == 404
    assert sleeps == [7.0]


def test_retries_spent_return_the_last_answer(peer, secret_dir):
    peer.inject(Fault("GET", r"/rightholders/X$", status=500, times=None))
    with client(peer, secret_dir, max_retries=1) as c:
        answer = c.get_holder("X")
    assert answer.status == 500 and answer.message == "Erreur"


def test_a_read_timeout_is_retried_for_a_read_and_ambiguous_for_a_write(peer, secret_dir):
    peer.inject(Fault("GET", r"/rightholders/X$", kind="slow", delay=0.8, times=1))
    with client(peer, secret_dir) as c:
        assert c.get_holder("X").status == 404
        peer.inject(Fault("POST", r"/rightholders$", kind="drop", times=1))
        with pytest.raises(AmbiguousWrite):
            c.create_holder({"identifier": "X"})


def test_connection_refused_is_retried_then_transient(secret_dir, peer):
    port = peer.port
    peer.close()
    cfg = api(peer, base_url=f"http://127.0.0.1:{port}",
              token_url=f"http://127.0.0.1:{port}/api/oauth/token", max_retries=2)
    sleeps: list[float] = []
    with CrousClient(cfg, secret_dir, sleep=sleeps.append, rng=lambda: 1.0) as c, \
            pytest.raises(TransientError) as exc:
        c.token()
    assert exc.value.code == "network" and len(sleeps) == 2 and c.calls == 3


def test_request_budget(peer, secret_dir):
    with client(peer, secret_dir, budget=3) as c:
        c.get_holder("A")
        c.get_holder("B")
        with pytest.raises(BudgetExhausted):
            c.get_holder("C")
    assert c.calls == 3


def test_every_request_is_counted_for_the_metrics(peer, secret_dir):
    seen: list[tuple[str, object]] = []
    peer.inject(Fault("GET", r"/rightholders/X$", status=503, times=1))
    with CrousClient(api(peer), secret_dir, on_request=lambda op, code: seen.append((op, code)),
                     sleep=lambda s: None) as c:
        c.get_holder("X")
    assert seen == [("token", 200), ("get-holder", 503), ("get-holder", 404)]


@pytest.mark.parametrize(("text", "expected"), [
    ("2031-04-16T01:59:59.000+02", datetime(2031, 4, 15, 23, 59, 59, tzinfo=UTC)),
    ("2031-04-16T01:59:59.000+02:00", datetime(2031, 4, 15, 23, 59, 59, tzinfo=UTC)),
    ("2031-04-15T23:59:59Z", datetime(2031, 4, 15, 23, 59, 59, tzinfo=UTC)),
    ("2031-04-15T23:59:59.5", datetime(2031, 4, 15, 23, 59, 59, 500000, tzinfo=UTC)),
    ("2031-04-15", datetime(2031, 4, 15, tzinfo=UTC)),
    ("2031-04-15 23:59", datetime(2031, 4, 15, 23, 59, tzinfo=UTC)),
    (1934063999000, datetime(2031, 4, 15, 23, 59, 59, tzinfo=UTC)),  # epoch milliseconds
    (None, None), ("", None),
])
def test_dates_read_back_leniently(text, expected):
    assert parse_date(text) == expected


@pytest.mark.parametrize("value", ["16/04/2031", True, [2031, 4, 16], {"y": 2031}, 1e30])
def test_an_unreadable_date_is_a_value_error(value):
    """What the CROUS answers is not ours: a shape no one foresaw must not crash a run."""
    with pytest.raises(ValueError):
        parse_date(value)


def test_dates_sent_in_the_api_form():
    when = datetime(2031, 4, 16, 1, 59, 59, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert format_date(when) == "2031-04-15T23:59:59.123Z"
    with pytest.raises(ValueError):
        parse_date("16/04/2031")
