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

from .schedules import parse_schedule


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

    file: Annotated[str, StringConstraints(min_length=1)]


class CredentialSecret(Model):
    """A systemd credential: `$CREDENTIALS_DIRECTORY/<credential>`."""

    credential: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.@-]+$")]


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

    imposed: bool = False
    template: str | None = None


class Comue(Model):
    """A COMUE's card purchasing contract."""

    name: Name
    supplier: Name
    technology: Technology = Technology.DESFIRE_EV1
    unit_price_eur: Euros
    direct_price_eur: Euros | None = None
    visual: Visual = Visual()
    card_profile: Id | None = None


# --- CROUS ---------------------------------------------------------------------------------

class ExchangeKind(StrEnum):
    REINSCRIPTIONS = "reinscriptions"
    PRIMO_ENTRANTS = "primo_entrants"
    PERSONNELS = "personnels"
    DEPARTS = "departs"


class CrousApi(Model):
    """API CROUS access; the client secret is a reference."""

    base_url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
    token_url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")]
    client_id: Name
    client_secret: SecretRef
    crous_number: str | None = None


class Crous(Model):
    """A CROUS: mailboxes, API, deadlines and the file layout it expects."""

    name: Name
    mailboxes: dict[Id, Email] = Field(min_length=1)
    api: CrousApi | None = None
    deadlines: dict[ExchangeKind, MonthDay] = {}
    layout: Id = "crous-default"
    departs_include_students: bool = False


# --- card profiles (DESIGN.md §3.1) --------------------------------------------------------

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

    master: SecretRef
    input: list[DiversifyPart] = Field(min_length=1)


class DiversifiedKey(Model):
    diversify: Diversification


class SamRef(Model):
    """A key held by a SAM (e.g. the CROUS's USB SAM): not readable yet, declared only."""

    reader: str
    key_no: Annotated[int, Field(ge=0, le=255)]


class SamKey(Model):
    sam: SamRef


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

    id: Annotated[int, Field(ge=0, le=31)]
    comm: CommMode
    read_key: KeyNo | Literal["free"]
    offset: Annotated[int, Field(ge=0, lt=1 << 24)] = 0
    length: Annotated[int, Field(ge=0, lt=1 << 24)] = 0
    meaning: Meaning = Meaning.RAW
    decode: Decode | None = None

    @property
    def effective_decode(self) -> Decode:
        return self.decode or DEFAULT_DECODE[self.meaning]


class ProfileApplication(Model):
    aid: Aid
    key_type: KeyType = KeyType.AES
    keys: dict[KeyNo, KeyRef] = {}
    auth: AuthMode | None = None
    files: list[ProfileFile] = Field(min_length=1)

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

    key_type: KeyType = KeyType.AES
    keys: dict[KeyNo, KeyRef] = Field(min_length=1)
    auth: AuthMode | None = None

    @property
    def effective_auth(self) -> AuthMode:
        return self.auth or DEFAULT_AUTH[self.key_type]


class CardUidAuth(Model):
    """Which key opens GetCardUID: one of an application's, or with `aid: "000000"` the
    PICC master key of the profile's `picc:` (an application-less step)."""

    aid: Aid
    key_no: KeyNo


class CsnSpec(Model):
    source: CsnSource = CsnSource.UID
    card_uid_auth: CardUidAuth | None = None


class CardProfile(Model):
    """What is on a card and how to read it."""

    technology: Technology = Technology.DESFIRE_EV1
    csn: CsnSpec = CsnSpec()
    read_version: bool = False
    picc: ProfilePicc | None = None
    applications: list[ProfileApplication] = []


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


class Column(Model):
    header: Name
    field: LayoutField
    format: DateFormat | None = None  # dates only; else the layout's date_format


