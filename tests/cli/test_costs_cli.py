"""`badged report costs`: per year, cards bought (what the COMUE is paid for), issued, lost,
replaced, and the saving against the direct price."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from badged.cli import main
from badged.enrolment.desk import Policy, enrol
from badged.store import cards, people
from badged.store.db import open_store

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def host(tmp_path: Path) -> Path:
    path = tmp_path / "badged.yaml"
    path.write_text(f"tree: {REPO / 'config'}\nschool: demo\nstate_dir: {tmp_path / 'state'}\n"
                    f"runtime_dir: {tmp_path / 'run'}\n")
    return path


def run(host: Path, *args: str) -> str:
    result = CliRunner().invoke(main, ["--host-config", str(host), *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_costs_are_per_card_bought_per_year(host: Path, tmp_path: Path) -> None:
    comue = yaml.safe_load((REPO / "config" / "comues" / "demo.yaml").read_text())
    unit, direct = Decimal(str(comue["unit_price_eur"])), Decimal(str(comue["direct_price_eur"]))
    run(host, "stock", "receive", "40", "--batch", "B1")
    conn = open_store(tmp_path / "state")
    # The first delivery was in 2025 (backdated); this year's: 10 more cards.
    conn.execute("UPDATE stock_moves SET at = '2025-06-01T08:00:00+00:00'")
    run(host, "stock", "receive", "10")
    policy = Policy(True, "disable_older", unit, direct)
    people.upsert(conn, people.Person(id="s1", last_name="Martin", first_name="Alex",
                                      category="student"))
    enrol(conn, "s1", "04000000000001", policy)
    cards.set_state(conn, "04000000000001", "active", "lost", "lost", "test", "DP")
    enrol(conn, "s1", "04000000000002", policy)
    this_year = int(conn.execute("SELECT max(substr(at, 1, 4)) FROM stock_moves").fetchone()[0])

    data = json.loads(run(host, "report", "costs", "--json"))
    by_year = {y["year"]: y for y in data["years"]}
    assert set(by_year) == set(range(2025, this_year + 1))
    cents = Decimal("0.01")
    assert by_year[2025] == {
        "year": 2025, "received": 40, "spend_eur": str((unit * 40).quantize(cents)),
        "issued": 0, "lost": 0, "replaced": 0,
        "direct_eur": str((direct * 40).quantize(cents)),
        "savings_eur": str(((direct - unit) * 40).quantize(cents))}
    now = by_year[this_year]
    assert (now["received"], now["issued"], now["lost"], now["replaced"]) == (10, 2, 1, 1)
    assert Decimal(now["spend_eur"]) == unit * 10  # not per card issued
    assert Decimal(now["savings_eur"]) == (direct - unit) * 10
    assert data["stock"] == 48

    one = json.loads(run(host, "report", "costs", "--year", "2025", "--json"))
    assert [y["year"] for y in one["years"]] == [2025]
    text = run(host, "report", "costs", "--year", str(this_year))
    assert f"{this_year}: 10 cards bought" in text
    assert "2 issued, 1 lost, 1 replaced" in text
    assert "saved" in text
