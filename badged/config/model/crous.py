"""The files of `crous/`: a CROUS's mailboxes, API CROUS access and deadlines."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from .common import Email, Id, Model, MonthDay, Name
from .references import SecretRef


class ExchangeKind(StrEnum):
    REINSCRIPTIONS = "reinscriptions"
    PRIMO_ENTRANTS = "primo_entrants"
    PERSONNELS = "personnels"
    DEPARTS = "departs"


class TokenFlow(StrEnum):
    """How the API CROUS hands out tokens (see docs/crous-api.md)."""

    OAUTH2 = "oauth2"   # POST token_url?grant_type=client_credentials, JSON access_token
    LEGACY = "legacy"   # POST {base_url}/v1/token, token in the `authorization` header


class StudentIdentifier(StrEnum):
    """What identifies a student at the CROUS: the institutional id, or the INE."""

    INSTITUTIONAL_ID = "institutional_id"
    INE = "ine"


Url = Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]


class CrousApi(Model):
    """API CROUS access (docs/crous-api.md); the client secret is a reference, never a value."""

    base_url: Url = Field(description="Base URL of the API CROUS (its paths start with "
                          "/beforeizly/v1).")
    token_url: Url | None = Field(None, description=(
        "OAuth2 token URL of the API CROUS; required by the oauth2 flow (the legacy flow "
        "uses {base_url}/v1/token)."))
    token_flow: TokenFlow = Field(TokenFlow.OAUTH2, description=(
        "oauth2 (current: client credentials at token_url) or legacy (before 2025)."))
    legacy_env: Literal["PRD", "PPD"] = Field("PRD", description=(
        "Legacy token flow only: the environment asked for (PRD production, PPD "
        "pre-production)."))
    client_id: Name = Field(description="Client id given by the CROUS.")
    client_secret: SecretRef = Field(description=(
        "Client secret: a reference ({file: …} or {credential: …}), never a value."))
    crous_number: str | None = Field(None, description=(
        "numeroCrous: the CROUS's number, for `badged crous tariffs`."))
    student_identifier: StudentIdentifier = Field(
        StudentIdentifier.INSTITUTIONAL_ID, description=(
            "A student's holder identifier: institutional_id, or ine (the INE when known)."))
    connect_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = Field(5.0, description=(
        "Seconds to wait for a connection."))
    read_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = Field(30.0, description=(
        "Seconds to wait for an answer (a write whose answer is lost is looked up before "
        "it is sent again)."))
    max_retries: Annotated[int, Field(ge=0, le=10)] = Field(4, description=(
        "Retries of one request on 5xx, 429 and network errors."))
    backoff_seconds: Annotated[float, Field(ge=0, le=60)] = Field(1.0, description=(
        "First backoff between retries; doubled each time, with full jitter (a Retry-After "
        "is honoured)."))
    request_budget: Annotated[int, Field(ge=1)] = Field(50_000, description=(
        "Requests one sync may make; what is left waits for the next run."))


class Crous(Model):
    """A CROUS: mailboxes, API, deadlines and the file layout it expects."""

    name: Name = Field(description="The CROUS's name.")
    mailboxes: dict[Id, Email] = Field(min_length=1, description=(
        "Mailboxes by name (e.g. monetique, restauration) → e-mail address; exchanges name their "
        "recipients from these."))
    api: CrousApi | None = Field(None, description="API CROUS access, if this CROUS offers it.")
    deadlines: dict[ExchangeKind, MonthDay] = Field({}, description=(
        "CROUS deadlines per exchange kind as MM-DD in the academic year (e.g. reinscriptions: "
        "'10-30')."))
    layout: Id = Field("crous-default", description=(
        "The CROUS file layout (an id of layouts/) its exchanges use by default."))
    departs_include_students: bool = Field(False, description=(
        "Whether students whose rights ended go in the départs file too."))