class Layout(Model):
    """How one CROUS wants a file: columns, separator, encoding, line ending, file name."""

    columns: list[Column] = Field(min_length=1)
    separator: Annotated[str, StringConstraints(min_length=1, max_length=1)] = ";"
    encoding: Encoding = "utf-8"
    line_ending: Literal["crlf", "lf"] = "crlf"
    date_format: DateFormat = "%d/%m/%Y"
    header: bool = True
    file_name: Name = "{school}-{kind}-{date:%Y%m%d}.csv"


# --- tariffs -------------------------------------------------------------------------------

class Rate(Model):
    id_company_rate: Annotated[int, Field(ge=0)]
    id_rate: Annotated[int, Field(ge=0)]


class TariffRule(Model):
    """Staff with one of `status` and an index in [index_min, index_max] get this rate."""

    status: list[Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+$")]] = Field(min_length=1)
    index_min: Annotated[int, Field(ge=0)] = 0
    index_max: Annotated[int, Field(ge=0)] | None = None
    id_company_rate: Annotated[int, Field(ge=0)]
    id_rate: Annotated[int, Field(ge=0)]


class Tariffs(Model):
    students: Rate = Rate(id_company_rate=10, id_rate=1)
    default: Rate = Rate(id_company_rate=78, id_rate=99)
    rules: list[TariffRule] = []


# --- schools -------------------------------------------------------------------------------

class ReaderRole(StrEnum):
    ENROLMENT = "enrolment"
    LOOKUP = "lookup"
    SAM = "sam"


class ReaderRule(Model):
    """Readers whose PC/SC name matches `name` (exact or glob) get `role`."""

    name: Name
    role: ReaderRole


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

    category: Category
    columns: dict[PersonField, Name] = Field(min_length=1)
    encoding: Encoding = "utf-8"
    separator: Annotated[str, StringConstraints(min_length=1, max_length=1)] = ";"
    date_format: DateFormat = "%d/%m/%Y"
    full_export: bool = True
    leaving_grace_days: Annotated[int, Field(ge=0)] = 30


class Exchange(Model):
    kind: ExchangeKind
    schedule: ScheduleText
    transport: Literal["mail", "api"] = "mail"
    recipients: list[Id] = []
    layout: Id | None = None


class CardStock(Model):
    low_threshold: Annotated[int, Field(ge=0)] = 0


class Enrolment(Model):
    allow_unknown_to_crous: bool = False
    second_card: Literal["disable_older", "refuse"] = "disable_older"


class School(Model):
    """One school: one daemon, one COMUE contract, one CROUS."""

    name: Name
    uai: Annotated[str, StringConstraints(pattern=r"^\d{7}[A-Z]$")]
    comue: Id
    crous: Id
    card_profile: Id | None = None
    visual: Visual | None = None
    tariffs: Id
    mail_from: Email
    readers: list[ReaderRule] = []
    population: dict[Id, PopulationSource] = {}
    exchanges: list[Exchange] = []
    enrolment: Enrolment = Enrolment()
    card_stock: CardStock = CardStock()
    academic_year_start: MonthDay = "09-01"
    metrics_listen: Listen = DEFAULT_METRICS_LISTEN
    maildir: str | None = None
    archive_retention_days: Annotated[int, Field(ge=1)] = 400


# --- the host file (DESIGN.md §3.3) --------------------------------------------------------

class Smtp(Model):
    host: Name
    port: Annotated[int, Field(gt=0, lt=65536)] = 587
    starttls: bool = True
    ca_file: str | None = None
    username: str | None = None
    password: SecretRef | None = None


class HostConfig(Model):
    """What this host runs: the tree, the school, where state and runtime files go."""

    tree: Name
    school: Id
    state_dir: Name = "/var/lib/badged"
    runtime_dir: Name = "/run/badged"
    smtp: Smtp | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_listen: Listen | None = None


KINDS: dict[str, type[Model]] = {
    "comues": Comue,
    "crous": Crous,
    "card-profiles": CardProfile,
    "layouts": Layout,
    "tariffs": Tariffs,
    "schools": School,
}
