"""MIFARE DESFire EV1 protocol library (reader side), split by concern like libfreefare.

- ``commands``: :class:`DesfireCard`, native commands over a ``transmit`` callable
- ``session``: secure messaging after authentication (EV1 CMAC/CRC32, legacy MAC/CRC16)
- ``keys``: key types, keys, session keys; ``crypto``: CRC, CMAC, CBC, AN10922
- ``info``: parsed card structures; ``aid``: AID byte order; ``errors``: status words
"""

from .aid import aid_to_wire, format_aid, parse_aid
from .commands import DEFAULT_AUTH_MODE, DesfireCard
from .errors import (
    AuthenticationError,
    DesfireError,
    IntegrityFailure,
    MalformedResponse,
    ResponseCrcError,
    ResponseMacError,
    StatusError,
    UnknownStatus,
)
from .info import AccessRights, AuthMode, CommMode, FileSettings, KeySettings, VersionInfo
from .keys import DesfireKey, KeyType

__all__ = [
    "DEFAULT_AUTH_MODE",
    "AccessRights",
    "AuthMode",
    "AuthenticationError",
    "CommMode",
    "DesfireCard",
    "DesfireError",
    "DesfireKey",
    "FileSettings",
    "IntegrityFailure",
    "KeySettings",
    "KeyType",
    "MalformedResponse",
    "ResponseCrcError",
    "ResponseMacError",
    "StatusError",
    "UnknownStatus",
    "VersionInfo",
    "aid_to_wire",
    "format_aid",
    "parse_aid",
]
