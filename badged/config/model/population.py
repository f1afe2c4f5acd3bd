"""A school's registry exports (`population:` of a school file): CSV dialect and columns."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints

from .common import DateFormat, Encoding, Model, Name


class Category(StrEnum):
    STUDENT = "student"
    STAFF = "staff"


class PersonField(StrEnum):
    """Fields of a person that a registry export can fill."""

    INSTITUTIONAL_ID = "institutional_id"
    INE = "ine"
    LAST_NAME = "last_name"
    FIRST_NAME = "first_name"
    BIRTH_DATE = "birth_date"
    EMAIL = "email"
    ACADEMIC_YEAR = "academic_year"
    FIRST_ENROLMENT_YEAR = "first_enrolment_year"
    STATUS_CODE = "status_code"
    INDEX = "index"
    END_OF_RIGHTS = "end_of_rights"


class PopulationSource(Model):
    """A registry export (students or staff): its CSV dialect and column mapping."""

    category: Category = Field(description="Who the export lists: student or staff.")
    columns: dict[PersonField, Name] = Field(min_length=1, description=(
        "Person field → column header of the export."))
    encoding: Encoding = Field("utf-8", description="Character encoding of the export.")
    separator: Annotated[str, StringConstraints(min_length=1, max_length=1)] = Field(
        ";", description=(
            "Field separator (one character)."))
    date_format: DateFormat = Field("%d/%m/%Y", description=(
        "strftime format of the export's dates."))
    full_export: bool = Field(True, description=(
        "Whether each export lists everyone: people absent from it are marked as leaving."))
    leaving_grace_days: Annotated[int, Field(ge=0)] = Field(30, description=(
        "Days a person absent from a full export stays before the CROUS hears of the départ."))
