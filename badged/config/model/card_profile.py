"""The typed config model: one class per file kind of the tree, plus the host file.

This is the single source of truth for the config's shape: validation, the JSON Schema
(`badged config schema`) and the documentation all come from these classes. Rules that
span fields or files live in `rules.py`, where they can point at the exact YAML node.
"""

from __future__ import annotations

import calendar
import codecs
import re
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
)

from ..schedules import parse_schedule


class Model(BaseModel):
    """Base of every config object: unknown keys are errors, objects are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


# --- scalar types -------------------------------------------------------------------------

Id = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid e-mail address")
    return value


def _month_day(value: str) -> str:
    m = re.fullmatch(r"(\d\d)-(\d\d)", value)
    if not m or not 1 <= int(m[1]) <= 12:
        raise ValueError(f"{value!r} is not a month-day: write MM-DD, e.g. '10-30'")
    month, day = int(m[1]), int(m[2])
    if not 1 <= day <= calendar.monthrange(2024, month)[1]:  # 2024: leap, so 02-29 is fine
        raise ValueError(f"{value!r} is not a month-day: {calendar.month_name[month]} "
                         f"has no day {day}")
    return value


def _schedule(value: str) -> str:
    parse_schedule(value)
    return value


def _aid(value: str) -> str:
    if not re.fullmatch(r"[0-9A-Fa-f]{6}", value):
        raise ValueError(f"{value!r} is not an AID: 3 bytes as 6 hex digits, MSB first")
    return value.upper()


def _encoding(value: str) -> str:
    try:
        codecs.lookup(value)
    except LookupError:
        raise ValueError(f"unknown encoding {value!r}") from None
    return value


def _listen(value: str) -> str:
    m = re.fullmatch(r"(\[[0-9A-Fa-f:]+\]|[A-Za-z0-9.-]*):(\d{1,5})", value)
    if not m or not 0 < int(m[2]) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. '127.0.0.1:8790' or ':8790')")
    return value


def _strftime(value: str) -> str:
    if "%" not in value:
        raise ValueError(f"{value!r} has no strftime directive (e.g. '%d/%m/%Y')")
    return value


Email = Annotated[str, AfterValidator(_email)]
MonthDay = Annotated[str, AfterValidator(_month_day)]
ScheduleText = Annotated[str, AfterValidator(_schedule)]
Aid = Annotated[str, AfterValidator(_aid)]
Encoding = Annotated[str, AfterValidator(_encoding)]
Listen = Annotated[str, AfterValidator(_listen)]
DateFormat = Annotated[str, AfterValidator(_strftime)]
Euros = Annotated[Decimal, Field(ge=0, max_digits=9, decimal_places=4)]
Name = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]

# Loopback by default (a site opens it to its Prometheus on purpose), on a port outside
# 9100-9999, where the Prometheus exporters' default port allocations crowd.
DEFAULT_METRICS_LISTEN = "127.0.0.1:8790"


# --- secrets: references only -------------------------------------------------------------

class FileSecret(Model):
    """A secret in a file (hex key, password): the file must be 0600 or stricter."""

    file: Annotated[str, StringConstraints(min_length=1)] = Field(description=(
        "Path of a file holding the secret (hex key or password), mode 0600 or stricter; relative"
        " paths are from the tree's root (the host file's folder for the host file)."))


class CredentialSecret(Model):
    """A systemd credential: `$CREDENTIALS_DIRECTORY/<credential>`."""

    credential: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.@-]+$")] = Field(
        description=(
            "Name of a systemd credential (LoadCredential=): the secret is read from "
            "$CREDENTIALS_DIRECTORY/<name>."))


def _ref_kind(value: Any) -> str | None:
    if isinstance(value, FileSecret | CredentialSecret | DiversifiedKey | SamKey):
        return {FileSecret: "<file>", CredentialSecret: "<credential>",
                DiversifiedKey: "<diversify>", SamKey: "<sam>"}[type(value)]
    if isinstance(value, dict):
        for key in ("file", "credential", "diversify", "sam"):
            if key in value:
                return f"<{key}>"
    return None


_LITERAL_SECRET = (
    "a secret is a reference, never a literal value: write {file: PATH} or {credential: NAME}"
)

SecretRef = Annotated[
    Annotated[FileSecret, Tag("<file>")] | Annotated[CredentialSecret, Tag("<credential>")],
    Discriminator(_ref_kind, custom_error_type="literal_secret",
                  custom_error_message=_LITERAL_SECRET),
]


# --- COMUE ---------------------------------------------------------------------------------

class Technology(StrEnum):
    DESFIRE_EV1 = "desfire-ev1"


class Visual(Model):
    """The card visual: a COMUE contract may impose its own."""

    imposed: bool = Field(False, description=(
        "Whether the COMUE contract imposes its own card visual."))
    template: str | None = Field(None, description=(
        "The visual's template (a file or reference the card printer knows)."))


class Comue(Model):
    """A COMUE's card purchasing contract."""

    name: Name = Field(description="The COMUE's name.")
    supplier: Name = Field(description="The card supplier of the purchasing contract.")
    technology: Technology = Field(Technology.DESFIRE_EV1, description=(
        "Card technology bought under the contract."))
    unit_price_eur: Euros = Field(description=(
        "Price of one card under the contract, in euros (e.g. 0.30)."))
    direct_price_eur: Euros | None = Field(None, description=(
        "What one card would cost bought directly, in euros (for `badged report costs`)."))
    visual: Visual = Field(Visual(), description="The card visual, imposed or not.")
    card_profile: Id | None = Field(None, description=(
        "Default card profile (an id of card-profiles/) for the COMUE's schools."))


