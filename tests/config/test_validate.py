"""`badged config validate`: the exact error lines for every bad-input fixture."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from badged.cli import main

REPO = Path(__file__).resolve().parents[2]

CASES = {
    "unknown-key": ["tree/schools/school.yaml:8:1: colour: unknown key"],
    "wrong-type": ["tree/schools/school.yaml:9:18: card_stock.low_threshold: must be a "
                   "whole number"],
    "missing-field": ["tree/schools/school.yaml:2:1: uai: missing required field"],
    "dangling-reference": ["tree/schools/school.yaml:4:8: comue: unknown COMUE 'nowhere' "
                           "(known: imposed, open)"],
    "duplicate-id": ["tree/schools/school.yml:1:1: duplicate id 'school': also defined by "
                     "tree/schools/school.yaml"],
    "imposed-visual": ["tree/schools/school.yaml:8:1: visual: the COMUE contract (imposed) "
                       "imposes the card visual: a school cannot set its own"],
    "bad-schedule": ["tree/schools/school.yaml:9:38: exchanges.0.schedule: bad schedule "
                     "'tuesdays at dawn': expected 'every N minutes|hours|days|weeks', "
                     "'every day at HH:MM', 'every <weekday> at HH:MM' or 'every hour at :MM'"],
    "bad-deadline": ["tree/crous/crous.yaml:6:19: deadlines.reinscriptions: '02-30' is not a "
                     "month-day: February has no day 30"],
    "invalid-email": ["tree/crous/crous.yaml:4:14: mailboxes.monetique: "
                      "'monetique-at-crous.example.org' is not a valid e-mail address"],
    "literal-secret": ["tree/card-profiles/profile.yaml:6:10: applications.0.keys.1: a key is "
                       "a reference, never a literal value: write {file: PATH}, "
                       "{credential: NAME} or {diversify: …}"],
    "yaml-syntax-error": ["tree/schools/school.yaml:5:1: YAML syntax error: found unexpected "
                          "end of stream (while scanning a quoted scalar at line 3, column 6)"],
    "sam-key": ["tree/card-profiles/profile.yaml:6:10: applications.0.keys.1: reading through "
                "a SAM is not supported yet"],
    "layout-unknown-field": ["tree/layouts/crous-default.yaml:4:28: columns.1.field: must "
                             "be 'identifier', 'institutional_id', 'ine', 'last_name', "
                             "'first_name', 'email', 'birth_date', 'rne_org_code', "
                             "'id_company_rate', 'id_rate', 'due_date', 'category', "
                             "'crous_number', 'csn' or 'kind'"],
    "empty-file": ["tree/layouts/crous-default.yaml:1:1: empty file"],
    "ten-errors": [
        "tree/card-profiles/profile.yaml:1:13: technology: must be 'desfire-ev1'",
        "tree/card-profiles/profile.yaml:3:10: applications.0.aid: 'F585' is not an AID: "
        "3 bytes as 6 hex digits, MSB first",
        "tree/card-profiles/profile.yaml:7:14: applications.0.files.0.id: must be at most "
        "31",
        "tree/crous/crous.yaml:4:17: mailboxes.restauration: 'restauration.crous.example.org'"
        " is not a valid e-mail address",
        "tree/crous/crous.yaml:6:19: deadlines.reinscriptions: '13-01' is not a month-day: "
        "write MM-DD, e.g. '10-30'",
        "tree/schools/school.yaml:5:10: tariffs: unknown tariffs 'tarifs' (known: tariffs)",
        "tree/schools/school.yaml:7:1: visual: the COMUE contract (imposed) imposes the card "
        "visual: a school cannot set its own",
        "tree/schools/school.yaml:10:12: exchanges.1.kind: exchange 'departs' is defined twice",
        "tree/tariffs/tariffs.yaml:2:48: rules.0.index_max: index_max 474 is below index_min "
        "500",
        "tree/tariffs/tariffs.yaml:4:5: rules.2: overlaps rule 1 for status prs: which rate "
        "applies would be ambiguous",
    ],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_tree_reports_exact_lines(make_tree, case: str) -> None:
    make_tree(case)
    result = CliRunner().invoke(main, ["config", "validate", "tree"])
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    files = len({line.split(":")[0] for line in CASES[case]})
    n = len(CASES[case])
    assert lines == [*CASES[case], f"{n} error{'s' * (n > 1)} in {files} file{'s' * (files > 1)}"]
    assert result.stdout == ""
    assert "Traceback" not in result.output


def test_every_fixture_file_is_a_tested_case() -> None:
    fixtures = {p.stem for p in (REPO / "tests/fixtures/config").iterdir() if p.name != "base"}
    assert fixtures == set(CASES)


def test_base_tree_is_valid(make_tree) -> None:
    make_tree()
    result = CliRunner().invoke(main, ["config", "validate", "tree"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("tree: valid (1 schools")


def test_shipped_tree_is_valid() -> None:
    result = CliRunner().invoke(main, ["config", "validate", str(REPO / "config")])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


def test_validate_uses_the_host_file_tree_and_school(tmp_path) -> None:
    host = tmp_path / "badged.yaml"
    host.write_text(f"tree: {REPO / 'config'}\nschool: nowhere\n")
    result = CliRunner().invoke(main, ["--host-config", str(host), "config", "validate"])
    assert result.exit_code == 1
    assert "unknown school 'nowhere' (known: demo, emse, imt-douai, imt-nantes)" in result.stderr


def test_missing_host_file_is_a_user_error(tmp_path) -> None:
    result = CliRunner().invoke(main, ["--host-config", str(tmp_path / "none.yaml"),
                                       "config", "validate"])
    assert result.exit_code == 1
    assert "host file not found" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
