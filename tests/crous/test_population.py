"""`badged population import`: registry exports, good and bad, through the real CLI.

The host runs a copy of the repo's config tree plus the test school of
tests/fixtures/population/school.yaml (sources: students, staff, new-students, emails). Each
bad-input case has its own file in tests/fixtures/population/; every test checks the exact
report lines, the exit code and what the store holds afterwards.
"""

from __future__ import annotations

import shutil
import sqlite3
import stat
from collections.abc import Callable
from contextlib import closing
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from reportkit import counted

import badged.cli.population  # noqa: F401  (registers `badged population`)
from badged.cli import main
from badged.config.model import PopulationSource
from badged.crous.population import import_population
from badged.crous.registry_export import ExportRows
from badged.store.db import DB_NAME, open_store

REPO = Path(__file__).parents[2]
FIXTURES = Path(__file__).parents[1] / "fixtures" / "population"
TODAY = date.today().isoformat()

Row = tuple[object, ...]
Run = Callable[..., Result]
Rows = Callable[[], list[Row]]

# students.csv as stored: id, ine, last_name, first_name, birth_date, email, category,
# academic_year, first_enrolment_year, status_code, staff_index, end_of_rights, source,
# leaving_since.
ELODIE = ("20250001", "1234567890A", "Durand", "Élodie", "2006-03-14",
          "elodie.durand@example.org", "student", 2026, 2026, None, None, None, "students", None)
NOEL = ("20240002", "2345678901B", "Lefèvre", "Noël", "2005-11-02", "noel.lefevre@example.org",
        "student", 2026, 2025, None, None, None, "students", None)
ZOE = ("20230003", "3456789012C", "Martin", "Zoé", "2004-02-29", None, "student", 2026, 2024,
       None, None, None, "students", None)
GOOD = [ELODIE, NOEL, ZOE]
STAFF = [
    ("S0001", None, "Lecœur", "Anaïs", "1978-09-21", "anais.lecoeur@example.org", "staff", None,
     None, "prs", 512, None, "staff", None),
    ("S0002", None, "Bérard", "François", "1985-06-05", "francois.berard@example.org", "staff",
     None, None, "ctr", 389, "2026-08-31", "staff", None),
    ("S0003", None, "Noël", "Hélène", "1990-01-12", None, "staff", None, None, "prs", 0, None,
     "staff", None),
]
COLUMNS = ("id, ine, last_name, first_name, birth_date, email, category, academic_year, "
           "first_enrolment_year, status_code, staff_index, end_of_rights, source, leaving_since")


def path(name: str) -> str:
    return str(FIXTURES / name)


@pytest.fixture
def host_file(tmp_path: Path) -> Path:
    """A host running the test school on a copy of the repo's tree, state in tmp_path."""
    tree = tmp_path / "config"
    shutil.copytree(REPO / "config", tree)
    shutil.copy(FIXTURES / "school.yaml", tree / "schools" / "poptest.yaml")
    host = tmp_path / "badged.yaml"
    host.write_text(f"tree: {tree}\nschool: poptest\nstate_dir: {tmp_path / 'state'}\n"
                    f"runtime_dir: {tmp_path / 'run'}\n", encoding="utf-8")
    return host


@pytest.fixture
def run(host_file: Path) -> Run:
    """`badged --host-config HOST population import FILE --source SOURCE ARGS…`."""

    def invoke(file: str, source: str = "students", *args: str) -> Result:
        return CliRunner().invoke(main, ["--host-config", str(host_file), "population",
                                         "import", file, "--source", source, *args])

    return invoke


@pytest.fixture
def rows(tmp_path: Path) -> Rows:
    """Every stored person (COLUMNS), by id (empty without a store)."""

    def dump() -> list[Row]:
        db = tmp_path / "state" / DB_NAME
        if not db.exists():
            return []
        with closing(sqlite3.connect(db)) as conn:
            return conn.execute(f"SELECT {COLUMNS} FROM people ORDER BY id").fetchall()

    return dump


@pytest.fixture
def full_rows(tmp_path: Path) -> Rows:
    """Every stored person, all columns (timestamps included)."""

    def dump() -> list[Row]:
        with closing(sqlite3.connect(tmp_path / "state" / DB_NAME)) as conn:
            return conn.execute("SELECT * FROM people ORDER BY id").fetchall()

    return dump


