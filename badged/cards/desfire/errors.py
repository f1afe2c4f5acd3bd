"""DESFire errors: card status words and our own verification failures.

Each error prints as one line, ``Command: what happened``, so that a log line or a
CLI message says which exchange failed and why.
"""

# The class names are the DESFire status names the rest of badged uses (N818 off).
# ruff: noqa: N818

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ApplIntegrityError",
    "ApplicationNotFound",
    "AuthenticationError",
    "BoundaryError",
    "CardFault",
    "CommandAborted",
    "CountError",
    "DesfireError",
    "DuplicateError",
    "EepromError",
    "FileIntegrityError",
    "FileNotFound",
    "IllegalCommand",
    "IntegrityError",
    "IntegrityFailure",
    "LengthError",
    "MalformedResponse",
    "MutualAuthFailure",
    "NoChanges",
    "NoSuchKey",
    "OutOfEeprom",
    "ParameterError",
    "PermissionDenied",
    "PiccDisabled",
    "PiccIntegrityError",
    "ResponseCrcError",
    "ResponseMacError",
    "StatusError",
    "UnknownStatus",
    "status_error",
]


class DesfireError(Exception):
    """Base of every DESFire failure; ``command`` names the exchange."""

    def __init__(self, command: str, detail: str) -> None:
        self.command = command
        self.detail = detail
        super().__init__(f"{command}: {detail}")


class StatusError(DesfireError):
    """The card (or the reader) answered a status word other than success."""

    code: ClassVar[int | None] = None
    description: ClassVar[str] = "error"

    def __init__(self, command: str, sw: int) -> None:
        self.sw = sw
        super().__init__(command, f"SW {sw:04X} ({_describe(type(self), sw)})")

    @property
    def sw_bytes(self) -> bytes:
        return self.sw.to_bytes(2, "big")


class UnknownStatus(StatusError):
    description = "unknown status"


class CardFault(StatusError):
    """Card-internal failures (EEPROM, integrity, disabled): the card itself is suspect."""


class NoChanges(StatusError):
    code = 0x0C
    description = "no changes"


class OutOfEeprom(CardFault):
    code = 0x0E
    description = "out of EEPROM"


class IllegalCommand(StatusError):
    code = 0x1C
    description = "illegal command"


class IntegrityError(StatusError):
    code = 0x1E
    description = "integrity error reported by the card"


class NoSuchKey(StatusError):
    code = 0x40
    description = "no such key"


class LengthError(StatusError):
    code = 0x7E
    description = "length error"


class PermissionDenied(StatusError):
    code = 0x9D
    description = "permission denied"


class ParameterError(StatusError):
    code = 0x9E
    description = "parameter error"


class ApplicationNotFound(StatusError):
    code = 0xA0
    description = "application not found"


class ApplIntegrityError(CardFault):
    code = 0xA1
    description = "application integrity error"


class AuthenticationError(StatusError):
    code = 0xAE
    description = "authentication error"


class BoundaryError(StatusError):
    code = 0xBE
    description = "boundary error"


class PiccIntegrityError(CardFault):
    code = 0xC1
    description = "PICC integrity error"


class CommandAborted(StatusError):
    code = 0xCA
    description = "command aborted"


class PiccDisabled(CardFault):
    code = 0xCD
    description = "PICC disabled"


class CountError(StatusError):
    code = 0xCE
    description = "application count limit reached"


class DuplicateError(StatusError):
    code = 0xDE
    description = "duplicate"


class EepromError(CardFault):
    code = 0xEE
    description = "EEPROM error"


class FileNotFound(StatusError):
    code = 0xF0
    description = "file not found"


class FileIntegrityError(CardFault):
    code = 0xF1
    description = "file integrity error"


_BY_SW2: dict[int, type[StatusError]] = {
    cls.code: cls
    for cls in (
        NoChanges, OutOfEeprom, IllegalCommand, IntegrityError, NoSuchKey, LengthError,
        PermissionDenied, ParameterError, ApplicationNotFound, ApplIntegrityError,
        AuthenticationError, BoundaryError, PiccIntegrityError, CommandAborted, PiccDisabled,
        CountError, DuplicateError, EepromError, FileNotFound, FileIntegrityError,
    )
}  # fmt: skip

