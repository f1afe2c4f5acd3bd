"""`badged crous import-cards`: the CROUS card CSV, good and bad, through the real CLI.

Each bad-input case has its own file in tests/fixtures/crous-csv/; every test checks the
exact report lines, the exit code and what the store holds afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from reportkit import counted

import badged.cli.crous  # noqa: F401  (registers `badged crous`)
from badged.crous.cards_csv import _Rows

FIXTURES = Path(__file__).parents[1] / "fixtures" / "crous-csv"
HEADER = ("PIX.SS;PIX.NN;AAPL;NUM_PROTOCOLAIRE;NUM_APPLICATIF;NFO;CNOUS;CROUS;EMETTEUR;MAPPING;"
          "NUM_CARTE;DATE_CREATION")

# good.csv as stored, by CSN: csn, rid, num_carte, pix_ss, pix_nn, appl, nfo, cnous, crous,
# emetteur (hex 41 → 65, 1A → 26), mapping, date_creation.
GOOD = [
    ("04000000000000", "04000000000000", 36000000, "03", "0000", "D1", "0", "0", "0691", 65, 1,
     "2024-09-01"),
    ("0471928A083C80", "0471928A083C80", 36882379, "03", "0000", "D1", "0", "0", "0691", 65, 1,
     "2024-09-02"),
    ("04A1B2C3D4E5F6", "04A1B2C3D4E5F6", 36000002, "03", "0000", "D1", "0", "0", "0691", 26, 1,
     "2024-09-03"),
]
NEW_CARD = ("04112233445566", "04112233445566", 36000010, "03", "0000", "D1", "0", "0", "0691",
            65, 1, "2024-09-04")

Run = Callable[..., Result]
Rows = Callable[[], list[tuple[object, ...]]]


def path(name: str) -> str:
    return str(FIXTURES / name)


def data(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    """Stored rows without imported_at and source_file."""
    return [row[:-2] for row in rows]


def check(result: Result, code: int, stdout: str, stderr: list[str]) -> None:
    assert (result.exit_code, result.stdout, result.stderr.splitlines()) == (
        code, stdout + "\n" if stdout else "", stderr)
    assert "Traceback" not in result.output


def test_good_file_imports_every_row(run: Run, rows: Rows) -> None:
    check(run(path("good.csv")), 0, f"{path('good.csv')}: 3 read, 3 imported, 0 unchanged, "
          "0 rejected", [])
    stored = rows()
    assert data(stored) == GOOD
    assert {row[-1] for row in stored} == {path("good.csv")}


def test_same_file_twice_changes_nothing(run: Run, rows: Rows) -> None:
    run(path("good.csv"))
    before = rows()
    check(run(path("good.csv")), 0, f"{path('good.csv')}: 3 read, 0 imported, 3 unchanged, "
          "0 rejected", [])
    assert rows() == before  # imported_at included: not even touched


def test_other_details_of_a_known_link_are_updated(run: Run, rows: Rows) -> None:
    run(path("good.csv"))
    check(run(path("good-updated.csv")), 0, f"{path('good-updated.csv')}: 3 read, "
          "1 imported (1 updated), 2 unchanged, 0 rejected", [])
    assert data(rows()) == [GOOD[0], (*GOOD[1][:-1], "2024-09-12"), GOOD[2]]


BAD_ROWS = [  # fixture, errors by line (no value: a CSN is personal), summary, store after
    ("short-row.csv", ["3: expected 12 fields separated by ';': found 11"],
     "3 read, 2 imported, 0 unchanged, 1 rejected", [GOOD[0], GOOD[2]]),
    ("csn-not-hex.csv", ["3: NUM_PROTOCOLAIRE is not hexadecimal"],
     "3 read, 2 imported, 0 unchanged, 1 rejected", [GOOD[0], GOOD[2]]),
    ("csn-odd-length.csv",
     ["3: NUM_PROTOCOLAIRE has an odd number of hex digits: 13 digits"],
     "3 read, 2 imported, 0 unchanged, 1 rejected", [GOOD[0], GOOD[2]]),
    ("emetteur-not-hex.csv", ["3: EMETTEUR is not a hexadecimal number"],
     "3 read, 2 imported, 0 unchanged, 1 rejected", [GOOD[0], GOOD[2]]),
    ("num-carte-not-decimal.csv", ["3: NUM_CARTE is not a decimal number"],
     "3 read, 2 imported, 0 unchanged, 1 rejected", [GOOD[0], GOOD[2]]),
    ("bad-date.csv", ["3: DATE_CREATION is not a valid date",
                      "4: DATE_CREATION is not a dd/MM/yyyy date"],
     "3 read, 1 imported, 0 unchanged, 2 rejected", [GOOD[0]]),
    ("cr-in-quoted-row.csv", ["3: bad CSV quoting: new-line character seen in unquoted field "
                              "- do you need to open the file in universal-newline mode?"],
     "3 read, 2 imported, 0 unchanged, 1 rejected", [GOOD[0], GOOD[2]]),
    ("duplicate-csn.csv", ["5: duplicate NUM_PROTOCOLAIRE: already on line 2"],
     "4 read, 3 imported, 0 unchanged, 1 rejected", GOOD),
    ("duplicate-num-carte.csv", ["5: duplicate NUM_CARTE: already on line 2"],
     "4 read, 3 imported, 0 unchanged, 1 rejected", GOOD),
    # A CSN is 4 to 10 bytes: line 3 (4 bytes) is one, lines 4-6 (3, 11, 3 bytes) are not.
    ("csn-length.csv", ["4: NUM_PROTOCOLAIRE is not 4 to 10 bytes (a chip serial number): "
                        "3 bytes",
                        "5: NUM_PROTOCOLAIRE is not 4 to 10 bytes (a chip serial number): "
                        "11 bytes",
                        "6: NUM_PROTOCOLAIRE is not 4 to 10 bytes (a chip serial number): "
                        "3 bytes"],
     "5 read, 2 imported, 0 unchanged, 3 rejected",
     [GOOD[0], ("0471928A", "0471928A", 36882379, *GOOD[1][3:])]),
    # One NUL byte in a row: that row is rejected, not the file as binary.
    ("nul-in-row.csv", ["3: a field holds a control character (NUL, tab…)"],
     "3 read, 2 imported, 0 unchanged, 1 rejected", [GOOD[0], GOOD[2]]),
    # Every line ends in ';' (an empty 13th column: accepted), line 3 has a 13th value.
    ("trailing-separator.csv", ["3: expected 12 fields separated by ';': found 13"],
     "3 read, 2 imported, 0 unchanged, 1 rejected", [GOOD[0], GOOD[2]]),
]


@pytest.mark.parametrize(("name", "errors", "summary", "stored"), BAD_ROWS,
                         ids=[case[0].removesuffix(".csv") for case in BAD_ROWS])
def test_bad_rows_are_reported_and_the_rest_imported(run: Run, rows: Rows, name: str,
                                                     errors: list[str], summary: str,
                                                     stored: list[tuple[object, ...]]) -> None:
    check(run(path(name)), 3, f"{path(name)}: {summary}", counted(path(name), errors))
    assert data(rows()) == stored


@pytest.mark.parametrize(("name", "reason"), [
    ("header-missing.csv", f"missing header: the first line must be {HEADER}"),
    ("header-order.csv", f"header columns in another order: expected {HEADER}"),
    ("empty.csv", f"empty file (expected the header {HEADER})"),
    ("binary.csv", "not a text file (binary data)"),
], ids=["header-missing", "header-order", "empty", "binary"])
def test_whole_file_problems_import_nothing(run: Run, rows: Rows, name: str,
                                            reason: str) -> None:
    run(path("good.csv"))
    before = rows()
    check(run(path(name)), 1, "", [f"{path(name)}:1: {reason}"])
    assert rows() == before


def test_missing_file_is_a_user_error(run: Run, tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    check(run(str(missing)), 1, "", [f"{missing}: cannot read: No such file or directory"])


def test_windows_1252_with_accents_and_spaces(run: Run, rows: Rows) -> None:
    check(run(path("windows-1252.csv")), 0, f"{path('windows-1252.csv')}: 2 read, 2 imported, "
          "0 unchanged, 0 rejected", [])
    assert data(rows()) == [(*GOOD[0][:6], "Étudiant", "0", "Créteil", *GOOD[0][9:]),
                            (*GOOD[1][:6], "Personnel", "0", "Créteil", *GOOD[1][9:])]


def test_latin_1_bytes_windows_1252_lacks(run: Run, rows: Rows) -> None:
    """0x81 is undefined in Windows-1252: the file is Latin-1 (a control character there)."""
    check(run(path("latin-1.csv")), 0, f"{path('latin-1.csv')}: 1 read, 1 imported, "
          "0 unchanged, 0 rejected", [])
    assert data(rows()) == [(*GOOD[0][:6], "Étudiant", "0", "Créteil\x81", *GOOD[0][9:])]


def test_utf8_bom_crlf_blank_lines(run: Run, rows: Rows) -> None:
    check(run(path("bom-crlf.csv")), 0, f"{path('bom-crlf.csv')}: 3 read, 3 imported, "
          "0 unchanged, 0 rejected", [])
    assert data(rows()) == [GOOD[0], (*GOOD[1][:8], "Saint-Étienne", *GOOD[1][9:]), GOOD[2]]


@pytest.mark.parametrize(("name", "error", "new_card"), [
    ("conflict-csn.csv", "NUM_PROTOCOLAIRE is already linked to another NUM_CARTE", NEW_CARD),
    ("conflict-num-carte.csv", "NUM_CARTE is already linked to another NUM_PROTOCOLAIRE",
     ("04223344556677", "04223344556677", 36000011, *NEW_CARD[3:])),
], ids=["same-csn-other-num-carte", "same-num-carte-other-csn"])
def test_a_known_link_is_never_overwritten(run: Run, rows: Rows, name: str, error: str,
                                           new_card: tuple[object, ...]) -> None:
    run(path("good.csv"))
    before = rows()
    check(run(path(name)), 3, f"{path(name)}: 2 read, 1 imported, 0 unchanged, 1 rejected",
          counted(path(name), [f"2: {error}"]))
    after = rows()
    assert [row for row in after if row not in before] == [
        row for row in after if row[:-2] == new_card]  # only the good row's new card
    assert set(before) <= set(after)  # the known links, byte for byte
    assert len(after) == len(before) + 1


def test_inverse_csn_reverses_csn_and_rid(run: Run, rows: Rows) -> None:
    check(run(path("reversed-csn.csv"), "--inverse-csn"), 0, f"{path('reversed-csn.csv')}: "
          "3 read, 3 imported, 0 unchanged, 0 rejected", [])
    assert data(rows()) == GOOD
    check(run(path("good.csv")), 0, f"{path('good.csv')}: 3 read, 0 imported, 3 unchanged, "
          "0 rejected", [])


def test_forgetting_inverse_csn_is_caught_by_the_known_links(run: Run, rows: Rows) -> None:
    run(path("good.csv"))
    result = run(path("reversed-csn.csv"))
    assert result.exit_code == 3
    assert result.stderr.splitlines()[0] == (
        f"{path('reversed-csn.csv')}:2: NUM_CARTE is already linked to another "
        "NUM_PROTOCOLAIRE")
    assert data(rows()) == GOOD


def test_strict_imports_nothing_when_a_row_is_bad(run: Run, rows: Rows) -> None:
    name = path("csn-not-hex.csv")
    check(run(name, "--strict"), 1, f"{name}: 3 read, 0 imported, 0 unchanged, 1 rejected; "
          "strict: nothing imported",
          counted(name, ["3: NUM_PROTOCOLAIRE is not hexadecimal"]))
    assert rows() == []


def test_strict_imports_nothing_on_a_conflict(run: Run, rows: Rows) -> None:
    run(path("good.csv"))
    before = rows()
    name = path("conflict-csn.csv")
    check(run(name, "--strict"), 1, f"{name}: 2 read, 0 imported, 0 unchanged, 1 rejected; "
          "strict: nothing imported",
          counted(name, ["2: NUM_PROTOCOLAIRE is already linked to another NUM_CARTE"]))
    assert rows() == before


def test_strict_imports_a_clean_file(run: Run, rows: Rows) -> None:
    check(run(path("good.csv"), "--strict"), 0, f"{path('good.csv')}: 3 read, 3 imported, "
          "0 unchanged, 0 rejected", [])
    assert data(rows()) == GOOD


def test_progress_every_10000_rows(run: Run, rows: Rows, tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    big.write_text(HEADER + "\n" + "".join(
        f"03;0000;D1;04{n:012X};04{n:012X};0;0;0691;41;1;{36_000_000 + n};01/09/2024\n"
        for n in range(25_000)), encoding="utf-8")
    result = run(str(big), "--progress")
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [f"{big}: 10000 rows read", f"{big}: 20000 rows read"]
    assert result.stdout == f"{big}: 25000 read, 25000 imported, 0 unchanged, 0 rejected\n"
    assert len(rows()) == 25_000


@pytest.mark.parametrize("variant", [
    " 03 ; 0000;D1 ;\t04a1b2c3d4e5f6 ;04A1B2C3D4E5F6;0;0;0691; 1A;1;36000002 ;03/09/2024 \r",
    '"03";"0000";"D1";"04a1b2c3d4e5f6";"04A1B2C3D4E5F6";0;0;"0691";1A;1;"36000002";03/09/2024',
], ids=["spaces", "quotes"])
def test_slow_path_agrees_with_fast_path(variant: str) -> None:
    """Spaces and quotes take the slow path; it must yield what the fast path yields."""
    clean = "03;0000;D1;04a1b2c3d4e5f6;04A1B2C3D4E5F6;0;0;0691;1A;1;36000002;03/09/2024"
    fast = list(_Rows([HEADER, clean], inverse_csn=False, progress=None))
    slow = list(_Rows([HEADER, variant], inverse_csn=False, progress=None))
    assert fast == slow == [(2, "03", "0000", "D1", "04A1B2C3D4E5F6", "04A1B2C3D4E5F6", "0", "0",
                             "0691", 26, 1, 36000002, "2024-09-03")]


# --- card numbers and CSNs are personal: never in error lines ------------------------------

CARD_IDS = ("NUM_PROTOCOLAIRE", "NUM_APPLICATIF", "NUM_CARTE")
REJECTING = [case[0] for case in BAD_ROWS] + ["conflict-csn.csv", "conflict-num-carte.csv"]


@pytest.mark.parametrize("name", REJECTING, ids=[n.removesuffix(".csv") for n in REJECTING])
def test_no_card_id_of_a_rejected_row_reaches_stderr(run: Run, name: str) -> None:
    run(path("good.csv"))
    result = run(path(name))
    assert result.exit_code == 3
    lines = [line.split(";") for line in (FIXTURES / name).read_text().splitlines()]
    numbers = {int(line.split(":")[1]) for line in result.stderr.splitlines()
               if line.split(":")[1].isdigit()}
    assert numbers
    for number in numbers:
        for column, value in zip(HEADER.split(";"), lines[number - 1], strict=False):
            if column in CARD_IDS and value.strip():
                assert value.strip() not in result.stderr, (column, number)


def test_the_report_file_holds_the_card_ids(run: Run, tmp_path: Path) -> None:
    run(path("good.csv"))
    report = tmp_path / "cards-report.txt"
    name = path("conflict-csn.csv")
    result = run(name, "--report", str(report))
    assert result.exit_code == 3
    assert oct(report.stat().st_mode & 0o777) == "0o600"
    assert report.read_text().splitlines() == [
        f"{name}:2: NUM_PROTOCOLAIRE is already linked to another NUM_CARTE: "
        "'04000000000000, linked to 36000000'"]