# --- CROUS ---------------------------------------------------------------------------------

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


# --- card profiles (docs/contracts.md) -----------------------------------------------------

class KeyType(StrEnum):
    AES = "aes"
    TK3DES = "3k3des"
    TDES2K = "2k3des"
    DES = "des"


class AuthMode(StrEnum):
    AES = "aes"
    ISO = "iso"
    LEGACY = "legacy"


DEFAULT_AUTH = {KeyType.AES: AuthMode.AES, KeyType.TK3DES: AuthMode.ISO,
                KeyType.TDES2K: AuthMode.ISO, KeyType.DES: AuthMode.LEGACY}
ALLOWED_AUTH = {KeyType.AES: {AuthMode.AES}, KeyType.TK3DES: {AuthMode.ISO},
                KeyType.TDES2K: {AuthMode.ISO, AuthMode.LEGACY},
                KeyType.DES: {AuthMode.ISO, AuthMode.LEGACY}}


class CommMode(StrEnum):
    PLAIN = "plain"
    MAC = "mac"
    ENCIPHERED = "enciphered"


class Meaning(StrEnum):
    CROUS_NUMBER = "crous_number"
    ESCN = "escn"
    RAW = "raw"


class Decode(StrEnum):
    ASCII = "ascii"
    BCD = "bcd"
    HEX = "hex"
    UUID = "uuid"


DEFAULT_DECODE = {Meaning.CROUS_NUMBER: Decode.ASCII, Meaning.ESCN: Decode.UUID,
                  Meaning.RAW: Decode.HEX}

DiversifyPart = Annotated[
    str, StringConstraints(pattern=r"^(uid|aid|aid_msb|([0-9A-Fa-f]{2})+)$")
]


class Diversification(Model):
    """AN10922 AES-128 diversification of a master key (prefix 0x01 and padding implied)."""

    master: SecretRef = Field(description=(
        "The master key: a reference ({file: …} or {credential: …})."))
    input: list[DiversifyPart] = Field(min_length=1, description=(
        "Diversification input parts, in order: uid, aid (LSB first), aid_msb, or a hex literal "
        "(e.g. the system identifier)."))


class DiversifiedKey(Model):
    diversify: Diversification = Field(description=(
        "AN10922 AES-128 diversification of a master key."))


class SamRef(Model):
    """A key held by a SAM (e.g. the CROUS's USB SAM): not readable yet, declared only."""

    reader: str = Field(description="The reader rule name (role sam) of the SAM holding the key.")
    key_no: Annotated[int, Field(ge=0, le=255)] = Field(description="Key number in the SAM.")


class SamKey(Model):
    sam: SamRef = Field(description="The SAM and key number holding this key.")


KeyRef = Annotated[
    Annotated[FileSecret, Tag("<file>")]
    | Annotated[CredentialSecret, Tag("<credential>")]
    | Annotated[DiversifiedKey, Tag("<diversify>")]
    | Annotated[SamKey, Tag("<sam>")],
    Discriminator(_ref_kind, custom_error_type="literal_secret",
                  custom_error_message="a key is a reference, never a literal value: write "
                  "{file: PATH}, {credential: NAME} or {diversify: …}"),
]

KeyNo = Annotated[int, Field(ge=0, le=13)]


class ProfileFile(Model):
    """One file to read in an application, and what its content means."""

    id: Annotated[int, Field(ge=0, le=31)] = Field(description=(
        "File number in the application (0-31)."))
    comm: CommMode = Field(description="Communication mode of the file: plain, mac or enciphered.")
    read_key: KeyNo | Literal["free"] = Field(description=(
        "Key number that reads the file, or free."))
    offset: Annotated[int, Field(ge=0, lt=1 << 24)] = Field(0, description="First byte to read.")
    length: Annotated[int, Field(ge=0, lt=1 << 24)] = Field(0, description=(
        "Bytes to read; 0 reads the whole file."))
    meaning: Meaning = Field(Meaning.RAW, description=(
        "What the content is: crous_number, escn or raw (named in the CardRead)."))
    decode: Decode | None = Field(None, description=(
        "How to decode the bytes: ascii, bcd, hex or uuid (default from the meaning)."))

    @property
    def effective_decode(self) -> Decode:
        return self.decode or DEFAULT_DECODE[self.meaning]


