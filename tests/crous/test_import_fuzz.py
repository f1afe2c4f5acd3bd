"""Fuzzing the two imports of foreign files: the CROUS card CSV and the registry exports.

Property: a typed error for the file as a whole (and the store untouched), or a report
whose counts add up, matching what the store holds; never another exception, a hang or a
partial write. Files are glued from plausible and broken pieces (pools of values, so that
duplicates and conflicts with the seeded store happen; quotes, separators, encodings, NUL
bytes, CR, BOM). Each example starts from the same seeded store (reproducible).
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import closing
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from badged.config.model import PopulationSource
from badged.crous.cards_csv import CardsFileError, _clean_file_rows, _Rows, import_cards
from badged.crous.population import PopulationError, import_population
from badged.crous.textfile import TextFileError
from badged.store.db import open_store


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


@pytest.fixture(scope="module")
def store(workdir: Path) -> Iterator[sqlite3.Connection]:
    with closing(open_store(workdir / "state")) as conn:
        yield conn


FIXTURES = Path(__file__).parents[1] / "fixtures"


def physical_lines(data: bytes) -> int:
    """How many lines the imports see (split on LF, else on CR)."""
    return len(data.split(b"\n" if b"\n" in data else b"\r"))


def dump(conn: sqlite3.Connection, table: str) -> list[tuple[object, ...]]:
    return conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()


noise = st.sampled_from(["", " ", '"', ";", ",", "\t", "é", "\x00", "\r", "\ufeff", "x" * 300,
                         "\u2028", "\x85", "Ã©", "\\"])


def encoded(text: str, how: str) -> bytes:
    if how == "cp1252":
        return text.encode("cp1252", "replace")
    if how == "bom":
        return b"\xef\xbb\xbf" + text.encode("utf-8", "surrogatepass")
    return text.encode("utf-8", "surrogatepass")


# --- CROUS card CSV ------------------------------------------------------------------------

CARD_HEADER = ("PIX.SS;PIX.NN;AAPL;NUM_PROTOCOLAIRE;NUM_APPLICATIF;NFO;CNOUS;CROUS;EMETTEUR;"
               "MAPPING;NUM_CARTE;DATE_CREATION")
csn = st.sampled_from(["04000000000000", "0471928A083C80", "04a1b2c3d4e5f6", "04G1", "047",
                       "", " 04112233445566 ", "04" * 40])
num_carte = st.sampled_from(["36000000", "36882379", "1", "3688237O", "9" * 19, "", "-5"])
card_date = st.sampled_from(["01/09/2024", "31/02/2024", "2024-09-03", "1/9/2024", "",
                             "00/00/0000"])
card_row = st.builds(
    lambda c, r, n, d, emetteur, extra: ";".join(
        ["03", "0000", "D1", c, r, "0", "0", "0691", emetteur, "1", n, d, *extra]),
    csn, csn, num_carte, card_date, st.sampled_from(["41", "1A", "4G", "F" * 16, ""]),
    st.lists(noise, max_size=1))
card_line = st.one_of(card_row, card_row.map(lambda r: '"' + r.replace(";", '";"') + '"'),
                      st.lists(noise, max_size=4).map("".join), st.text(max_size=40))
card_file = st.tuples(
    st.sampled_from([CARD_HEADER, CARD_HEADER, CARD_HEADER.lower(), CARD_HEADER.replace(";", ","),
                     "", " " + CARD_HEADER]),
    st.lists(card_line, max_size=12), st.sampled_from(["\n", "\r\n", "\r"]),
    st.sampled_from(["utf-8", "cp1252", "bom"]))


@given(card_file, st.booleans(), st.booleans())
def test_fuzzed_card_csv(store: sqlite3.Connection, workdir: Path,
                         parts: tuple[str, list[str], str, str], strict: bool,
                         inverse: bool) -> None:
    header, lines, newline, how = parts
    with store:
        store.execute("DELETE FROM crous_cards")
    import_cards(store, FIXTURES / "crous-csv" / "good.csv")
    file = workdir / "cards.csv"
    file.write_bytes(encoded(newline.join([header, *lines]), how))
    before = dump(store, "crous_cards")
    try:
        report = import_cards(store, file, inverse_csn=inverse, strict=strict)
    except CardsFileError as exc:
        assert str(exc).startswith(f"{file}")
        assert dump(store, "crous_cards") == before
        return
    after = dump(store, "crous_cards")
    for rejection in report.rejections:
        assert 2 <= rejection.line <= physical_lines(file.read_bytes()) and rejection.problems
    if report.outcome == "refused":
        assert after == before
    else:
        assert report.read == report.imported + report.unchanged + report.rejected
        assert len(after) == len(before) + report.imported - report.updated
    for line in report.diagnostics():
        line.encode("utf-8")



# The two parsing paths of the card CSV: a file clean enough for the column-at-a-time path
# must give the very rows (and count) the line-by-line path gives. Mostly clean lines, each
# field sometimes spoiled in one of the ways that path must notice.
clean_value = {
    "csn": st.sampled_from(["04A1B2C3D4E5F6", "04a1b2c3d4e5f6", "0471928A083C80", "04"]),
    "opaque": st.sampled_from(["03", "0000", "D1", "0", "", "#!~", "a:b<c"]),
    "emetteur": st.sampled_from(["41", "1A", "1a", "0"]),
    "decimal": st.sampled_from(["1", "36000000", "000042", "9" * 18]),
    "date": st.sampled_from(["01/09/2024", "29/02/2024", "31/12/2025"]),
}
SPOILED = ["", " ", '"', "\r", "\x1c", "é", "\x7f", "\t", "047", "04G1", "9" * 19, "F" * 16,
           "31/02/2024", "1/9/2024", ";", "x\ry", " 41", "00/00/0000"]
spoiled = st.sampled_from(SPOILED)
KINDS = ("opaque", "opaque", "opaque", "csn", "csn", "opaque", "opaque", "opaque", "emetteur",
         "decimal", "decimal", "date")


@st.composite
def clean_card_line(draw: st.DrawFn) -> str:
    fields = [draw(clean_value[kind]) for kind in KINDS]
    if draw(st.integers(0, 5)) == 0:
        fields[draw(st.integers(0, len(fields) - 1))] = draw(spoiled)
    return ";".join(fields) + draw(st.sampled_from(["", "", "\r"]))


@given(st.lists(st.one_of(clean_card_line(), st.sampled_from(["", "\r", ";;"])),
                max_size=8), st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_clean_file_path_gives_the_rows_of_the_line_path(lines: list[str], newline: str,
                                                         inverse: bool) -> None:
    text = newline.join([CARD_HEADER, *lines])
    paths_agree(text.split("\n" if "\n" in text else "\r"), inverse)


def paths_agree(lines: list[str], inverse: bool) -> bool:
    """Whether the clean-file path gives the rows of the line path; False if it declined."""
    fast = _clean_file_rows(lines, inverse, None)
    rows = _Rows(lines, inverse_csn=inverse, progress=None)
    slow = rows._each_line()
    if fast is not None:
        assert (fast, len(fast)) == (slow, rows.read) and not rows.rejections, lines
    return fast is not None


def test_each_spoiled_field_is_noticed_by_the_clean_file_path() -> None:
    """Every field of a line, each spoiled value, both line ends: same rows or declined."""
    good = "03;0000;D1;04A1B2C3D4E5F6;04A1B2C3D4E5F6;0;0;0691;41;1;36000000;01/09/2024"
    for end in ("", "\r"):
        assert paths_agree([CARD_HEADER, good + end, ""], inverse=False)
        for at in range(12):
            for value in SPOILED:
                fields = good.split(";")
                fields[at] = value
                lines = [CARD_HEADER, good.replace("04A1", "04B1") + end, ";".join(fields) + end]
                paths_agree([*lines, ""], inverse=at == 3)


def test_a_clean_file_takes_the_column_path() -> None:
    lines = [CARD_HEADER, "03;0000;D1;04a1b2;04A1B2;0;0;0691;1a;1;36000000;29/02/2024\r",
             "03;0000;D1;04C3D4;04C3D4;0;0;0691;41;2;36000001;01/09/2024\r", ""]
    assert _clean_file_rows(lines, False, None) == [
        (2, "03", "0000", "D1", "04A1B2", "04A1B2", "0", "0", "0691", 26, 1, 36000000,
         "2024-02-29"),
        (3, "03", "0000", "D1", "04C3D4", "04C3D4", "0", "0", "0691", 65, 2, 36000001,
         "2024-09-01")]


# --- registry export -----------------------------------------------------------------------

SOURCE = PopulationSource.model_validate({"category": "student", "columns": {
    "institutional_id": "NUM_ETU", "ine": "INE", "last_name": "NOM", "first_name": "PRENOM",
    "birth_date": "DATE_NAISSANCE", "email": "MAIL", "academic_year": "ANNEE",
    "first_enrolment_year": "ANNEE_PREMIERE_INSCRIPTION"}})
PERSON_HEADER = "NUM_ETU;INE;NOM;PRENOM;DATE_NAISSANCE;MAIL;ANNEE;ANNEE_PREMIERE_INSCRIPTION"
person_id = st.sampled_from(["20250001", "20240002", "E3", "", " 20250001 ", "x" * 100])
ine = st.sampled_from(["1234567890A", "2345678901B", "1234567890a", "", "12345", "ÉÉÉÉÉÉÉÉÉÉÉ"])
name_text = st.one_of(st.sampled_from(["Durand", "Noël", "", " ", "O'Brien"]),
                      st.text(max_size=12))
birth = st.sampled_from(["14/03/2006", "31/02/2005", "2004-02-29", "29/02/2004", "", "1/1/1"])
email = st.sampled_from(["a@example.org", "noel.lefevre@", "", "a@b", "é@example.org"])
year = st.sampled_from(["2026", "2026-2027", "", "0", "99999"])
person_row = st.builds(
    lambda *fields: ";".join([*fields[:-1], *fields[-1]]),
    person_id, ine, name_text, name_text, birth, email, year, year, st.lists(noise, max_size=1))
person_line = st.one_of(person_row, person_row.map(lambda r: '"' + r.replace(";", '";"') + '"'),
                        st.lists(noise, max_size=4).map("".join))
person_file = st.tuples(
    st.sampled_from([PERSON_HEADER, PERSON_HEADER, PERSON_HEADER.replace(";", ","), "",
                     "NUM_ETU;NOM"]),
    st.lists(person_line, max_size=12), st.sampled_from(["\n", "\r\n", "\r"]),
    st.sampled_from(["utf-8", "cp1252", "bom"]))


@given(person_file, st.booleans())
def test_fuzzed_registry_export(store: sqlite3.Connection, workdir: Path,
                                parts: tuple[str, list[str], str, str], strict: bool) -> None:
    header, lines, newline, how = parts
    with store:
        store.execute("DELETE FROM people")
    import_population(store, FIXTURES / "population" / "students.csv", "students", SOURCE,
                      today=date(2026, 9, 1))
    file = workdir / "students.csv"
    file.write_bytes(encoded(newline.join([header, *lines]), how))
    before = dump(store, "people")
    try:
        report = import_population(store, file, "students", SOURCE, strict=strict,
                                   today=date(2026, 9, 1))
    except (TextFileError, PopulationError) as exc:
        assert str(file) in str(exc) or isinstance(exc, PopulationError)
        assert dump(store, "people") == before
        return
    after = dump(store, "people")
    for rejection in report.rejections:
        assert 2 <= rejection.line <= physical_lines(file.read_bytes()) and rejection.problems
    if report.outcome == "refused":
        assert after == before
    else:
        assert report.read == (report.created + report.updated + report.unchanged
                               + report.rejected)
        assert len(after) == len(before) + report.created
    for line in report.diagnostics():
        line.encode("utf-8")
