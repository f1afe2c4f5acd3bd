"""The API CROUS sync against the strict local peer (badged.testing.crous_peer)."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apikit import CLIENT_ID, SECRET, ApiSchool
from click.testing import CliRunner

from badged.cli import main
from badged.crous.api import parse_date
from badged.testing.crous_peer import CrousPeer, Fault

E1, E2, S1 = "04A1B2C3D4E5F6", "04A1B2C3D4E5F7", "04A1B2C3D4E5F8"


@pytest.fixture
def peer() -> Iterator[CrousPeer]:
    with CrousPeer(clients={CLIENT_ID: SECRET}) as p:
        yield p


@pytest.fixture
def school(tmp_path: Path, peer: CrousPeer) -> ApiSchool:
    return ApiSchool(tmp_path, peer)


def populated(school: ApiSchool) -> ApiSchool:
    school.student("E1")
    school.card("E1", E1, 36000001)
    school.student("E2", first_year=school.year - 1)
    school.card("E2", E2, 36000002)
    school.staff("S1")
    school.card("S1", S1, 36000003)
    return school


def cli(school: ApiSchool, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--host-config", str(school.host_file), *args])
    return result.exit_code, result.stdout, result.stderr


def test_first_sync_creates_holders_and_cards_and_a_second_makes_no_call(school, peer):
    populated(school)
    first = school.sync()
    assert first.outcome == "ok" and first.failed == 0 and first.pending == 0
    assert set(peer.holders) == {"E1", "E2", "S1"}
    assert {n: c["holder"] for n, c in peer.cards.items()} == {
        36000001: "E1", 36000002: "E2", 36000003: "S1"}
    assert peer.holders["S1"]["idCompanyRate"] == 78 and peer.holders["S1"]["idRate"] == 2
    assert peer.holders["E1"]["idCompanyRate"] == 10 and peer.holders["E1"]["idRate"] == 1
    assert peer.holders["E1"]["rneOrgCode"] == school.site.school.uai
    school.calls()
    tokens = peer.token_requests
    second = school.sync()
    assert second.calls == 0 and school.calls() == [] and peer.token_requests == tokens
    # The queue `card set-state` fills is drained: the enrolments are told.
    assert school.conn.execute("SELECT count(*) FROM card_state_changes "
                               "WHERE crous_sent_at IS NULL").fetchone()[0] == 0


def test_dry_run_prints_the_calls_and_makes_none(school, peer):
    populated(school)
    code, out, _ = cli(school, "crous", "sync", "--dry-run")
    assert code == 0, out
    assert "POST  /rightholders  (if not found: create E1 (primo_entrants)" in out
    assert "POST  /rightholders/S1/smartcard  (card " in out
    assert peer.requests == [] and peer.token_requests == 0
    code, out, _ = cli(school, "crous", "sync", "--json")
    assert code == 0 and json.loads(out)["done"] == 6
    code, out, _ = cli(school, "crous", "sync", "--dry-run", "--json")
    assert json.loads(out)["planned"] == []


def test_staff_name_change_is_told_a_students_is_not(school, peer):
    populated(school)
    school.sync()
    school.calls()
    school.conn.execute("UPDATE people SET last_name = 'Nouveau' WHERE id IN ('E1', 'S1')")
    report = school.sync()
    calls = school.calls()
    assert [c[:2] for c in calls] == [("GET", "/beforeizly/v1/rightholders/S1"),
                                      ("PUT", "/beforeizly/v1/rightholders/S1")]
    assert peer.holders["S1"]["lastName"] == "Nouveau"
    assert peer.holders["E1"]["lastName"] == "NomE1"
    assert report.done == 1 and school.sync().calls == 0


def test_student_update_keeps_what_the_crous_owns_and_never_shortens_due_date(school, peer):
    populated(school)
    school.sync()
    later = "2031-04-16T01:59:59.000+02"
    peer.holders["E2"].update(idRate=98, firstName="Zoé (CROUS)",
                              dueDate="2031-04-15T23:59:59.000Z")
    school.conn.execute("UPDATE people SET ine = 'INE-NEW', first_name = 'X' WHERE id = 'E2'")
    school.calls()
    school.sync()
    holder = peer.holders["E2"]
    assert holder["ine"] == "INE-NEW"
    assert holder["idRate"] == 98 and holder["firstName"] == "Zoé (CROUS)"
    assert parse_date(holder["dueDate"]) == parse_date(later)


@pytest.mark.parametrize("form", range(4))
def test_a_reenrolled_student_gets_the_new_years_due_date(school, peer, form):
    """The CROUS shows last year's dueDate in one of its forms: the update sends the new
    year's, in the API's own form (it used to send theirs back: refused, or never
    extended when shown in the API's form)."""
    populated(school)
    school.sync()
    school.student("E2", first_year=school.year - 1, academic_year=school.year + 1)
    peer._formats = itertools.repeat(form)
    report = school.sync(now=school.now + timedelta(days=366))
    assert report.failed == 0, school.errors()
    due = parse_date(peer.holders["E2"]["dueDate"])
    assert due is not None and (due.year, due.month) == (school.year + 2, 8)


def test_holder_found_under_another_identifier_is_renamed(tmp_path, peer):
    school = ApiSchool(tmp_path, peer, student_identifier="ine")
    school.student("E1")
    school.card("E1", E1, 36000001)
    peer.add_holder({"identifier": "E1", "firstName": "P", "lastName": "N",
                     "email": "e1@example.org", "dueDate": "2030-01-01T00:00:00.000Z",
                     "idCompanyRate": 10, "idRate": 1, "simpleBirthDate": "2005-03-14",
                     "ine": "INEE1", "rneOrgCode": school.site.school.uai})
    school.sync()
    calls = [c[:2] for c in school.calls()]
    assert ("PATCH", "/beforeizly/v1/rightholders/E1") in calls
    assert ("POST", "/beforeizly/v1/rightholders") not in calls
    assert set(peer.holders) == {"INEE1"} and peer.cards[36000001]["holder"] == "INEE1"


def test_lost_card_is_cancelled_with_dp_and_a_found_one_revalidated(school, peer):
    populated(school)
    school.sync()
    school.set_state(S1, "lost")
    school.calls()
    school.sync()
    [call] = school.calls()
    assert call == ("PATCH", "/beforeizly/v1/rightholders/S1/smartcard/36000003", 200)
    assert peer.cards[36000003]["reason"] == "DP" and peer.cards[36000003]["cancelDate"]
    assert peer.writes[-1][2]["reason"] == "DP"
    school.set_state(S1, "active")
    school.sync()
    assert peer.cards[36000003]["cancelDate"] is None
    assert peer.cards[36000003]["revalidationDate"]
    assert school.sync().calls == 0


@pytest.mark.parametrize(("state", "reason"), [("stolen", "DV"), ("broken", "CD"),
                                               ("expired", "HS"), ("destroyed", "HS")])
def test_each_card_state_has_its_cancel_reason(school, peer, state, reason):
    populated(school)
    school.sync()
    school.set_state(E1, state)
    school.sync()
    assert peer.cards[36000001]["reason"] == reason


def test_cancel_of_a_card_unknown_at_the_crous_is_done(school, peer):
    populated(school)
    school.sync()
    del peer.cards[36000001]
    school.set_state(E1, "stolen")
    report = school.sync()
    assert report.failed == 0 and school.errors() == {}
    assert school.sync().calls == 0


def test_a_leavers_past_due_date_is_clamped(school, peer):
    populated(school)
    school.sync()
    school.leave("S1", days_ago=40)
    now = datetime.now(UTC)
    school.sync(now=now)
    holder = peer.holders["S1"]
    assert holder["idRate"] == 99
    due = parse_date(holder["dueDate"])
    assert due is not None and abs(due - (now + timedelta(hours=3))) < timedelta(seconds=2)
    assert school.sync().calls == 0


ERRORS = [
    # (fault, operation, status, code, blocking)
    (Fault("POST", r"/rightholders$", status=423, code=None, times=None),
     "create-holder", 423, None, False),
    (Fault("POST", r"/rightholders$", status=406, code=None, times=None),
     "create-holder", 406, None, False),
    (Fault("GET", r"/rightholders/S1$", status=403, code=None, times=None),
     "get-holder", 403, None, True),
    (Fault("POST", r"/rightholders$", status=422, code="-9", times=None),
     "create-holder", 422, "-9", False),
    (Fault("POST", r"/rightholders$", status=422, code="-41", times=None),
     "create-holder", 422, "-41", False),
    (Fault("POST", r"/rightholders$", status=422, code="-42", times=None),
     "create-holder", 422, "-42", False),
    (Fault("POST", r"/rightholders$", status=422, code="-117", times=None),
     "create-holder", 422, "-117", False),
    (Fault("POST", r"/rightholders$", status=422, code="-8", times=None),
     "create-holder", 422, "-8", False),
    (Fault("POST", r"/rightholders$", status=400, code=None, times=None),
     "create-holder", 400, None, True),
    (Fault("POST", r"/rightholders$", status=503, code=None, times=None),
     "create-holder", 503, None, False),
]


@pytest.mark.parametrize(("fault", "op", "status", "code", "blocking"), ERRORS,
                         ids=[f"{e[2]}{e[3] or ''}" for e in ERRORS])
def test_every_error_lands_in_crous_errors_with_its_blocking_flag(
        school, peer, fault, op, status, code, blocking):
    school.staff("S1")
    school.card("S1", S1, 36000003)
    peer.inject(fault)
    report = school.sync()
    assert report.failed >= 1
    exit_code, out, _ = cli(school, "crous", "errors", "--json")
    assert exit_code == 0
    [error] = [e for e in json.loads(out) if e["key"] == "S1"]
    assert (error["operation"], error["status"], error["code"], error["blocking"]) == (
        op, status, code, blocking)
    assert error["tries"] == 1
    _, text, _ = cli(school, "crous", "errors")
    assert "person S1: " + op in text and ("BLOCKING" in text) == blocking
    # Non-blocking: tried again at the next run; blocking: not until S1 changes.
    school.calls()
    school.sync()
    again = [c for c in school.calls() if "/rightholders" in c[1]]
    assert bool(again) != blocking
    # Once the CROUS accepts, the error is gone and nothing is lost.
    peer.faults.clear()
    if blocking:
        school.conn.execute("UPDATE people SET email = 'new@example.org' WHERE id = 'S1'")
    school.sync()
    assert "S1" in peer.holders and 36000003 in peer.cards
    assert "S1" not in school.errors()


def test_406_still_adds_the_card_and_minus_31_on_a_card_is_not_blocking(school, peer):
    school.student("E1")
    school.card("E1", E1, 36000001)
    peer.add_holder({"identifier": "E1", "firstName": "P", "lastName": "N", "email": None,
                     "dueDate": "2030-01-01T00:00:00.000Z", "idCompanyRate": 10,
                     "idRate": 1, "simpleBirthDate": None, "ine": "X",
                     "rneOrgCode": "0000000A"})
    peer.inject(Fault("PUT", r"/rightholders/E1$", status=406, times=None))
    school.sync()
    assert 36000001 in peer.cards
    assert school.errors()["E1"].status == 406 and not school.errors()["E1"].blocking
    school.student("E2")
    school.card("E2", E2, 36000002)
    peer.inject(Fault("POST", r"/smartcard$", status=422, code="-31", times=None))
    school.sync()
    error = school.errors()[E2]
    assert (error.subject, error.code, error.blocking) == ("card", "-31", False)


def test_5xx_and_timeouts_are_retried_then_parked_and_nothing_is_lost(school, peer):
    populated(school)
    # A burst the retries absorb: 2 × 503 then fine (max_retries 2).
    peer.inject(Fault("GET", r"/rightholders/E1$", status=503, times=2, retry_after="0"))
    # Then a card whose creation times out at every try: parked after its look-up.
    peer.inject(Fault("POST", r"/rightholders/S1/smartcard$", kind="drop", times=None))
    report = school.sync()
    assert "E1" in peer.holders
    assert report.failed == 1 and 36000003 not in peer.cards
    error = school.errors()[S1]
    assert (error.operation, error.code, error.blocking) == ("add-card", "timeout", False)
    peer.faults.clear()
    school.sync()
    assert 36000003 in peer.cards and school.errors() == {}
    assert [w[1] for w in peer.writes].count("/beforeizly/v1/rightholders/S1/smartcard") == 1


def test_crous_down_aborts_the_run_and_keeps_everything_pending(school, peer):
    populated(school)
    for n in range(4, 10):
        school.staff(f"S{n}")
        school.card(f"S{n}", f"04A1B2C3D4E5{n:02d}", 36000000 + n)
    peer.inject(Fault("*", r"/rightholders", status=500, times=None))
    report = school.sync()
    assert report.aborted and report.pending == 5 + 5  # 5 holders and their cards left
    code, _, err = cli(school, "crous", "sync")
    assert code == 1 and "did not answer 5 calls in a row" in err
    peer.faults.clear()
    school.sync()
    assert len(peer.holders) == 9 and len(peer.cards) == 9


def test_a_token_expired_mid_run_is_renewed(school, peer):
    populated(school)
    peer.inject(Fault("*", r"/rightholders/E2$", kind="expire-tokens", times=1))
    report = school.sync()
    assert report.failed == 0 and set(peer.holders) == {"E1", "E2", "S1"}
    assert peer.token_requests == 2


def test_a_slow_answer_whose_write_landed_is_not_sent_twice(school, peer):
    school.staff("S1")
    school.card("S1", S1, 36000003)
    peer.inject(Fault("POST", r"/rightholders$", kind="slow", delay=1.0, times=1),
                Fault("POST", r"/smartcard$", kind="drop", after_write=True, times=1))
    report = school.sync()
    assert report.failed == 0, report.failures
    posts = [w for w in peer.writes if w[0] == "POST"]
    assert [w[1] for w in posts] == ["/beforeizly/v1/rightholders",
                                     "/beforeizly/v1/rightholders/S1/smartcard"]
    assert school.sync().calls == 0


def test_budget_leaves_the_rest_for_the_next_run(school, peer):
    populated(school)
    from badged.crous.api import CrousClient

    with CrousClient(school.site.crous.api, school.site.tree, budget=4) as client:
        report = school.sync(client=client)
    assert report.outcome.startswith("partial") and report.pending >= 1
    school.sync()
    assert len(peer.holders) == 3 and len(peer.cards) == 3


def test_card_without_a_csv_row_is_a_blocking_error(school, peer):
    school.staff("S1")
    school.card("S1", S1, 36000003, in_csv=False)
    school.sync()
    error = school.errors()[S1]
    assert error.blocking and "import-cards" in error.message


def test_secret_appears_in_no_log_error_or_config_show(school, peer, caplog):
    caplog.set_level(logging.DEBUG)
    populated(school)
    peer.clients[CLIENT_ID] = "another"
    code, out, err = cli(school, "crous", "sync")
    assert code == 1 and "refused client id 'demo-school'" in err
    peer.clients[CLIENT_ID] = SECRET
    peer.inject(Fault("POST", r"/rightholders$", status=400, times=None))
    cli(school, "crous", "sync")
    _, shown, _ = cli(school, "config", "show", "--json")
    _, errors, _ = cli(school, "crous", "errors", "--json")
    for text in (out, err, shown, errors, caplog.text):
        assert SECRET not in text
    assert "<secret: file crous-api.secret>" in shown


def test_exchange_plan_and_run_point_at_the_sync(school, peer):
    populated(school)
    code, out, _ = cli(school, "exchange", "plan", "personnels")
    assert "told to the API CROUS person by person" in out
    code, _, err = cli(school, "exchange", "run", "personnels")
    assert code == 1 and "goes by the API CROUS: run `badged crous sync`" in err


def test_tariffs_prints_the_differences_and_applies_nothing(school, peer):
    peer.tariffs[("99", school.site.school.uai)] = [
        {"statusCode": "PRS", "indexMin": 1, "indexMax": 474, "idCompanyRate": 78, "idRate": 1},
        {"statusCode": "psg", "indexMin": 0, "indexMax": 0, "idCompanyRate": 78, "idRate": 98},
    ]
    before = (school.tree / "tariffs" / "demo.yaml").read_text()
    code, out, err = cli(school, "crous", "tariffs")
    assert code == 3, out + err
    assert "psg index 0..0: CROUS 78 / 98, YAML" in out
    code, out, _ = cli(school, "crous", "tariffs", "--json")
    data = json.loads(out)
    assert data["crous_rules"] == 2 and data["differences"]
    assert (school.tree / "tariffs" / "demo.yaml").read_text() == before


def test_a_cancel_in_flight_at_a_crash_is_looked_up_not_sent_again(school, peer):
    populated(school)
    school.sync()
    school.set_state(S1, "lost")
    # A crash right after the CROUS took the cancel: the store says it was in flight.
    peer.cards[36000003].update(cancelDate="2026-12-07T10:00:00.000Z", reason="DP")
    school.conn.execute("UPDATE crous_api_cards SET pending_write = 'cancel-card' "
                        "WHERE csn = ?", (S1,))
    school.calls()
    school.sync()
    assert [c[0] for c in school.calls()] == ["GET"]
    assert not [w for w in peer.writes if w[0] == "PATCH"]
    assert school.sync().calls == 0


CLOSED_HOLDER = {"firstName": "P", "lastName": "N", "email": "x@example.org",
                 "dueDate": "2030-01-01T00:00:00.000Z", "idCompanyRate": 78, "idRate": 2,
                 "simpleBirthDate": "1980-01-02", "ine": None, "rneOrgCode": "0000000A"}


@pytest.mark.parametrize("status", ["CLOTURE", "CLOTURE_EN_COURS"])
def test_a_closed_account_found_is_reopened_before_its_card_is_added(school, peer, status):
    school.staff("S1")
    school.card("S1", S1, 36000003)
    peer.add_holder({"identifier": "S1", **CLOSED_HOLDER}, accountStatus=status)
    report = school.sync()
    assert report.failed == 0, school.errors()
    assert ("DELETE", "/beforeizly/v1/closed-rightholders/S1", None) in peer.writes
    assert peer.holders["S1"]["accountStatus"] == "ACTIF" and 36000003 in peer.cards
    assert school.sync().calls == 0


def test_an_account_closed_since_last_told_is_reopened_when_a_card_is_added(school, peer):
    """The holder is unchanged (no look-up): the card creation's 404 tells it is closed."""
    populated(school)
    school.sync()
    peer.holders["S1"]["accountStatus"] = "CLOTURE"
    new_card = "04A1B2C3D4E5F9"
    school.card("S1", new_card, 36000009)
    report = school.sync()
    assert report.failed == 0, school.errors()
    assert peer.holders["S1"]["accountStatus"] == "ACTIF"
    assert peer.cards[36000009]["holder"] == "S1"


def test_a_leavers_closed_account_stays_closed(school, peer):
    populated(school)
    school.sync()
    peer.holders["S1"]["accountStatus"] = "CLOTURE"
    school.leave("S1", days_ago=40)
    report = school.sync()
    assert report.failed == 0, school.errors()
    assert peer.holders["S1"]["accountStatus"] == "CLOTURE" and peer.holders["S1"]["idRate"] == 99
    assert not any(w[0] == "DELETE" for w in peer.writes)


def test_a_student_at_the_crous_stays_one_when_the_school_has_them_as_staff(school, peer):
    """idCompanyRate 10 stays 10, and what the CROUS owns of a student stays too."""
    school.staff("S1")
    school.card("S1", S1, 36000003)
    peer.add_holder({"identifier": "S1", "firstName": "Zoé", "lastName": "CVEC",
                     "email": "cvec@example.org", "dueDate": "2030-01-01T00:00:00.000Z",
                     "idCompanyRate": 10, "idRate": 98, "simpleBirthDate": "2001-02-03",
                     "ine": None, "rneOrgCode": "0000000A"})
    report = school.sync()
    assert report.failed == 0, school.errors()
    holder = peer.holders["S1"]
    assert (holder["idCompanyRate"], holder["idRate"]) == (10, 98)
    assert (holder["firstName"], holder["lastName"], holder["email"],
            holder["simpleBirthDate"]) == ("Zoé", "CVEC", "cvec@example.org", "2001-02-03")
    assert holder["rneOrgCode"] == school.site.school.uai
    assert 36000003 in peer.cards


def test_a_card_known_at_the_crous_whose_read_says_nothing_of_a_cancel_is_revalidated(
        school, peer):
    """A card read without cancelDate may be a cancelled card: revalidated, not assumed
    active (the card read's fields beyond the creation's are not documented)."""
    populated(school)
    school.sync()
    peer.cards[36000009] = {"idTransmitter": 65, "idMapping": 1, "idZdc": 36000009,
                            "zdcCreationDate": "2026-09-01T00:00:00.000Z", "pixSs": "03",
                            "pixNn": "0000", "appl": "D1", "uid": "04A1B2C3D4E5F9",
                            "rid": "04A1B2C3D4E5F9", "holder": "S1"}
    school.card("S1", "04A1B2C3D4E5F9", 36000009)
    school.calls()
    report = school.sync()
    assert report.failed == 0, school.errors()
    assert [c[0] for c in school.calls()] == ["GET", "PATCH"]
    assert peer.cards[36000009]["revalidationDate"]


@pytest.mark.parametrize(("status", "code"), [(422, "-11"), (400, "-11"), (409, None)])
def test_an_existing_holder_refused_on_creation_is_looked_up_and_updated(school, peer, status,
                                                                          code):
    """"Client existant" is code -11, whatever the status it comes with (or a 409)."""
    school.staff("S1")
    school.card("S1", S1, 36000003)
    peer.add_holder({"identifier": "S1", **CLOSED_HOLDER})
    peer.inject(Fault("GET", r"/rightholders/S1$", status=404, times=1),
                Fault("POST", r"/rightholders$", status=status, code=code,
                      message="Client existant", times=1))
    report = school.sync()
    assert report.failed == 0, school.errors()
    assert peer.holders["S1"]["idRate"] == 2 and 36000003 in peer.cards
