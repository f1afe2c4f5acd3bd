"""Enrolment at the desk through pcscd + the simulator (one-shot: no daemon running),
then the card's life, the stock and the costs, all through the CLI."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from badged.cards.simulator import SimulatedDesfire
from badged.cli import main
from badged.demo.runner import write_credentials
from badged.store import cards
from badged.store.db import open_store

REPO = Path(__file__).resolve().parents[2]
CARD = REPO / "demo/cards/crous-card.yaml"          # CROUS number 249760531028417 on card
PREENCODED = REPO / "demo/cards/nantes-preencoded.yaml"  # no number on the card


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pcsc, request):
    """The demo school; `@pytest.mark.profile(ID)` gives it another card profile."""
    tree = tmp_path / "config"
    shutil.copytree(REPO / "config", tree)
    marker = request.node.get_closest_marker("profile")
    if marker:
        school = tree / "schools/demo.yaml"
        school.write_text(school.read_text() + f"card_profile: {marker.args[0]}\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(write_credentials(tmp_path / "creds")))
    host = tmp_path / "badged.yaml"
    host.write_text(f"tree: {tree}\nschool: demo\nstate_dir: state\n"
                    "runtime_dir: run\n")
    monkeypatch.setenv("BADGED_HOST_CONFIG", str(host))
    return tmp_path


def badged(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout, result.stderr


def test_enrol_then_life_cycle_stock_and_costs(site: Path, insert_card, pcsc) -> None:
    assert badged("person", "add", "s1", "--last-name", "Martin", "--first-name", "Alex",
                  "--category", "student")[0] == 0
    assert badged("stock", "receive", "50", "--batch", "UDL-2026-01")[0] == 0
    insert_card(SimulatedDesfire.from_file(CARD), reader=0)
    code, out, err = badged("enrol", "--person", "s1", "--timeout", "5", "--json")
    assert code == 0, err
    assert "reading the enrolment reader directly" in err
    done = json.loads(out)
    assert (done["csn"], done["crous_number"], done["crous_number_from"]) == (
        "04112233445566", 249760531028417, "card")
    assert done["stock_left"] == 49
    # The card's life: lost, queued for the CROUS with reason DP.
    code, out, _ = badged("card", "set-state", "04112233445566", "lost", "--reason", "bus")
    assert (code, out) == (0, "card 04112233445566 is now lost (CROUS cancel reason DP "
                              "queued)\n")
    code, _, err = badged("card", "set-state", "04112233445566", "broken")
    assert code == 1 and "it cannot become broken" in err
    shown = json.loads(badged("card", "show", "--person", "s1", "--json")[1])
    assert [h["crous_reason"] for h in shown[0]["history"]] == [None, "DP"]
    assert all(h["crous_sent_at"] is None for h in shown[0]["history"])
    # The COMUE is paid per card bought: the 50 received, not the one issued.
    (year,) = json.loads(badged("report", "costs", "--json")[1])["years"]
    assert (year["received"], year["issued"], year["lost"], year["spend_eur"],
            year["savings_eur"]) == (50, 1, 1, "15.00", "135.00")


@pytest.mark.profile("nantes-preencoded")
def test_number_from_the_crous_csv_and_refusals(site: Path, insert_card, tmp_path) -> None:
    csv = tmp_path / "crous.csv"
    csv.write_text("PIX.SS;PIX.NN;AAPL;NUM_PROTOCOLAIRE;NUM_APPLICATIF;NFO;CNOUS;CROUS;"
                   "EMETTEUR;MAPPING;NUM_CARTE;DATE_CREATION\n"
                   "03;0000;D1;0471928A083C80;0471928A083C80;;;;65;1;36882379;01/09/2026\n")
    assert badged("crous", "import-cards", str(csv))[0] == 0
    for pid in ("p1", "p2"):
        badged("person", "add", pid, "--last-name", "Doe", "--first-name", "J",
               "--category", "staff")
    code, _, err = badged("enrol", "--person", "nobody", "--timeout", "1")
    assert code == 1 and "unknown person 'nobody'" in err
    insert_card(SimulatedDesfire.from_file(PREENCODED), reader=0)
    code, out, err = badged("enrol", "--person", "p1", "--timeout", "5", "--json")
    assert code == 0, err
    done = json.loads(out)
    assert (done["crous_number"], done["crous_number_from"]) == (36882379, "csv")
    code, _, err = badged("enrol", "--person", "p2", "--timeout", "5")
    assert code == 1 and "refused: card 0471928A083C80 is already linked to p1" in err
    conn = open_store(site / "state")
    assert cards.get(conn, "0471928A083C80").person_id == "p1"
    assert os.environ["BADGED_HOST_CONFIG"]
