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
from badged.crous.cards_csv import CardsFileError, import_cards
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
