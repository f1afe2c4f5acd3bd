"""The files of `tariffs/`: which CROUS rate (code société, code tarif) each person gets."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from .common import Model


class Rate(Model):
    id_company_rate: Annotated[int, Field(ge=0)] = Field(description=(
        "idCompanyRate, the CROUS's \"code société\"."))
    id_rate: Annotated[int, Field(ge=0)] = Field(description="idRate, the CROUS's \"code tarif\".")


class TariffRule(Model):
    """Staff with one of `status` and an index in [index_min, index_max] get this rate."""

    status: list[Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+$")]] = Field(
        min_length=1, description=(
            "Staff status codes (lower case) this rule applies to."))
    index_min: Annotated[int, Field(ge=0)] = Field(0, description="Lowest staff index of the rule.")
    index_max: Annotated[int, Field(ge=0)] | None = Field(None, description=(
        "Highest staff index of the rule (none: no upper bound)."))
    id_company_rate: Annotated[int, Field(ge=0)] = Field(description=(
        "idCompanyRate (\"code société\") of the people matched."))
    id_rate: Annotated[int, Field(ge=0)] = Field(description=(
        "idRate (\"code tarif\") of the people matched."))


class Tariffs(Model):
    students: Rate = Field(Rate(id_company_rate=10, id_rate=1), description=(
        "Rate of students (10 / 1 at the CROUS)."))
    default: Rate = Field(Rate(id_company_rate=78, id_rate=99), description=(
        "Rate of staff matching no rule (78 / 99): each is warned about at import and counted in "
        "badged_tariff_default_people."))
    rules: list[TariffRule] = Field([], description=(
        "Staff rules, first match wins: status and index range → rate."))