class ProfileApplication(Model):
    aid: Aid = Field(description=(
        "Application id: 3 bytes as 6 hex digits, MSB first as people write it."))
    key_type: KeyType = Field(KeyType.AES, description=(
        "Key type of the application: aes, 3k3des, 2k3des or des."))
    keys: dict[KeyNo, KeyRef] = Field({}, description=(
        "Key number → key reference ({file: …}, {credential: …}, {diversify: …} or {sam: …}); "
        "never a literal value."))
    auth: AuthMode | None = Field(None, description=(
        "Authentication command: aes (AA), iso (1A) or legacy (0A); default from key_type."))
    files: list[ProfileFile] = Field(min_length=1, description=(
        "The files to read in this application."))

    @property
    def effective_auth(self) -> AuthMode:
        return self.auth or DEFAULT_AUTH[self.key_type]


class CsnSource(StrEnum):
    UID = "uid"
    CARD_UID = "card_uid"


PICC_AID = "000000"


class ProfilePicc(Model):
    """The card-level (PICC) master key, for a profile that reveals the real UID of a
    random-UID card with it alone (`card_uid_auth: {aid: "000000", key_no: 0}`)."""

    key_type: KeyType = Field(KeyType.AES, description="Type of the PICC master key.")
    keys: dict[KeyNo, KeyRef] = Field(min_length=1, description=(
        "Key 0, the PICC master key, by reference (file, credential, diversify)."))
    auth: AuthMode | None = Field(None, description=(
        "Authentication command: aes | iso | legacy; default from key_type."))

    @property
    def effective_auth(self) -> AuthMode:
        return self.auth or DEFAULT_AUTH[self.key_type]


class CardUidAuth(Model):
    """Which key opens GetCardUID: one of an application's, or with `aid: "000000"` the
    PICC master key of the profile's `picc:` (an application-less step)."""

    aid: Aid = Field(description=(
        'Application whose key opens GetCardUID; "000000": the PICC master key (picc).'))
    key_no: KeyNo = Field(description="Key number that opens GetCardUID.")


class CsnSpec(Model):
    source: CsnSource = Field(CsnSource.UID, description=(
        "Where the CSN comes from: uid (FF CA 00 00 00) or card_uid (GetCardUID after "
        "authentication, for random-UID cards)."))
    card_uid_auth: CardUidAuth | None = Field(None, description=(
        "With source card_uid: which application key opens GetCardUID."))


class CardProfile(Model):
    """What is on a card and how to read it."""

    technology: Technology = Field(Technology.DESFIRE_EV1, description="Card technology.")
    csn: CsnSpec = Field(CsnSpec(), description="How to read the card's serial number.")
    read_version: bool = Field(False, description=(
        "Whether to read GetVersion (3 more APDUs per read)."))
    picc: ProfilePicc | None = Field(None, description=(
        "The PICC master key, to read the real UID of a random-UID card with it alone."))
    applications: list[ProfileApplication] = Field([], description=(
        "The applications to read, in order."))


# --- layouts -------------------------------------------------------------------------------

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


# --- tariffs -------------------------------------------------------------------------------

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


# --- schools -------------------------------------------------------------------------------

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


class AccessFormat(StrEnum):
    """The door-system file formats (docs/access-control.md)."""

    TIL = "til"
    SYNCHRONIC = "synchronic"
    P2S = "p2s"
    GENERIC = "generic"


class CsnForm(StrEnum):
    """How the CSN is written in the card column: the form the door system's readers send."""

    HEX = "hex"
    REVERSED_HEX = "reversed_hex"
    DECIMAL = "decimal"
    REVERSED_DECIMAL = "reversed_decimal"


def _file_mode(value: str) -> str:
    if not re.fullmatch(r"0?[0-7]{3}", value):
        raise ValueError(f"{value!r} is not an octal file mode (e.g. '0640')")
    if int(value, 8) & 0o007:
        raise ValueError(f"mode {value} lets others read or write the file: the cards of "
                         "the school are never world-readable (e.g. '0640')")
    return value.zfill(4)


def _file_name(value: str) -> str:
    if "/" in value or "\0" in value or value.startswith(".") or value != value.strip():
        raise ValueError(f"{value!r} is not a plain file name (no '/', no leading '.')")
    return value


FileMode = Annotated[str, AfterValidator(_file_mode)]
PlainFileName = Annotated[str, StringConstraints(min_length=1, max_length=200),
                          AfterValidator(_file_name)]