# ISO 7816-4 words a reader or the ISO layer may answer instead of a native 91xx.
_ISO: dict[int, str] = {
    0x6281: "part of returned data may be corrupted",
    0x6282: "end of data reached before Le bytes",
    0x6300: "verification failed, no information",
    0x6581: "memory failure",
    0x6700: "wrong length",
    0x6882: "secure messaging not supported",
    0x6982: "security status not satisfied",
    0x6985: "conditions of use not satisfied",
    0x6986: "command not allowed",
    0x6A80: "incorrect parameters in data field",
    0x6A81: "function not supported",
    0x6A82: "file or application not found",
    0x6A86: "incorrect P1-P2",
    0x6A87: "Lc inconsistent with P1-P2",
    0x6C00: "wrong Le",
    0x6D00: "instruction not supported",
    0x6E00: "class not supported",
    0x6F00: "no precise diagnosis",
    0x9000: "ISO success where a native 91xx status was expected",
    # Native words that are no error, answered where the exchange expected another one.
    0x9100: "native OK where another status was expected",
    0x91AF: "additional frame where none was expected",
}
# The other ISO 7816-4 words by SW1; for 61 and 6C, SW2 is a byte count.
_ISO_SW1: dict[int, str] = {
    0x61: "{sw2} more bytes available",
    0x62: "warning, memory unchanged",
    0x63: "warning, memory changed",
    0x64: "execution error, memory unchanged",
    0x65: "execution error, memory changed",
    0x66: "security error",
    0x67: "wrong length",
    0x68: "function in CLA not supported",
    0x69: "command not allowed",
    0x6A: "wrong parameters",
    0x6B: "wrong parameters P1-P2",
    0x6C: "wrong Le: {sw2} bytes available",
    0x6D: "instruction not supported",
    0x6E: "class not supported",
    0x6F: "no precise diagnosis",
}


def _iso_text(sw: int) -> str | None:
    if sw in _ISO:
        return _ISO[sw]
    text = _ISO_SW1.get(sw >> 8)
    return None if text is None else text.format(sw2=sw & 0xFF)


def _describe(cls: type[StatusError], sw: int) -> str:
    if cls.code is not None:
        return cls.description
    return _iso_text(sw) or "unknown status"


def status_error(command: str, sw: int) -> StatusError:
    """The StatusError subclass for a status word (``0x91AE`` → AuthenticationError).

    An ISO 7816-4 word (``6Cxx``, ``67xx``, ``6Axx``…) is a plain StatusError described
    by its meaning; only a word that means nothing known is an UnknownStatus.
    """
    if sw >> 8 == 0x91 and (sw & 0xFF) in _BY_SW2:
        return _BY_SW2[sw & 0xFF](command, sw)
    if _iso_text(sw) is not None:
        return StatusError(command, sw)
    return UnknownStatus(command, sw)


class IntegrityFailure(DesfireError):
    """Our verification of a response failed: the data must not be used."""


class ResponseMacError(IntegrityFailure):
    def __init__(self, command: str, detail: str = "response MAC does not verify") -> None:
        super().__init__(command, detail)


class ResponseCrcError(IntegrityFailure):
    def __init__(
        self, command: str, detail: str = "CRC of the deciphered response does not verify"
    ) -> None:
        super().__init__(command, detail)


class MutualAuthFailure(IntegrityFailure):
    """The card accepted us but failed to prove it knows the key (RndA' mismatch)."""

    def __init__(
        self, command: str, detail: str = "card failed to prove knowledge of the key"
    ) -> None:
        super().__init__(command, detail)


class MalformedResponse(DesfireError):
    """Truncated, odd-length or otherwise unparseable response."""

    def __init__(self, command: str, detail: str) -> None:
        super().__init__(command, f"malformed response: {detail}")
