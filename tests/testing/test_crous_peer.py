"""The local API CROUS refuses what the real one refuses (docs/crous-api.md): one request per
file in tests/fixtures/crous-api/, each with the status and the field of its refusal.

The client is tested against this peer; a peer laxer than the CROUS would let a client
defect through, so its strictness is tested on its own, with raw HTTP requests.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from badged.testing.crous_peer import CrousPeer

FIXTURES = Path(__file__).parents[1] / "fixtures" / "crous-api"
CASES = sorted(FIXTURES.glob("*.json"))
BASIC = "Basic " + base64.b64encode(b"school:secret").decode()
HOLDER = {"identifier": "H1", "firstName": "P", "lastName": "N", "email": "h1@example.org",
          "dueDate": "2099-08-31T21:59:59.000Z", "idCompanyRate": 10, "idRate": 1,
          "simpleBirthDate": "2005-03-14", "ine": "INEH1", "rneOrgCode": "0009999Z"}
CARD = {"idTransmitter": 65, "idMapping": 1, "idZdc": 36000001,
        "zdcCreationDate": "2024-08-31T22:00:00.000Z", "pixSs": "03", "pixNn": "0000",
        "appl": "D1", "uid": "04A1B2C3D4E5F6", "rid": "04A1B2C3D4E5F6"}


@pytest.fixture(scope="module")
def peer() -> Iterator[CrousPeer]:
    with CrousPeer(clients={"school": "secret"}) as p:
        yield p


@pytest.fixture
def http(peer: CrousPeer) -> Iterator[httpx.Client]:
    """A client with a fresh token; the peer holds holder H1 with card 36000001."""
    with peer.lock:
        peer.holders.clear()
        peer.cards.clear()
        peer.card_uids.clear()
    with httpx.Client(base_url=peer.base_url + "/beforeizly/v1") as client:
        token = httpx.post(peer.token_url, params={"grant_type": "client_credentials"},
                           headers={"Authorization": BASIC}).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        assert client.post("/rightholders", json=HOLDER).status_code == 201
        assert client.post("/rightholders/H1/smartcard", json=CARD).status_code == 201
        yield client


def send(http: httpx.Client, method: str, path: str, body: Any = None,
         headers: dict[str, str] | None = None) -> httpx.Response:
    if isinstance(body, str):
        return http.request(method, path, content=body.encode(), headers=headers)
    return http.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_a_bad_request_is_refused_with_the_crous_error_body(http, peer, case):
    spec = json.loads(case.read_text(encoding="utf-8"))
    writes = len(peer.writes)
    answer = send(http, spec["method"], spec["path"], spec["body"], spec["headers"])
    assert answer.status_code == spec["status"], (spec["why"], answer.text)
    [error] = answer.json()["errors"]
    assert set(error) == {"code", "message", "field"} and error["message"]
    assert error["field"] == spec["field"], spec["why"]
    assert len(peer.writes) == writes  # nothing applied


def test_the_good_requests_of_the_cases_are_accepted(http, peer):
    """Each case is a good request with one thing wrong: the good one passes."""
    holder = {**HOLDER, "identifier": "H2", "ine": "INEH2", "firstName": "Zoé"}
    assert send(http, "POST", "/rightholders", holder).status_code == 201
    card = {**CARD, "idZdc": 36000002, "uid": "04A1B2C3D4E5F7", "rid": "04A1B2C3D4E5F7"}
    assert send(http, "POST", "/rightholders/H2/smartcard", card).status_code == 201
    cancel = {"revalidationDate": "", "cancelDate": "2031-01-01T00:00:00.000Z", "reason": "DP"}
    assert send(http, "PATCH", "/rightholders/H1/smartcard/36000001", cancel,
                {"uid": "04A1B2C3D4E5F6"}).status_code == 200
    assert peer.holders["H2"]["firstName"] == "Zoé"


def test_a_closed_account_takes_no_card_until_reopened(http, peer):
    """The known client reads a 404 on a card creation as "the account is closed"; DELETE
    /closed-rightholders/{identifier} re-opens it."""
    peer.holders["H1"]["accountStatus"] = "CLOTURE"
    card = {**CARD, "idZdc": 36000002, "uid": "04A1B2C3D4E5F7", "rid": "04A1B2C3D4E5F7"}
    assert send(http, "POST", "/rightholders/H1/smartcard", card).status_code == 404
    assert http.get("/rightholders/H1").json()["accountStatus"] == "CLOTURE"
    assert http.delete("/closed-rightholders/H1").status_code == 204
    assert http.get("/rightholders/H1").json()["accountStatus"] == "ACTIF"
    assert send(http, "POST", "/rightholders/H1/smartcard", card).status_code == 201
    assert http.delete("/closed-rightholders/H1").status_code == 404
    assert http.delete("/closed-rightholders/NOBODY").status_code == 404


def test_legacy_token_wants_a_form_body(peer):
    url = peer.base_url + "/v1/token"
    form = "grant_type=client_credentials&env=PRD"
    as_json = httpx.post(url, json={"grant_type": "client_credentials", "env": "PRD"},
                         headers={"Authorization": BASIC})
    assert as_json.status_code == 415
    good = httpx.post(url, content=form, headers={
        "Authorization": BASIC, "Content-Type": "application/x-www-form-urlencoded"})
    assert good.status_code == 200 and good.headers["authorization"]
