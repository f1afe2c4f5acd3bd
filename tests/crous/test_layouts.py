"""Rendering is pure and exact: the bytes of a file are tested one by one."""

from __future__ import annotations

from datetime import date

import pytest

from badged.config.model import Layout
from badged.config.model import LayoutField as F
from badged.crous.layouts import RenderError, file_name, render

DEFAULT = Layout.model_validate({
    "columns": [{"header": "identifier", "field": "identifier"},
                {"header": "lastName", "field": "last_name"},
                {"header": "firstName", "field": "first_name"},
                {"header": "birthDate", "field": "birth_date"},
                {"header": "tarif", "field": "id_rate"},
                {"header": "dueDate", "field": "due_date", "format": "%Y-%m-%d"}],
})
ROWS = [
    {F.IDENTIFIER: "e1", F.LAST_NAME: "Lefèvre", F.FIRST_NAME: "Zoé",
     F.BIRTH_DATE: date(2005, 3, 9), F.ID_RATE: 1, F.DUE_DATE: date(2027, 8, 31)},
    {F.IDENTIFIER: "p2", F.LAST_NAME: "D'Arc; dite", F.FIRST_NAME: None,
     F.BIRTH_DATE: None, F.ID_RATE: 99, F.DUE_DATE: date(2026, 12, 1)},
]


def test_default_layout_bytes() -> None:
    out = render(DEFAULT, ROWS, name="x.csv")
    assert out.content == (
        b"identifier;lastName;firstName;birthDate;tarif;dueDate\r\n"
        b"e1;Lef\xc3\xa8vre;Zo\xc3\xa9;09/03/2005;1;2027-08-31\r\n"
        b'p2;"D\'Arc; dite";;;99;2026-12-01\r\n')
    assert out.charset == "utf-8"


def test_windows_1252_lf_comma_no_header() -> None:
    layout = DEFAULT.model_copy(update={"encoding": "cp1252", "line_ending": "lf",
                                        "separator": ",", "header": False})
    assert render(layout, ROWS[:1], name="x").content == (
        b"e1,Lef\xe8vre,Zo\xe9,09/03/2005,1,2027-08-31\n")


def test_unencodable_name_is_an_error_naming_the_person() -> None:
    layout = DEFAULT.model_copy(update={"encoding": "ascii"})
    with pytest.raises(RenderError, match="e1: 'è' in 'Lefèvre' cannot be written in ascii"):
        render(layout, ROWS, name="x", row_ids=["e1", "p2"])


def test_file_name_pattern() -> None:
    layout = DEFAULT.model_copy(update={"file_name": "{uai}-{kind}-{date:%Y%m%d}.csv"})
    assert file_name(layout, school="emse", uai="0429999A", crous="lyon", kind="departs",
                     when=date(2026, 10, 2)) == "0429999A-departs-20261002.csv"
