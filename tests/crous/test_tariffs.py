"""Tariff rules: the published Lyon grid, defaults, and the CROUS-owned student rates."""

from __future__ import annotations

from pathlib import Path

import pytest

from badged.config.tree import load_tree
from badged.crous.tariffs import rate_for

REPO = Path(__file__).resolve().parents[2]
LYON = load_tree(REPO / "config").tariffs["crous-lyon"]


@pytest.mark.parametrize(("status", "index", "expected"), [
    ("psg", 0, (78, 99)), ("psg", 1, (78, 1)), ("psg", 474, (78, 1)), ("prs", 475, (78, 2)),
    ("hbg", 900, (78, 2)), ("stg", None, (78, 1)), ("ctr", 12, (78, 1)),
    ("psg", None, (78, 99)),  # index unknown: no ranged rule applies, the default does
    ("rtr", 300, (78, 99)),   # status without a rule
])
def test_staff_rules_and_default(status, index, expected) -> None:
    rate = rate_for(LYON, "staff", status, index)
    assert (rate.id_company_rate, rate.id_rate) == expected


def test_students_and_crous_owned_rates() -> None:
    assert (rate_for(LYON, "student").id_company_rate, rate_for(LYON, "student").id_rate) == (
        10, 1)
    assert rate_for(LYON, "student", crous_rate=98).id_rate == 98
    assert rate_for(LYON, "student", crous_rate=97).id_rate == 97
    assert rate_for(LYON, "student", crous_rate=2).id_rate == 1
