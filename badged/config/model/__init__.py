"""The typed config model: one class per file kind of the tree, plus the host file.

This is the single source of truth for the config's shape: validation, the JSON Schema
(`badged config schema`) and the documentation all come from these classes. Rules that
span fields or files live in `config/rules.py`, where they can point at the exact YAML node.

One module per kind of file: `comue.py`, `crous.py`, `card_profile.py`, `layout.py`,
`tariffs.py`, `school.py` (with the school's `population.py` and `access_export.py`
sections) and `host_file.py`; what they share is in `common.py` (the base class, scalar
types) and `references.py` (secrets and keys by reference). Every public name is
re-exported here: import from `badged.config.model`.
"""

from __future__ import annotations

from .access_export import (
    AccessDestination,
    AccessExport,
    AccessFormat,
    CsnForm,
    DirectoryDestination,
    FileMode,
    PlainFileName,
    SftpDestination,
)
from .card_profile import (
    ALLOWED_AUTH,
    DEFAULT_AUTH,
    DEFAULT_DECODE,
    PICC_AID,
    AuthMode,
    CardProfile,
    CardUidAuth,
    CommMode,
    CsnSource,
    CsnSpec,
    Decode,
    KeyNo,
    KeyType,
    Meaning,
    ProfileApplication,
    ProfileFile,
    ProfilePicc,
    Technology,
)
from .common import (
    DEFAULT_METRICS_LISTEN,
    Aid,
    DateFormat,
    Email,
    Encoding,
    Euros,
    Id,
    Listen,
    Model,
    MonthDay,
    Name,
    ScheduleText,
)
from .comue import Comue, Visual
from .crous import Crous, CrousApi, ExchangeKind, StudentIdentifier, TokenFlow, Url
from .host_file import HostConfig, Smtp
from .layout import (
    ACCESS_LAYOUT_FIELDS,
    ACCESS_ONLY_FIELDS,
    ACCESS_STATUS_FIELDS,
    Column,
    Layout,
    LayoutField,
)
from .population import Category, PersonField, PopulationSource
from .references import (
    CredentialSecret,
    Diversification,
    DiversifiedKey,
    DiversifyPart,
    FileSecret,
    KeyRef,
    SamKey,
    SamRef,
    SecretRef,
)
from .school import CardStock, Enrolment, Exchange, ReaderRole, ReaderRule, School
from .tariffs import Rate, TariffRule, Tariffs

KINDS: dict[str, type[Model]] = {
    "comues": Comue,
    "crous": Crous,
    "card-profiles": CardProfile,
    "layouts": Layout,
    "tariffs": Tariffs,
    "schools": School,
}

__all__ = [
    "ACCESS_LAYOUT_FIELDS", "ACCESS_ONLY_FIELDS", "ACCESS_STATUS_FIELDS", "ALLOWED_AUTH",
    "DEFAULT_AUTH", "DEFAULT_DECODE", "DEFAULT_METRICS_LISTEN", "KINDS", "PICC_AID",
    "AccessDestination", "AccessExport", "AccessFormat", "Aid", "AuthMode", "CardProfile",
    "CardStock", "CardUidAuth", "Category", "Column", "CommMode", "Comue", "CredentialSecret",
    "Crous", "CrousApi", "CsnForm", "CsnSource", "CsnSpec", "DateFormat", "Decode",
    "DirectoryDestination", "Diversification", "DiversifiedKey", "DiversifyPart", "Email",
    "Encoding", "Enrolment", "Euros", "Exchange", "ExchangeKind", "FileMode", "FileSecret",
    "HostConfig", "Id", "KeyNo", "KeyRef", "KeyType", "Layout", "LayoutField", "Listen",
    "Meaning", "Model", "MonthDay", "Name", "PersonField", "PlainFileName", "PopulationSource",
    "ProfileApplication", "ProfileFile", "ProfilePicc", "Rate", "ReaderRole", "ReaderRule",
    "SamKey", "SamRef", "ScheduleText", "School", "SecretRef", "SftpDestination", "Smtp",
    "StudentIdentifier", "TariffRule", "Tariffs", "Technology", "TokenFlow", "Url", "Visual",
]