def check(result: Result, code: int, stdout: str, stderr: list[str]) -> None:
    assert (result.exit_code, result.stdout, result.stderr.splitlines()) == (
        code, stdout + "\n" if stdout else "", stderr)
    assert "Traceback" not in result.output


def summary(name: str, text: str) -> str:
    return f"{path(name)}: {text}"


def by_id(people: list[Row]) -> list[Row]:
    return sorted(people, key=lambda row: str(row[0]))


def leaving(person: Row, since: str = TODAY) -> Row:
    return (*person[:-1], since)


# --- good exports --------------------------------------------------------------------------

def test_good_student_export(run: Run, rows: Rows) -> None:
    check(run(path("students.csv")), 0, summary("students.csv", "3 read, 3 created, 0 updated, "
          "0 unchanged, 0 leaving, 0 rejected"), [])
    assert rows() == by_id(GOOD)


def test_good_staff_export_in_windows_1252(run: Run, rows: Rows) -> None:
    """Accents (œ is Windows-1252 only), status codes lower-cased, index 0512 → 512."""
    check(run(path("staff.csv"), "staff"), 0, summary("staff.csv", "3 read, 3 created, "
          "0 updated, 0 unchanged, 0 leaving, 0 rejected"), [])
    assert rows() == STAFF


def test_bom_crlf_blank_lines_quotes_and_spaces(run: Run, rows: Rows) -> None:
    check(run(path("bom-crlf-quoted.csv")), 0, summary("bom-crlf-quoted.csv", "3 read, "
          "3 created, 0 updated, 0 unchanged, 0 leaving, 0 rejected"), [])
    assert rows() == by_id(GOOD)


def test_same_file_twice_changes_nothing(run: Run, full_rows: Rows) -> None:
    run(path("students.csv"))
    run(path("staff.csv"), "staff")
    before = full_rows()
    check(run(path("students.csv")), 0, summary("students.csv", "3 read, 0 created, "
          "0 updated, 3 unchanged, 0 leaving, 0 rejected"), [])
    check(run(path("staff.csv"), "staff"), 0, summary("staff.csv", "3 read, 0 created, "
          "0 updated, 3 unchanged, 0 leaving, 0 rejected"), [])
    assert full_rows() == before  # updated_at included: not even touched


def test_a_changed_field_is_updated(run: Run, rows: Rows) -> None:
    run(path("students.csv"))
    check(run(path("students-updated.csv")), 0, summary("students-updated.csv", "3 read, "
          "0 created, 1 updated, 2 unchanged, 0 leaving, 0 rejected"), [])
    assert rows() == by_id([ELODIE, (*NOEL[:5], "noel.lefevre2@example.org", *NOEL[6:]), ZOE])


def test_unmapped_fields_keep_their_values(run: Run, rows: Rows) -> None:
    """A source mapping only e-mails updates them, and cannot create anybody."""
    run(path("students.csv"))
    name = path("emails.csv")
    check(run(name, "emails"), 3, summary("emails.csv", "2 read, 0 created, 1 updated, "
          "0 unchanged, 0 leaving, 1 rejected"),
          [f"{name}:3: NUM_ETU is not a known person, and this source has no "
           "last_name or first_name column to create one",
           f"{name}: 1 rejected: NUM_ETU is not a known person, and this source has no "
           "last_name or first_name column to create one"])
    assert rows() == by_id([(*ELODIE[:5], "elodie.durand@etu.example.org", *ELODIE[6:12],
                             "emails", None), NOEL, ZOE])


def test_ines_can_be_swapped(run: Run, rows: Rows) -> None:
    run(path("students.csv"))
    check(run(path("ine-swap.csv")), 0, summary("ine-swap.csv", "3 read, 0 created, 2 updated, "
          "1 unchanged, 0 leaving, 0 rejected"), [])
    assert rows() == by_id([(ELODIE[0], NOEL[1], *ELODIE[2:]), (NOEL[0], ELODIE[1], *NOEL[2:]),
                            ZOE])


# --- leaving -------------------------------------------------------------------------------

