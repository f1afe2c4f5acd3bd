"""`badged config validate`: the exact error lines for every bad-input fixture."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from badged.cli import main

REPO = Path(__file__).resolve().parents[2]

S = "tree/schools/school.yaml"

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
                             "'crous_number', 'csn', 'kind', 'card_id', 'valid_from', "
                             "'valid_until', 'valid', 'blocked', 'state' or 'school_name'"],
    "api-without-section": ["tree/schools/school.yaml:9:71: exchanges.0.transport: CROUS "
                            "'crous' has no api section: use transport mail or configure its "
                            "API"],
    "api-literal-secret": ["tree/crous/crous.yaml:9:18: api.client_secret: a secret is a "
                           "reference, never a literal value: write {file: PATH} or "
                           "{credential: NAME}"],
    "api-no-token-url": ["tree/crous/crous.yaml:6:3: api.token_url: the oauth2 token flow "
                         "needs token_url (or set token_flow: legacy)"],
    # door-system exports (access_exports)
    "access-no-destination": [f"{S}:14:18: access_exports.doors.destination: give exactly "
                              "one destination: directory: {path: …} or sftp: {host: …}"],
    "access-two-destinations": [f"{S}:15:7: access_exports.doors.destination: give exactly "
                                "one destination: directory: {path: …} or sftp: {host: …}"],
    "access-generic-without-layout": [f"{S}:12:5: access_exports.doors.layout: a generic "
                                      "export needs a layout (an id of layouts/)"],
    "access-layout-not-generic": [f"{S}:13:5: access_exports.doors.layout: format til has its "
                                  "own columns: a layout is for the generic format only"],
    "access-unknown-layout": [f"{S}:13:13: access_exports.doors.layout: unknown layout "
                              "'doors' (known: crous-default)"],
    "access-layout-crous-fields": [
        f"{S}:13:13: access_exports.doors.layout: layout 'crous-default' shows id_rate, which "
        "a door-system export does not have (it can show: birth_date, blocked, card_id, "
        "category, crous_number, csn, email, first_name, identifier, ine, institutional_id, "
        "last_name, school_name, state, valid, valid_from, valid_until)"],
    "access-fields-in-crous-layout": [f"{S}:8:5: exchanges.0: layout 'crous-default' shows "
                                      "card_id: fields of door-system exports, not of CROUS "
                                      "files"],
    "access-max-lines-not-p2s": [f"{S}:13:5: access_exports.doors.max_lines: max_lines "
                                 "splits P2S files only"],
    "access-world-readable-mode": [f"{S}:14:57: access_exports.doors.destination.directory."
                                   "mode: mode 0644 lets others read or write the file: the "
                                   "cards of the school are never world-readable (e.g. "
                                   "'0640')"],
    "access-literal-key": [f"{S}:18:14: access_exports.doors.destination.sftp.key: a secret "
                           "is a reference, never a literal value: write {file: PATH} or "
                           "{credential: NAME}"],
    "access-bad-csn-form": [f"{S}:13:10: access_exports.doors.csn: must be 'hex', "
                            "'reversed_hex', 'decimal' or 'reversed_decimal'"],
    "access-same-file": [f"{S}:18:16: access_exports.doors-too.file_name: writes the same "
                         "file as export 'doors': give it another file_name or destination"],
    "access-file-name-path": [f"{S}:13:16: access_exports.doors.file_name: "
                              "'../etc/cards.csv' is not a plain file name (no '/', no "
                              "leading '.')"],
    "empty-file": ["tree/layouts/crous-default.yaml:1:1: empty file"],
    "encoding-latin1": ["tree/schools/school.yaml:2:7: not UTF-8 text (byte 0xC9)"],
    "schema-error-and-dangling-reference": [
        "tree/schools/school.yaml:4:8: comue: unknown COMUE 'nowhere' (known: imposed, open)",
        "tree/schools/school.yaml:8:1: colour: unknown key",
        "tree/schools/school.yaml:10:73: exchanges.0.recipients.0: unknown mailbox of CROUS "
        "'crous' 'nobody' (known: monetique, restauration)",
        "tree/schools/school.yaml:10:90: exchanges.0.layout: unknown layout 'nowhere' (known: "
        "crous-default)"],
    # Hostile YAML: one located line each, at once, whatever PyYAML alone would do.
    "yaml-control-character": ["tree/schools/school.yaml:2:12: character U+0007 is not "
                               "allowed in YAML (a control character?)"],
    "yaml-recursive-alias": ["tree/schools/school.yaml:8:20: recursive alias *readers: it "
                             "refers to a value that contains it"],
    "yaml-deep-nesting": ["tree/schools/school.yaml:8:42: nested too deeply: more than 32 "
                          "levels"],
    "yaml-complex-key": ["tree/schools/school.yaml:8:3: tag !!set not supported: plain YAML "
                         "only (strings, numbers, booleans, null, lists, mappings)"],
    "yaml-long-integer": ["tree/schools/school.yaml:8:29: number too long: 5000 characters, "
                          "at most 64"],
    "yaml-alias-bomb": ["tree/schools/school.yaml:6:10: too many nodes: more than 10000 (an "
                        "alias counts as the whole value it stands for)"],
    "yaml-foreign-tag": ["tree/schools/school.yaml:2:7: tag !!python/object/apply:os.system "
                         "not supported: plain YAML only (strings, numbers, booleans, null, "
                         "lists, mappings)"],
    "yaml-lone-surrogate": ["tree/schools/school.yaml:2:7: not valid Unicode text (a lone "
                            "surrogate)"],
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
