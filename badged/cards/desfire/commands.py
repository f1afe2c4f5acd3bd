"""DESFire EV1 native commands, ISO 7816 wrapped, over any ``transmit`` callable.

``DesfireCard(transmit)`` knows nothing of PC/SC: ``transmit`` sends one APDU and
returns data + SW1 SW2 (pyscard, the simulator's ``process``, or a test script).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable

from .aid import PICC_AID, aid_from_wire, aid_to_wire, format_aid, parse_aid
from .crypto import cbc_decipher_send
from .errors import (
    DesfireError,
    MalformedResponse,
    MutualAuthFailure,
    StatusError,
    status_error,
)
from .info import AuthMode, CommMode, FileSettings, KeySettings, VersionInfo
from .keys import DesfireKey, KeyType, session_key
from .session import Ev1Messaging, LegacyMessaging, SecureMessaging

__all__ = ["AUTH_KEY_TYPES", "DEFAULT_AUTH_MODE", "DesfireCard", "Transmit"]

Transmit = Callable[[bytes], bytes]

INS_ADDITIONAL_FRAME = 0xAF
SW_OK = 0x9100
SW_MORE = 0x91AF

DEFAULT_AUTH_MODE: dict[KeyType, AuthMode] = {
    KeyType.AES: AuthMode.AES,
    KeyType.TDES_3K: AuthMode.ISO,
    KeyType.TDES_2K: AuthMode.ISO,
    KeyType.DES: AuthMode.LEGACY,
}
AUTH_INS: dict[AuthMode, int] = {AuthMode.AES: 0xAA, AuthMode.ISO: 0x1A, AuthMode.LEGACY: 0x0A}
AUTH_KEY_TYPES: dict[AuthMode, frozenset[KeyType]] = {
    AuthMode.AES: frozenset({KeyType.AES}),
    AuthMode.ISO: frozenset({KeyType.DES, KeyType.TDES_2K, KeyType.TDES_3K}),
    AuthMode.LEGACY: frozenset({KeyType.DES, KeyType.TDES_2K}),
}
UID_LENGTHS = (4, 7, 10)  # ISO 14443-3 single, double and triple size UIDs
# A misbehaving card answering AF forever must not hang a reader thread.
_MAX_FRAMES = 256


def _rotl(data: bytes) -> bytes:
    return data[1:] + data[:1]


def _u24(value: int, what: str) -> bytes:
    if not 0 <= value <= 0xFFFFFF:
        raise ValueError(f"{what} {value} does not fit in 3 bytes")
    return value.to_bytes(3, "little")


class DesfireCard:
    """A DESFire EV1 card seen through ``transmit``.

    ``rng`` draws RndA (tests inject a fixed one). ``max_frame_data`` bounds the
    data bytes of one outgoing frame; longer command data is sent in AF frames.
    ``apdu_count`` counts every APDU sent.
    """

    def __init__(
        self,
        transmit: Transmit,
        *,
        rng: Callable[[int], bytes] = os.urandom,
        max_frame_data: int = 55,
    ) -> None:
        self._transmit = transmit
        self._rng = rng
        self._max_frame_data = max_frame_data
        self._session: SecureMessaging | None = None
        self.apdu_count = 0
        self.selected_aid: int = PICC_AID

    # -- state -------------------------------------------------------------------------

    @property
    def session(self) -> SecureMessaging | None:
        return self._session

    @property
    def authenticated_key(self) -> int | None:
        return self._session.key_no if self._session else None

    def end_session(self) -> None:
        self._session = None

    # -- transport ---------------------------------------------------------------------

    def transmit(self, command: str, apdu: bytes) -> tuple[bytes, int]:
        """Send one APDU; return (data, SW). Only a missing status word is an error here."""
        self.apdu_count += 1
        try:
            raw = bytes(self._transmit(bytes(apdu)))
        except BaseException:
            self._session = None  # the card's state is unknown now
            raise
        if len(raw) < 2:
            self._session = None
            raise MalformedResponse(command, f"{len(raw)} bytes, no status word")
        return raw[:-2], int.from_bytes(raw[-2:], "big")

    @staticmethod
    def wrap(ins: int, data: bytes = b"") -> bytes:
        """ISO 7816 wrapping: ``90 INS 00 00 [Lc data] 00``."""
        if len(data) > 255:
            raise ValueError(f"frame data of {len(data)} bytes exceeds a short APDU")
        if not data:
            return bytes([0x90, ins, 0x00, 0x00, 0x00])
        return bytes([0x90, ins, 0x00, 0x00, len(data)]) + data + b"\x00"

    def _fail(self, command: str, sw: int) -> StatusError:
        self._session = None
        return status_error(command, sw)

    def command(
        self,
        name: str,
        ins: int,
        data: bytes = b"",
        *,
        comm: CommMode = CommMode.PLAIN,
        length: int | None = None,
    ) -> bytes:
        """Run one native command: secure messaging, AF chaining both ways, status check.

        Returns the reply data, verified and stripped of MAC/CRC/padding. ``comm``
        says how the reply is protected; ``length`` is the expected data length
        when known (enciphered replies then skip the CRC search).
        """
        if self._session is not None:
            self._session.on_command(bytes([ins]) + data)
        chunk = self._max_frame_data
        if len(data) <= chunk:  # one frame: the usual case
            frames: list[bytes] = [data]
        else:
            frames = [data[i : i + chunk] for i in range(0, len(data), chunk)]
        reply, sw = self.transmit(name, self.wrap(ins, frames[0]))
        for frame in frames[1:]:
            if sw != SW_MORE:
                raise self._fail(name, sw)
            if reply:
                self._session = None
                raise MalformedResponse(name, "data in the middle of a chained command")
            reply, sw = self.transmit(name, self.wrap(INS_ADDITIONAL_FRAME, frame))
        received = bytearray(reply)
        count = 1
        while sw == SW_MORE:
            count += 1
            if count > _MAX_FRAMES:
                self._session = None
                raise MalformedResponse(name, f"more than {_MAX_FRAMES} frames")
            reply, sw = self.transmit(name, self.wrap(INS_ADDITIONAL_FRAME))
            received += reply
        if sw != SW_OK:
            raise self._fail(name, sw)
        if self._session is None:
            return bytes(received)
        try:
            return self._session.unwrap(name, bytes(received), comm, length)
        except DesfireError:
            self._session = None
            raise

    # -- authentication ----------------------------------------------------------------

    def authenticate(
        self, key_no: int, key: DesfireKey, mode: AuthMode | str | None = None
    ) -> None:
        """Mutual authentication with key ``key_no`` of the selected application (or PICC).

        ``mode``: ``aes`` (AA), ``iso`` (1A, DES/2K3DES/3K3DES) or ``legacy`` (0A,
        DES/2K3DES); by default from the key type. Raises AuthenticationError when
        the card refuses the key, MutualAuthFailure when the card's proof is wrong.
        """
        auth = AuthMode(mode) if mode is not None else DEFAULT_AUTH_MODE[key.type]
        if key.type not in AUTH_KEY_TYPES[auth]:
            raise ValueError(f"{auth.value} authentication cannot use a {key.type.value} key")
        if not 0 <= key_no <= 0x0D:
            raise ValueError(f"key number must be 0..13, got {key_no}")
        name = f"Authenticate{'' if auth is AuthMode.LEGACY else auth.name.upper()}"
        self._session = None
        legacy = auth is AuthMode.LEGACY
        bs = key.block_size
        rnd_len = key.type.rnd_length

        ek_rnd_b, sw = self.transmit(name, self.wrap(AUTH_INS[auth], bytes([key_no])))
        if sw != SW_MORE:
            raise self._fail(name, sw)
        if len(ek_rnd_b) != rnd_len:
            raise MalformedResponse(name, f"E(RndB) is {len(ek_rnd_b)} bytes, expected {rnd_len}")
        rnd_a = self._rng(rnd_len)
        if len(rnd_a) != rnd_len:
            raise ValueError(f"rng returned {len(rnd_a)} bytes, expected {rnd_len}")
        iv = bytes(bs)
        rnd_b = key.cbc_decrypt(iv, ek_rnd_b)
        token_plain = rnd_a + _rotl(rnd_b)
        if legacy:
            token = cbc_decipher_send(key.data, token_plain, aes=key.aes)
        else:
            iv = ek_rnd_b[-bs:]
            token = key.cbc_encrypt(iv, token_plain)
            iv = token[-bs:]

        ek_rnd_a, sw = self.transmit(name, self.wrap(INS_ADDITIONAL_FRAME, token))
        if sw != SW_OK:
            raise self._fail(name, sw)
        if len(ek_rnd_a) != rnd_len:
            raise MalformedResponse(name, f"E(RndA') is {len(ek_rnd_a)} bytes, expected {rnd_len}")
        rnd_a_rot = key.cbc_decrypt(bytes(bs) if legacy else iv, ek_rnd_a)
        if not hmac.compare_digest(rnd_a_rot, _rotl(rnd_a)):
            raise MutualAuthFailure(name)
        sk = session_key(key, rnd_a, rnd_b)
        self._session = LegacyMessaging(key_no, sk) if legacy else Ev1Messaging(key_no, sk)

    # -- PICC level --------------------------------------------------------------------

    def get_uid(self) -> bytes:
        """PC/SC GET DATA ``FF CA 00 00 00``: the UID, or a random id on random-UID cards.

        Answered by the reader, not the card: the DESFire session is untouched. Le 00
        asks for the whole UID; a reader that takes it literally answers ``6C xx`` (the
        exact length: asked again, once, with Le = xx) or the UID with ``62 82`` (end of
        data before Le bytes: the UID is whole), as PC/SC part 3 allows.
        """
        data, sw = self.transmit("GetUID", bytes([0xFF, 0xCA, 0x00, 0x00, 0x00]))
        if sw >> 8 == 0x6C and sw & 0xFF:
            data, sw = self.transmit("GetUID", bytes([0xFF, 0xCA, 0x00, 0x00, sw & 0xFF]))
        if sw not in (0x9000, 0x6282):
            raise status_error("GetUID", sw)
        if len(data) not in UID_LENGTHS:
            raise MalformedResponse("GetUID", f"{len(data)} bytes is not a UID (ISO 14443: "
                                    "4, 7 or 10 bytes)")
        return data

    def get_version(self) -> VersionInfo:
        data = self.command("GetVersion", 0x60)
        try:
            return VersionInfo.from_wire(data)
        except ValueError as exc:
            raise MalformedResponse("GetVersion", str(exc)) from None

    def get_application_ids(self) -> list[str]:
        """AIDs on the card, MSB first as people write them (``"F58540"``)."""
        data = self.command("GetApplicationIDs", 0x6A)
        if len(data) % 3:
            raise MalformedResponse("GetApplicationIDs", f"{len(data)} bytes is not n × 3")
        return [format_aid(aid_from_wire(data[i : i + 3])) for i in range(0, len(data), 3)]

    def select_application(self, aid: str | int) -> None:
        """Select an application (``"F58540"`` is sent ``40 85 F5``); ends the session."""
        wire = aid_to_wire(aid)
        self._session = None  # the card drops authentication on any selection
        self.command("SelectApplication", 0x5A, wire)
        self.selected_aid = parse_aid(aid)

    def free_memory(self) -> int:
        data = self.command("FreeMemory", 0x6E)
        if len(data) != 3:
            raise MalformedResponse("FreeMemory", f"{len(data)} bytes, expected 3")
        return int.from_bytes(data, "little")

    def get_card_uid(self) -> bytes:
        """The real 7-byte UID (GetCardUID 0x51, enciphered): needs authentication."""
        if self._session is None:
            raise DesfireError("GetCardUID", "needs an authenticated session")
        return self.command("GetCardUID", 0x51, comm=CommMode.ENCIPHERED, length=7)

    # -- keys --------------------------------------------------------------------------

    def get_key_settings(self) -> KeySettings:
        data = self.command("GetKeySettings", 0x45)
        try:
            return KeySettings.from_wire(data)
        except ValueError as exc:
            raise MalformedResponse("GetKeySettings", str(exc)) from None

    def get_key_version(self, key_no: int) -> int:
        data = self.command("GetKeyVersion", 0x64, bytes([key_no]))
        if len(data) != 1:
            raise MalformedResponse("GetKeyVersion", f"{len(data)} bytes, expected 1")
        return data[0]

    # -- files -------------------------------------------------------------------------

    def get_file_ids(self) -> list[int]:
        return list(self.command("GetFileIDs", 0x6F))

    def get_file_settings(self, file_no: int) -> FileSettings:
        data = self.command("GetFileSettings", 0xF5, bytes([file_no]))
        try:
            return FileSettings.from_wire(data)
        except ValueError as exc:
            raise MalformedResponse("GetFileSettings", str(exc)) from None

    def read_data(
        self,
        file_no: int,
        offset: int = 0,
        length: int = 0,
        comm: CommMode | str = CommMode.PLAIN,
    ) -> bytes:
        """ReadData (BD) of a standard/backup data file; ``length`` 0 reads to the end.

        ``comm`` is the file's communication mode; it only matters once
        authenticated (a free-access file is always answered plain).
        """
        mode = CommMode.parse(comm)
        if not 0 <= file_no <= 0x1F:
            raise ValueError(f"file number must be 0..31, got {file_no}")
        header = bytes([file_no]) + _u24(offset, "offset") + _u24(length, "length")
        data = self.command("ReadData", 0xBD, header, comm=mode, length=length if length else None)
        if length and len(data) != length:
            self._session = None
            raise MalformedResponse("ReadData", f"{len(data)} data bytes, asked for {length}")
        return data