def test_full_export_marks_the_absent_as_leaving_then_back(run: Run, rows: Rows) -> None:
    run(path("students.csv"))
    run(path("staff.csv"), "staff")
    check(run(path("students-without-2.csv")), 0, summary("students-without-2.csv", "2 read, "
          "0 created, 0 updated, 2 unchanged, 1 leaving, 0 rejected"), [])
    assert rows() == by_id([ELODIE, leaving(NOEL), ZOE, *STAFF])  # staff: another source
    check(run(path("students-without-2.csv")), 0, summary("students-without-2.csv", "2 read, "
          "0 created, 0 updated, 2 unchanged, 0 leaving, 0 rejected"), [])
    check(run(path("students.csv")), 0, summary("students.csv", "3 read, 0 created, 1 updated, "
          "2 unchanged, 0 leaving, 0 rejected"), [])
    assert rows() == by_id([*GOOD, *STAFF])


def test_a_leaving_mark_keeps_its_first_day(tmp_path: Path) -> None:
    source = PopulationSource.model_validate({"category": "student", "columns": {
        "institutional_id": "NUM_ETU", "last_name": "NOM", "first_name": "PRENOM"}})
    with closing(open_store(tmp_path / "state")) as conn:
        import_population(conn, FIXTURES / "students.csv", "students", source,
                          today=date(2026, 1, 1))
        for day in (date(2026, 1, 5), date(2026, 1, 9)):
            report = import_population(conn, FIXTURES / "students-without-2.csv", "students",
                                       source, today=day)
            assert report.leaving == (day.day == 5)
        assert conn.execute("SELECT leaving_since FROM people WHERE id = '20240002'"
                            ).fetchone()[0] == "2026-01-05"


def test_a_non_full_export_marks_nobody(run: Run, rows: Rows) -> None:
    run(path("students.csv"))
    check(run(path("new-students.csv"), "new-students"), 0, summary("new-students.csv",
          "1 read, 1 created, 0 updated, 0 unchanged, 0 leaving, 0 rejected"), [])
    assert rows() == by_id([*GOOD, ("20250010", "9999999999Z", "Grand", "Paul", "2006-02-02",
                                    "paul.grand@example.org", "student", 2026, 2026, None, None,
                                    None, "new-students", None)])


def test_a_rejected_row_is_still_present(run: Run, rows: Rows) -> None:
    """Noël's row has a bad date: not updated, but in the export, so not leaving."""
    run(path("students.csv"))
    result = run(path("bad-date.csv"))
    assert result.exit_code == 3
    assert result.stdout == summary("bad-date.csv", "3 read, 0 created, 0 updated, "
                                    "1 unchanged, 0 leaving, 2 rejected") + "\n"
    assert rows() == by_id(GOOD)


def test_an_unreadable_row_stops_the_leaving_marks(run: Run, rows: Rows) -> None:
    """Whose row is unreadable is unknown: nobody is marked (Noël and Zoé are absent)."""
    run(path("students.csv"))
    name = path("unreadable-row.csv")
    check(run(name), 3, summary("unreadable-row.csv", "2 read, 0 created, 0 updated, "
          "1 unchanged, 0 leaving, 1 rejected"),
          [f"{name}:3: bad CSV quoting: unexpected end of data",
           f"{name}: 1 rejected: bad CSV quoting: unexpected end of data",
           f"{name}: nobody marked as leaving: 1 rejected row without a readable NUM_ETU"])
    assert rows() == by_id(GOOD)


# --- bad rows ------------------------------------------------------------------------------

NOT_UTF8 = "not UTF-8 (byte 0xE8 at column 25): is the export mixing encodings?"
UTF8_IN_CP1252 = ("looks like UTF-8 in a Windows-1252 export ('é' would be stored as 'Ã©'): is "
                  "the export mixing encodings?")
