"""The example tree is the seed's practice: what each example school does with its CROUS."""

from __future__ import annotations

from pathlib import Path

from badged.config.model import ExchangeKind, ReaderRole
from badged.config.tree import load_tree
from badged.doctor.pcsc import _readers

TREE = load_tree(Path(__file__).resolve().parents[2] / "config")


def test_emse_mails_every_file_to_both_crous_mailboxes() -> None:
    school = TREE.site("emse").school
    assert {ex.kind for ex in school.exchanges} == set(ExchangeKind)
    for ex in school.exchanges:
        assert ex.transport == "mail"
        assert sorted(ex.recipients) == ["monetique", "restauration"], ex.kind


def test_nantes_runs_its_year_through_the_api() -> None:
    site = TREE.site("imt-nantes")
    assert site.crous.api is not None
    assert {ex.kind for ex in site.school.exchanges} == set(ExchangeKind)
    assert all(ex.transport == "api" for ex in site.school.exchanges)


def test_douai_watches_its_sam_and_doctor_checks_it() -> None:
    site = TREE.site("imt-douai")
    [sam] = [r for r in site.school.readers if r.role is ReaderRole.SAM]
    # Doctor checks the SAM's reader: absent, it is a failure naming the rule.
    checks = {c.check: c for c in _readers(site, ["ACS ACR1252 1S CL Reader PICC 0"])}
    check = checks[f"reader {sam.name}"]
    assert check.status == "fail" and "sam: no reader matches" in check.detail
