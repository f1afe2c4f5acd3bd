"""The files of `schools/`: one school, its readers, CROUS exchanges and policies.

Its registry exports and door-system exports have modules of their own
(population.py, access_export.py).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from .access_export import AccessExport
from .common import DEFAULT_METRICS_LISTEN, Email, Id, Listen, Model, MonthDay, Name, ScheduleText
from .comue import Visual
from .crous import ExchangeKind
from .population import PopulationSource


class ReaderRole(StrEnum):
    ENROLMENT = "enrolment"
    LOOKUP = "lookup"
    SAM = "sam"


class ReaderRule(Model):
    """Readers whose PC/SC name matches `name` (exact or glob) get `role`."""

    name: Name = Field(description=(
        "PC/SC reader name, exact or glob (badged reader list shows the names); also the label of"
        " its metrics."))
    role: ReaderRole = Field(description=(
        "What a tap on it does: enrolment (the desk), lookup, or sam (the CROUS SAM's slot)."))


class Exchange(Model):
    kind: ExchangeKind = Field(description=(
        "What the file tells the CROUS: reinscriptions, primo_entrants, personnels or departs."))
    schedule: ScheduleText = Field(description=(
        "When to run: 'every N minutes|hours|days|weeks', 'every day at HH:MM', 'every <weekday> "
        "at HH:MM' or 'every hour at :MM'."))
    transport: Literal["mail", "api"] = Field("mail", description=(
        "How the file goes: mail (outbox) or api."))
    recipients: list[Id] = Field([], description=(
        "Mailbox names of the CROUS (keys of its mailboxes) the mail goes to."))
    layout: Id | None = Field(None, description=(
        "File layout (an id of layouts/); default: the CROUS's."))


class CardStock(Model):
    low_threshold: Annotated[int, Field(ge=0)] = Field(0, description=(
        "Blank cards in stock below which the stock is low (alert BadgedCardStockLow)."))


class Enrolment(Model):
    allow_unknown_to_crous: bool = Field(False, description=(
        "Whether a card unknown to the CROUS (no number on it, none in the CROUS CSV) may be "
        "enrolled."))
    second_card: Literal["disable_older", "refuse"] = Field("disable_older", description=(
        "A person's second card: disable_older (the older one expires) or refuse."))


class School(Model):
    """One school: one daemon, one COMUE contract, one CROUS."""

    name: Name = Field(description="The school's name.")
    uai: Annotated[str, StringConstraints(pattern=r"^\d{7}[A-Z]$")] = Field(description=(
        "UAI/RNE of the school (7 digits and a letter)."))
    comue: Id = Field(description="The COMUE (an id of comues/) whose contract supplies the cards.")
    crous: Id = Field(description="The CROUS (an id of crous/) the school deals with.")
    card_profile: Id | None = Field(None, description=(
        "Card profile (an id of card-profiles/); default: the COMUE's."))
    visual: Visual | None = Field(None, description=(
        "Card visual, if the school has its own (and the COMUE imposes none)."))
    tariffs: Id = Field(description="Tariff grid (an id of tariffs/).")
    mail_from: Email = Field(description="Sender address of the mails to the CROUS.")
    readers: list[ReaderRule] = Field([], description="Reader rules: PC/SC name or glob → role.")
    population: dict[Id, PopulationSource] = Field({}, description=(
        "Registry exports by source name (e.g. students, staff)."))
    exchanges: list[Exchange] = Field([], description="Files for the CROUS and their schedules.")
    access_exports: dict[Id, AccessExport] = Field({}, description=(
        "Door-system exports by name: format, CSN form, destination, schedule."))
    enrolment: Enrolment = Field(Enrolment(), description="Enrolment policy.")
    card_stock: CardStock = Field(CardStock(), description="Blank card stock settings.")
    academic_year_start: MonthDay = Field("09-01", description=(
        "First day of the academic year, MM-DD."))
    metrics_listen: Listen = Field(DEFAULT_METRICS_LISTEN, description=(
        "Prometheus metrics address HOST:PORT (the host file's metrics_listen wins)."))
    maildir: str | None = Field(None, description=(
        "A local maildir under the state folder instead of SMTP (demo only)."))
    archive_retention_days: Annotated[int, Field(ge=1)] = Field(400, description=(
        "Days a sent batch's archive is kept."))
    retention_days: Annotated[int, Field(ge=1)] = Field(400, description=(
        "Days a person's records are kept after they left (GDPR): then the daily "
        "`people-purge` job erases their name, birth date, e-mail and INE and unlinks "
        "their cards (`badged person purge`)."))