BAD_ROWS = [  # fixture, source, errors by line (no value), summary, what the store holds
    ("bad-date.csv", "students",
     ["3: DATE_NAISSANCE is not a valid dd/mm/yyyy date",
      "4: DATE_NAISSANCE is not a valid dd/mm/yyyy date"],
     "3 read, 1 created, 0 updated, 0 unchanged, 0 leaving, 2 rejected", [ELODIE]),
    ("duplicate-id.csv", "students", ["5: duplicate NUM_ETU: already on line 2"],
     "4 read, 3 created, 0 updated, 0 unchanged, 0 leaving, 1 rejected", GOOD),
    ("duplicate-ine.csv", "students", ["5: duplicate INE: already on line 2"],
     "4 read, 3 created, 0 updated, 0 unchanged, 0 leaving, 1 rejected", GOOD),
    ("not-utf8.csv", "students", [f"3: {NOT_UTF8}"],
     "3 read, 2 created, 0 updated, 0 unchanged, 0 leaving, 1 rejected", [ELODIE, ZOE]),
    ("utf8-in-cp1252.csv", "staff", [f"3: {UTF8_IN_CP1252}"],
     "3 read, 2 created, 0 updated, 0 unchanged, 0 leaving, 1 rejected", [STAFF[0], STAFF[2]]),
    ("short-row.csv", "students", ["3: expected 9 fields separated by ';': found 8"],
     "3 read, 2 created, 0 updated, 0 unchanged, 0 leaving, 1 rejected", [ELODIE, ZOE]),
    ("missing-names.csv", "students", ["3: NOM is empty"],
     "3 read, 2 created, 0 updated, 0 unchanged, 0 leaving, 1 rejected", [ELODIE, ZOE]),
    ("bad-year.csv", "students", ["3: ANNEE is not a year (4 digits)"],
     "3 read, 2 created, 0 updated, 0 unchanged, 0 leaving, 1 rejected", [ELODIE, ZOE]),
    ("bad-email.csv", "students",
     ["3: MAIL is not a valid e-mail address"],
     "3 read, 2 created, 0 updated, 0 unchanged, 0 leaving, 1 rejected", [ELODIE, ZOE]),
    ("staff-bad-index.csv", "staff", ["3: INDICE is not a whole number"],
     "3 read, 2 created, 0 updated, 0 unchanged, 0 leaving, 1 rejected", [STAFF[0], STAFF[2]]),
]


@pytest.mark.parametrize(("name", "source", "errors", "text", "stored"), BAD_ROWS,
                         ids=[case[0].removesuffix(".csv") for case in BAD_ROWS])
def test_bad_rows_are_reported_and_the_rest_imported(run: Run, rows: Rows, name: str,
                                                     source: str, errors: list[str], text: str,
                                                     stored: list[Row]) -> None:
    check(run(path(name), source), 3, summary(name, text), counted(path(name), errors))
    assert rows() == by_id(stored)


def test_an_ine_held_by_another_person_is_rejected(run: Run, rows: Rows) -> None:
    run(path("students.csv"))
    name = path("ine-held.csv")
    check(run(name), 3, summary("ine-held.csv", "2 read, 1 created, 0 updated, 0 unchanged, "
          "3 leaving, 1 rejected"),
          counted(name, ["2: INE is already held by another person"]))
    assert [row[:2] for row in rows()] == [("20230003", "3456789012C"),
                                          ("20240002", "2345678901B"),
                                          ("20250001", "1234567890A"),
                                          ("20250010", "9999999999Z")]


def test_strict_imports_nothing_when_a_row_is_bad(run: Run, rows: Rows) -> None:
    run(path("students.csv"))
    before = rows()
    name = path("bad-email.csv")
    check(run(name, "students", "--strict"), 1, summary("bad-email.csv", "3 read, 0 created, "
          "0 updated, 2 unchanged, 0 leaving, 1 rejected; strict: nothing imported"),
          counted(name, ["3: MAIL is not a valid e-mail address"]))
    assert rows() == before


def test_strict_imports_a_clean_file(run: Run, rows: Rows) -> None:
    check(run(path("students.csv"), "students", "--strict"), 0, summary("students.csv",
          "3 read, 3 created, 0 updated, 0 unchanged, 0 leaving, 0 rejected"), [])
    assert rows() == by_id(GOOD)


# --- whole-file problems -------------------------------------------------------------------

@pytest.mark.parametrize(("name", "reason"), [
    ("missing-column.csv", "header has no column PRENOM (first_name)"),
    ("wrong-separator.csv", "not a ';'-separated file: the header is ','-separated"),
    ("header-missing.csv", "missing header: the first line must name the columns NUM_ETU;INE;"
                           "NOM;PRENOM;DATE_NAISSANCE;MAIL;ANNEE;ANNEE_PREMIERE_INSCRIPTION"),
    ("empty.csv", "empty file"),
    ("binary.csv", "not a text file (binary data)"),
    ("wrong-encoding.csv", "every line with non-ASCII characters is refused (line 2: not UTF-8 "
                           "(byte 0xC9 at column 29)): is the source's encoding (UTF-8) right?"),
], ids=["missing-column", "wrong-separator", "header-missing", "empty", "binary",
        "wrong-encoding"])
