"""Secure messaging after authentication, for both ends of the link.

The reader calls :meth:`SecureMessaging.on_command` before sending a command and
:meth:`~SecureMessaging.unwrap` on a successful reply; the card side (simulator)
calls ``on_command`` on receipt and :meth:`~SecureMessaging.wrap` on its reply.
Keeping both directions in one class keeps the two ends byte-for-byte in step; the
known-answer tests check each direction against independent computations.

EV1 mode (after AA / 1A): the IV runs through the whole session. Every command
updates it (IV = CMAC(IV, command)); plain and MACed replies end with the first
8 bytes of CMAC(IV, data || 00) and the IV becomes that CMAC; enciphered replies
are CBC(IV, data || CRC32(data || 00) || 00..) and the IV becomes the last block.

Legacy mode (after 0A): no chaining, IV zero for every operation (libfreefare);
plain replies carry nothing; MACed ones a 4-byte CBC-MAC over the zero-padded
data; enciphered ones CBC(data || CRC16(data) || 00..).
"""

from __future__ import annotations

import hmac
from abc import ABC, abstractmethod
from collections.abc import Callable

from . import crypto
from .errors import MalformedResponse, ResponseCrcError, ResponseMacError
from .info import CommMode
from .keys import DesfireKey

__all__ = ["Ev1Messaging", "LegacyMessaging", "SecureMessaging"]

CMAC_LENGTH = 8
LEGACY_MAC_LENGTH = 4


class SecureMessaging(ABC):
    """An authenticated session: the key number it was opened with and the session key."""

    scheme: str = ""

    def __init__(self, key_no: int, session_key: DesfireKey) -> None:
        self.key_no = key_no
        self.key = session_key
        self.bs = session_key.block_size

    @abstractmethod
    def on_command(self, command: bytes) -> None:
        """Account for a command frame (INS || data) sent (reader) or received (card)."""

    @abstractmethod
    def unwrap(self, command: str, data: bytes, comm: CommMode, length: int | None = None) -> bytes:
        """Reader side: verify and strip a successful reply (all frames joined)."""

    @abstractmethod
    def wrap(self, data: bytes, comm: CommMode) -> bytes:
        """Card side: secure a successful reply before it is split into frames."""

    def _pad(self, data: bytes) -> bytes:
        return data + bytes(-len(data) % self.bs)

    def _check_cipher_length(self, command: str, data: bytes) -> None:
        if not data or len(data) % self.bs:
            raise MalformedResponse(
                command,
                f"enciphered reply of {len(data)} bytes is not a whole number "
                f"of {self.bs}-byte blocks",
            )


def _find_payload(
    command: str,
    plain: bytes,
    length: int | None,
    bs: int,
    crc_len: int,
    crc: Callable[[bytes], bytes],
) -> bytes:
    """Locate ``payload || CRC || padding`` in a deciphered reply.

    With a known length the layout is fixed. Without one (ReadData length 0) every
    place the CRC can sit is tried, shortest payload first, as libfreefare does:
    the CRC must verify and be followed only by padding (00.., or 80 00..).
    """

    def fits(n: int) -> bool:
        pad = plain[n + crc_len :]
        if any(pad[1:]) or (pad and pad[0] not in (0x00, 0x80)):
            return False
        return hmac.compare_digest(crc(plain[:n]), plain[n : n + crc_len])

    total = len(plain)
    if length is not None:
        if not (length + crc_len <= total and total - length - crc_len < bs):
            raise MalformedResponse(
                command,
                f"{total} enciphered bytes cannot hold {length} data bytes and a "
                f"{crc_len}-byte CRC",
            )
        if not fits(length):
            raise ResponseCrcError(command)
        return plain[:length]
    for n in range(max(0, total - crc_len - (bs - 1)), total - crc_len + 1):
        if fits(n):
            return plain[:n]
    raise ResponseCrcError(command)


class Ev1Messaging(SecureMessaging):
    """After AuthenticateAES (AA) or AuthenticateISO (1A): CMAC chaining, CRC32."""

    scheme = "ev1"

    def __init__(self, key_no: int, session_key: DesfireKey) -> None:
        super().__init__(key_no, session_key)
        self.iv = bytes(self.bs)

    def on_command(self, command: bytes) -> None:
        self.iv = self.key.cmac(command, self.iv)

    def _response_mac(self, data: bytes) -> bytes:
        self.iv = self.key.cmac(data + b"\x00", self.iv)
        return self.iv[:CMAC_LENGTH]

    @staticmethod
    def _crc(payload: bytes) -> bytes:
        return crypto.crc32(payload + b"\x00")

    def unwrap(self, command: str, data: bytes, comm: CommMode, length: int | None = None) -> bytes:
        if comm is CommMode.ENCIPHERED:
            self._check_cipher_length(command, data)
            plain = self.key.cbc_decrypt(self.iv, data)
            self.iv = data[-self.bs :]
            return _find_payload(command, plain, length, self.bs, 4, self._crc)
        if len(data) < CMAC_LENGTH:
            raise MalformedResponse(
                command, f"{len(data)} bytes cannot hold the {CMAC_LENGTH}-byte CMAC"
            )
        body, mac = data[:-CMAC_LENGTH], data[-CMAC_LENGTH:]
        if not hmac.compare_digest(self._response_mac(body), mac):
            raise ResponseMacError(command)
        return body

    def wrap(self, data: bytes, comm: CommMode) -> bytes:
        if comm is CommMode.ENCIPHERED:
            cipher = self.key.cbc_encrypt(self.iv, self._pad(data + self._crc(data)))
            self.iv = cipher[-self.bs :]
            return cipher
        return data + self._response_mac(data)


class LegacyMessaging(SecureMessaging):
    """After Authenticate (0A): DES/2K3DES, no chaining, 4-byte MAC, CRC16."""

    scheme = "legacy"

    def on_command(self, command: bytes) -> None:
        """Legacy mode keeps no state between commands."""

    def _mac(self, data: bytes) -> bytes:
        padded = self._pad(data) if data else bytes(self.bs)
        return self.key.cbc_encrypt(bytes(self.bs), padded)[-self.bs :][:LEGACY_MAC_LENGTH]

    def unwrap(self, command: str, data: bytes, comm: CommMode, length: int | None = None) -> bytes:
        if comm is CommMode.PLAIN:
            return data
        if comm is CommMode.MAC:
            if len(data) < LEGACY_MAC_LENGTH:
                raise MalformedResponse(
                    command, f"{len(data)} bytes cannot hold the {LEGACY_MAC_LENGTH}-byte MAC"
                )
            body, mac = data[:-LEGACY_MAC_LENGTH], data[-LEGACY_MAC_LENGTH:]
            if not hmac.compare_digest(self._mac(body), mac):
                raise ResponseMacError(command)
            return body
        self._check_cipher_length(command, data)
        plain = self.key.cbc_decrypt(bytes(self.bs), data)
        return _find_payload(command, plain, length, self.bs, 2, crypto.crc16)

    def wrap(self, data: bytes, comm: CommMode) -> bytes:
        if comm is CommMode.PLAIN:
            return data
        if comm is CommMode.MAC:
            return data + self._mac(data)
        return self.key.cbc_encrypt(bytes(self.bs), self._pad(data + crypto.crc16(data)))
