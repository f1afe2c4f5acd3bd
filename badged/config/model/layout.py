"""The files of `layouts/`: how one CROUS (or a door system) wants a CSV file laid out."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from .common import DateFormat, Encoding, Model, Name


class LayoutField(StrEnum):
    """Fields a CROUS file column can show (API CROUS names where they exist)."""

    IDENTIFIER = "identifier"
    INSTITUTIONAL_ID = "institutional_id"
    INE = "ine"
    LAST_NAME = "last_name"
    FIRST_NAME = "first_name"
    EMAIL = "email"
    BIRTH_DATE = "birth_date"
    RNE_ORG_CODE = "rne_org_code"
    ID_COMPANY_RATE = "id_company_rate"
    ID_RATE = "id_rate"
    DUE_DATE = "due_date"
    CATEGORY = "category"
    CROUS_NUMBER = "crous_number"
    CSN = "csn"
    KIND = "kind"
    # door-system exports (access_exports of a school; see ACCESS_LAYOUT_FIELDS)
    CARD_ID = "card_id"
    VALID_FROM = "valid_from"
    VALID_UNTIL = "valid_until"
    VALID = "valid"
    BLOCKED = "blocked"
    STATE = "state"
    SCHOOL_NAME = "school_name"


# What a door-system export fills: a layout used by an access export may show only these;
# `valid`, `blocked` or `state` make it a format that carries a status.
ACCESS_LAYOUT_FIELDS = frozenset({
    LayoutField.IDENTIFIER, LayoutField.INSTITUTIONAL_ID, LayoutField.INE,
    LayoutField.LAST_NAME, LayoutField.FIRST_NAME, LayoutField.EMAIL, LayoutField.BIRTH_DATE,
    LayoutField.CATEGORY, LayoutField.CROUS_NUMBER, LayoutField.CSN, LayoutField.CARD_ID,
    LayoutField.VALID_FROM, LayoutField.VALID_UNTIL, LayoutField.VALID, LayoutField.BLOCKED,
    LayoutField.STATE, LayoutField.SCHOOL_NAME,
})
ACCESS_STATUS_FIELDS = frozenset({LayoutField.VALID, LayoutField.BLOCKED, LayoutField.STATE})
# Fields only door-system exports fill: a CROUS exchange's layout cannot show them.
ACCESS_ONLY_FIELDS = frozenset({
    LayoutField.CARD_ID, LayoutField.VALID_FROM, LayoutField.VALID_UNTIL, LayoutField.VALID,
    LayoutField.BLOCKED, LayoutField.STATE, LayoutField.SCHOOL_NAME,
})


class Column(Model):
    header: Name = Field(description="Column header in the file.")
    field: LayoutField = Field(description="What the column holds.")
    format: DateFormat | None = Field(None, description=(
        "strftime format of a date column (default: the layout's date_format)."))


class Layout(Model):
    """How one CROUS wants a file: columns, separator, encoding, line ending, file name."""

    columns: list[Column] = Field(min_length=1, description="The file's columns, in order.")
    separator: Annotated[str, StringConstraints(min_length=1, max_length=1)] = Field(
        ";", description=(
            "Field separator (one character)."))
    encoding: Encoding = Field("utf-8", description=(
        "Character encoding of the file (e.g. utf-8, cp1252)."))
    line_ending: Literal["crlf", "lf"] = Field("crlf", description="Line ending: crlf or lf.")
    date_format: DateFormat = Field("%d/%m/%Y", description=(
        "strftime format of dates (e.g. %d/%m/%Y)."))
    header: bool = Field(True, description="Whether the file starts with a header line.")
    file_name: Name = Field("{school}-{kind}-{date:%Y%m%d}.csv", description=(
        "File name pattern: {school}, {uai}, {crous}, {kind}, {date:%Y%m%d}."))