def test_whole_file_problems_import_nothing(run: Run, full_rows: Rows, name: str,
                                            reason: str) -> None:
    run(path("students.csv"))
    before = full_rows()
    check(run(path(name)), 1, "", [f"{path(name)}:1: {reason}"])
    assert full_rows() == before  # nobody marked as leaving either


def test_missing_file_is_a_user_error(run: Run, tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    check(run(str(missing)), 1, "", [f"{missing}: cannot read: No such file or directory"])


def test_unknown_source_names_the_known_ones(run: Run, rows: Rows) -> None:
    check(run(path("students.csv"), "etudiants"), 1, "",
          ["error: unknown population source 'etudiants': school poptest has emails, "
           "new-students, staff, students"])
    assert rows() == []


# --- scale and paths -----------------------------------------------------------------------

def test_progress_every_10000_rows(run: Run, rows: Rows, tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    big.write_text("NUM_ETU;INE;NOM;PRENOM;DATE_NAISSANCE;FORMATION;MAIL;ANNEE;"
                   "ANNEE_PREMIERE_INSCRIPTION\n" + "".join(
                       f"{30000000 + n};{n:010d}A;Nom{n};Prénom;01/09/2004;ICM;p{n}@example.org;"
                       "2026;2025\n" for n in range(25_000)), encoding="utf-8")
    result = run(str(big), "students", "--progress")
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [f"{big}: 10000 rows read", f"{big}: 20000 rows read"]
    assert result.stdout == (f"{big}: 25000 read, 25000 created, 0 updated, 0 unchanged, "
                             "0 leaving, 0 rejected\n")
    assert len(rows()) == 25_000


@pytest.mark.parametrize("variant", [
    ' 20250001 ;1234567890a;"Durand"; Élodie;14/03/2006 ;ICM;elodie.durand@example.org ;2026;'
    "2026",
    '"20250001";"1234567890A";"Durand";"Élodie";"14/03/2006";"ICM";"elodie.durand@example.org";'
    '"2026";"2026"',
], ids=["spaces", "quotes"])
def test_slow_path_agrees_with_fast_path(variant: str) -> None:
    """Spaces and quotes take the slow path; it must store what the fast path stores."""
    source = PopulationSource.model_validate({"category": "student", "columns": {
        "institutional_id": "NUM_ETU", "ine": "INE", "last_name": "NOM", "first_name": "PRENOM",
        "birth_date": "DATE_NAISSANCE", "email": "MAIL", "academic_year": "ANNEE",
        "first_enrolment_year": "ANNEE_PREMIERE_INSCRIPTION"}})
    header = ("NUM_ETU;INE;NOM;PRENOM;DATE_NAISSANCE;FORMATION;MAIL;ANNEE;"
              "ANNEE_PREMIERE_INSCRIPTION")
    clean = ("20250001;1234567890A;Durand;Élodie;14/03/2006;ICM;elodie.durand@example.org;2026;"
             "2026")
    fast = [tuple(row) for row in ExportRows("f", [header, clean], {}, source, None)]
    slow = [tuple(row) for row in ExportRows("f", [header, variant], {}, source, None)]
    assert fast == [(2, "20250001", "1234567890A", "Durand", "Élodie", "2006-03-14",
                     "elodie.durand@example.org", "2026", "2026")]
    # Years: the slow path gives integers, the fast path digits for the INTEGER column.
    assert slow == [(*fast[0][:-2], 2026, 2026)]


def test_demo_registry_exports_import_cleanly(tmp_path: Path) -> None:
    """The demo school's sample exports (demo/registry/) match its population sources."""
    host = tmp_path / "badged.yaml"
    host.write_text(f"tree: {REPO / 'config'}\nschool: demo\nstate_dir: {tmp_path / 'state'}\n"
                    f"runtime_dir: {tmp_path / 'run'}\n", encoding="utf-8")
    for source in ("students", "staff"):
        file = REPO / "demo" / "registry" / f"{source}.csv"
        result = CliRunner().invoke(main, ["--host-config", str(host), "population", "import",
                                           str(file), "--source", source])
        assert (result.exit_code, result.stderr) == (0, ""), result.output
        assert ", 0 rejected" in result.stdout


def test_staff_whose_status_matches_no_tariff_rule_are_warned_and_counted(run: Run) -> None:
    """A mistyped status code gets the default rate (78 / 99): kept, but seen — a warning
    per person (id and status code, no name) and a count in the summary."""
    result = run(path("staff-unknown-status.csv"), "staff")
    assert result.exit_code == 0, result.output
    assert result.stdout == summary(
        "staff-unknown-status.csv", "3 read, 3 created, 0 updated, 0 unchanged, 0 leaving, "
        "0 rejected; 1 staff on the default tariff (status matching no tariff rule: check "
        "their status codes)") + "\n"
    assert result.stderr.splitlines() == [
        f"{path('staff-unknown-status.csv')}: staff S0002: status 'ctrl' matches no tariff "
        "rule: default rate 78 / 99"]


# --- personal data in error lines ----------------------------------------------------------

PERSONAL = {"NUM_ETU", "MATRICULE", "INE", "NOM", "PRENOM", "DATE_NAISSANCE", "MAIL"}
REJECTING = [(name, source) for name, source, *_ in BAD_ROWS] + [("ine-held.csv", "students"),
                                                                 ("emails.csv", "emails")]


def fixture_lines(name: str) -> list[list[str]]:
    data = (FIXTURES / name).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("cp1252")
    return [line.split(";") for line in text.replace("\r", "").split("\n")]


@pytest.mark.parametrize(("name", "source"), REJECTING,
                         ids=[name.removesuffix(".csv") for name, _ in REJECTING])
def test_no_personal_value_of_a_rejected_row_reaches_stderr(run: Run, name: str,
                                                            source: str) -> None:
    """stderr (the journal, under a timer) names line, column and rule: never an e-mail,
    a birth date, an INE, a name or an id of the rejected rows."""
    run(path("students.csv"))
    result = run(path(name), source)
    assert result.exit_code == 3
    lines = fixture_lines(name)
    header = lines[0]
    numbers = {int(line.split(":")[1]) for line in result.stderr.splitlines()
               if line.startswith(path(name) + ":") and line.split(":")[1].isdigit()}
    assert numbers
    for number in numbers:
        for column, value in zip(header, lines[number - 1], strict=False):
            if column.strip() in PERSONAL and value.strip():
                assert value.strip() not in result.stderr, (column, number)


def test_thousands_of_bad_rows_give_a_few_lines_and_counts(run: Run, rows: Rows,
                                                          tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    head = ("NUM_ETU;INE;NOM;PRENOM;DATE_NAISSANCE;FORMATION;MAIL;ANNEE;"
            "ANNEE_PREMIERE_INSCRIPTION\n")
    body = "".join(f"{40000000 + n};;Nom{n};P;01/09/2004;ICM;p{n}-at-example.org;2026;2025\n"
                   for n in range(3000))
    body += "".join(f"{50000000 + n};;Nom{n};P;31/02/2004;ICM;;2026;2025\n" for n in range(40))
    body += "".join(f"{60000000 + n};;Nom{n};P;01/09/2004;ICM;;2026;2025\n" for n in range(5))
    big.write_text(head + body, encoding="utf-8")
    result = run(str(big))
    assert result.exit_code == 3
    lines = result.stderr.splitlines()
    assert lines[:20] == [f"{big}:{n}: MAIL is not a valid e-mail address"
                          for n in range(2, 22)]
    assert lines[20:] == [
        f"{big}: 3020 more rejected rows not shown (--report FILE lists them all)",
        f"{big}: 3000 rejected: MAIL is not a valid e-mail address",
        f"{big}: 40 rejected: DATE_NAISSANCE is not a valid dd/mm/yyyy date"]
    assert "-at-example.org" not in result.stderr
    assert result.stdout.endswith("5 created, 0 updated, 0 unchanged, 0 leaving, "
                                  "3040 rejected\n")


def test_report_file_has_every_detail_and_mode_0600(run: Run, tmp_path: Path) -> None:
    report = tmp_path / "report.txt"
    report.write_text("an older report\n")
    report.chmod(0o644)
    name = path("bad-date.csv")
    result = run(name, "students", "--report", str(report))
    assert result.exit_code == 3
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    assert report.read_text().splitlines() == [
        f"{name}:3: DATE_NAISSANCE is not a valid dd/mm/yyyy date: '31/02/2005'",
        f"{name}:4: DATE_NAISSANCE is not a valid dd/mm/yyyy date: '2004-02-29'"]
    assert "31/02/2005" not in result.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report.txt")]


def test_report_file_of_a_duplicate_and_of_leaving_notes(run: Run, tmp_path: Path) -> None:
    run(path("students.csv"))
    report = tmp_path / "report.txt"
    for name, details in [
        ("duplicate-ine.csv", ["5: duplicate INE: already on line 2: '1234567890A'"]),
        ("ine-held.csv", ["2: INE is already held by another person: '1234567890A, held by "
                          "20250001'"]),
        ("unreadable-row.csv", ["3: bad CSV quoting: unexpected end of data",
                                ": nobody marked as leaving: 1 rejected row without a "
                                "readable NUM_ETU"]),
    ]:
        assert run(path(name), "students", "--report", str(report)).exit_code == 3
        assert report.read_text().splitlines() == [f"{path(name)}{'' if d[0] == ':' else ':'}"
                                                   f"{d}" for d in details]


def test_a_report_that_cannot_be_written_is_refused_before_the_import(
        run: Run, rows: Rows, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder" / "report.txt"
    result = run(path("bad-date.csv"), "students", "--report", str(missing))
    assert result.exit_code == 1
    assert result.stderr == (f"error: {missing}: cannot write the report: No such file or "
                             "directory\n")
    assert rows() == []  # nothing imported: the operator would miss the details


def test_a_whole_file_problem_leaves_no_report(run: Run, tmp_path: Path) -> None:
    report = tmp_path / "out" / "report.txt"
    report.parent.mkdir()
    assert run(path("empty.csv"), "students", "--report", str(report)).exit_code == 1
    assert list(report.parent.iterdir()) == []


# --- a first import, straight into an empty store ------------------------------------------

def _outcome(conn: sqlite3.Connection, file: Path, name: str, source: PopulationSource,
             strict: bool) -> tuple[object, list[Row]]:
    """An import's report (or the error refusing the file) and what the store holds."""
    try:
        report: object = import_population(conn, file, name, source, strict=strict,
                                           today=date(2026, 9, 20))
    except Exception as exc:  # the refusal itself is what is compared
        report = (type(exc), str(exc))
    return report, conn.execute(f"SELECT {COLUMNS} FROM people ORDER BY id").fetchall()


@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
def test_a_first_import_does_what_a_staged_one_does(tmp_path: Path, host_file: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    strict: bool) -> None:
    """On an empty store the rows go straight into `people` (no staging table): every
    fixture file, under every source, gives the same report (counts, rejections, leaving,
    notes, or the same refusal) and the same people as through the staging table."""
    from badged.config.tree import load_tree
    from badged.store import people

    sources = load_tree(tmp_path / "config").site("poptest").school.population
    empty = open_store(tmp_path / "empty")
    empty.close()
    staged, staging = people.staged, people._staging
    calls: list[str] = []
    monkeypatch.setattr(people, "_staging", lambda *a: calls.append("staged") or staging(*a))
    for file in sorted(FIXTURES.glob("*.csv")):
        for name, source in sources.items():
            found = []
            for first in (True, False):
                state = tmp_path / f"{file.stem}-{name}-{first}"
                shutil.copytree(tmp_path / "empty", state)
                monkeypatch.setattr(people, "staged", staged if first else (
                    lambda conn, columns, rows, **_: staged(conn, columns, rows)))
                calls.clear()
                with closing(open_store(state)) as conn:
                    found.append(_outcome(conn, file, name, source, strict))
                if first and not isinstance(found[0][0], tuple):
                    # the names mapped: straight in; `emails` maps none, so it stages
                    assert calls == ([] if name != "emails" else ["staged"]), (file, name)
            assert found[0] == found[1], (file.name, name)
            shutil.rmtree(tmp_path / f"{file.stem}-{name}-True")
            shutil.rmtree(tmp_path / f"{file.stem}-{name}-False")