class DirectoryDestination(Model):
    """A folder the door system reads: relative paths are under the host's state_dir."""

    path: Name = Field(description=(
        "The folder: absolute (it must exist, e.g. a mounted share) or relative to the host's "
        "state_dir (created)."))
    keep: Annotated[int, Field(ge=1, le=1000)] = Field(5, description=(
        "Versions kept: NAME and NAME.1 … NAME.<keep-1>; for P2S, the numbered files of the "
        "last `keep` deliveries."))
    mode: FileMode = Field("0640", description=(
        "Mode of the files (octal; others may never read them)."))


class SftpDestination(Model):
    """An SFTP server: host key checked against `known_hosts`, key-based auth only."""

    host: Name = Field(description="The SFTP server's host name or address.")
    port: Annotated[int, Field(gt=0, lt=65536)] = Field(22, description="Its SSH port.")
    user: Name = Field(description="The account badged logs in as.")
    key: SecretRef = Field(description=(
        "The private key (unencrypted OpenSSH or PEM, 0600), by reference: {file: PATH} or "
        "{credential: NAME}."))
    known_hosts: SecretRef = Field(description=(
        "A known_hosts file holding the server's host key, by reference; a server showing "
        "another key is refused."))
    path: Name = Field(".", description=(
        "The folder on the server (relative: from the account's home)."))
    mode: FileMode = Field("0640", description=(
        "Mode of the uploaded files (octal; others may never read them)."))
    timeout_seconds: Annotated[float, Field(gt=0, le=60)] = Field(10.0, description=(
        "Seconds allowed for each step (connect, handshake, login, each transfer)."))


class AccessDestination(Model):
    """Exactly one of `directory` and `sftp`."""

    directory: DirectoryDestination | None = Field(None, description=(
        "Write the files into a folder the door system reads."))
    sftp: SftpDestination | None = Field(None, description=(
        "Upload the files to the door system's SFTP server."))


class AccessExport(Model):
    """One file (or set of files) of the school's cards for a door system."""

    format: AccessFormat = Field(description=(
        "The door system's file format: til, synchronic, p2s, or generic (a layout)."))
    csn: CsnForm = Field(CsnForm.HEX, description=(
        "How the CSN is written in the card column: hex, reversed_hex, decimal or "
        "reversed_decimal."))
    schedule: ScheduleText = Field(description=(
        "When to run: 'every N minutes|hours|days|weeks', 'every day at HH:MM', 'every "
        "<weekday> at HH:MM' or 'every hour at :MM'."))
    on_change: bool = Field(False, description=(
        "Also run within seconds of a card state change (a lost or stolen card blocked at "
        "once)."))
    destination: AccessDestination = Field(description=(
        "Where the files go: directory or sftp."))
    file_name: PlainFileName | None = Field(None, description=(
        "The file's name (P2S: the end of the numbered names); default: <export name>.csv."))
    layout: Id | None = Field(None, description=(
        "Generic format only: the layout (an id of layouts/) giving the columns."))
    max_lines: Annotated[int, Field(ge=1)] | None = Field(None, description=(
        "P2S only: at most this many lines per file (default 1000)."))


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


# --- the host file (docs/contracts.md) -----------------------------------------------------

class Smtp(Model):
    host: Name = Field(description="SMTP relay host name (a name its certificate carries).")
    port: Annotated[int, Field(gt=0, lt=65536)] = Field(587, description="SMTP relay port.")
    starttls: bool = Field(True, description=(
        "STARTTLS with the certificate and host name verified."))
    ca_file: str | None = Field(None, description=(
        "Extra CA certificate (PEM) to verify the relay with, relative to the host file's folder."))
    username: str | None = Field(None, description="Login (AUTH), if the relay asks for one.")
    password: SecretRef | None = Field(None, description=(
        "Password: a reference ({file: …} or {credential: smtp}), never a value."))


class HostConfig(Model):
    """What this host runs: the tree, the school, where state and runtime files go."""

    tree: Name = Field(description="The config tree (relative: from this file's folder).")
    school: Id = Field(description="The school this host runs (an id of schools/).")
    state_dir: Name = Field("/var/lib/badged", description="SQLite store, outbox and archives.")
    runtime_dir: Name = Field("/run/badged", description="Control socket folder.")
    smtp: Smtp | None = Field(None, description=(
        "The SMTP relay (absent: the school's maildir, demo only)."))
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description=(
        "Log level of the daemon."))
    metrics_listen: Listen | None = Field(None, description=(
        "Prometheus metrics address HOST:PORT; overrides the school's."))


KINDS: dict[str, type[Model]] = {
    "comues": Comue,
    "crous": Crous,
    "card-profiles": CardProfile,
    "layouts": Layout,
    "tariffs": Tariffs,
    "schools": School,
}
