"""DESFire keys: types, validated key material, versions, session keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property

from . import crypto

__all__ = ["DesfireKey", "KeyType", "session_key"]


class KeyType(StrEnum):
    """Key types; the values are the strings used in YAML profiles and card files."""

    AES = "aes"
    TDES_3K = "3k3des"
    TDES_2K = "2k3des"
    DES = "des"

    @property
    def key_length(self) -> int:
        return {"aes": 16, "3k3des": 24, "2k3des": 16, "des": 8}[self.value]

    @property
    def block_size(self) -> int:
        return 16 if self is KeyType.AES else 8

    @property
    def is_aes(self) -> bool:
        return self is KeyType.AES

    @property
    def rnd_length(self) -> int:
        """Length of RndA/RndB in the authentication: 16 for AES and 3K3DES, else 8."""
        return 16 if self in (KeyType.AES, KeyType.TDES_3K) else 8


@dataclass(frozen=True)
class DesfireKey:
    """Key material with its type. DES-family keys carry their version in parity bits.

    A DES key may be given as 16 bytes with K1 == K2 (the way cards store it and
    ChangeKey sends it); it is kept as its 8-byte half. ``version`` is for AES keys
    only (DES-family versions are read from the parity bits).
    """

    type: KeyType
    data: bytes = field(repr=False)
    version: int = 0

    def __post_init__(self) -> None:
        kt = KeyType(self.type)
        object.__setattr__(self, "type", kt)
        data = bytes(self.data)
        if kt is KeyType.DES and len(data) == 16:
            if crypto.strip_parity(data[:8]) != crypto.strip_parity(data[8:]):
                raise ValueError("a 16-byte DES key must have K1 == K2 (else use 2k3des)")
            data = data[:8]
        if len(data) != kt.key_length:
            raise ValueError(f"{kt.value} key must be {kt.key_length} bytes, got {len(data)}")
        if not 0 <= self.version <= 0xFF:
            raise ValueError(f"key version must be 0..255, got {self.version}")
        object.__setattr__(self, "data", data)

    @classmethod
    def from_hex(cls, key_type: KeyType | str, hex_text: str) -> DesfireKey:
        return cls(KeyType(key_type), bytes.fromhex(hex_text))

    @property
    def aes(self) -> bool:
        return self.type is KeyType.AES

    @property
    def block_size(self) -> int:
        return self.type.block_size

    @property
    def is_single_des(self) -> bool:
        """True for DES keys and 2K3DES keys whose halves match (parity ignored).

        The card treats those as single DES, including for the session key.
        """
        if self.type is KeyType.DES:
            return True
        return self.type is KeyType.TDES_2K and crypto.strip_parity(
            self.data[:8]
        ) == crypto.strip_parity(self.data[8:])

    @property
    def key_version(self) -> int:
        """Version as GetKeyVersion reports it: parity bits of bytes 0..7 (DES family)."""
        if self.aes:
            return self.version
        v = 0
        for n in range(8):
            v |= (self.data[n] & 1) << (7 - n)
        return v

    def same_key(self, other: DesfireKey) -> bool:
        """Equality as the card sees it: parity (version) bits ignored for DES keys."""
        if self.aes or other.aes:
            return self.type == other.type and self.data == other.data
        return crypto.strip_parity(_as_24(self)) == crypto.strip_parity(_as_24(other))

    # Cipher helpers bound to this key: the cipher (key schedule, CMAC subkeys) is built
    # once per key, not once per call (cached_property writes the instance dict directly,
    # which a frozen dataclass allows; it is no field, so eq/hash/repr ignore it).
    @cached_property
    def _cipher(self) -> crypto.BlockCipher:
        return crypto.BlockCipher(self.data, aes=self.aes)

    def cbc_encrypt(self, iv: bytes, data: bytes) -> bytes:
        return self._cipher.cbc_encrypt(iv, data)

    def cbc_decrypt(self, iv: bytes, data: bytes) -> bytes:
        return self._cipher.cbc_decrypt(iv, data)

    def cmac(self, data: bytes, iv: bytes | None = None) -> bytes:
        return self._cipher.cmac(data, iv)


def _as_24(key: DesfireKey) -> bytes:
    d = key.data
    if len(d) == 8:
        return d * 3
    if len(d) == 16:
        return d + d[:8]
    return d


def session_key(key: DesfireKey, rnd_a: bytes, rnd_b: bytes) -> DesfireKey:
    """Session key from the two random numbers, per the authenticated key's type.

    DES (and 2K3DES with K1 == K2): A[0:4] B[0:4]; 2K3DES: A[0:4] B[0:4] A[4:8] B[4:8];
    3K3DES: A[0:4] B[0:4] A[6:10] B[6:10] A[12:16] B[12:16];
    AES: A[0:4] B[0:4] A[12:16] B[12:16].
    """
    a, b = rnd_a, rnd_b
    if key.type is KeyType.AES:
        return DesfireKey(KeyType.AES, a[0:4] + b[0:4] + a[12:16] + b[12:16])
    if key.type is KeyType.TDES_3K:
        return DesfireKey(
            KeyType.TDES_3K, a[0:4] + b[0:4] + a[6:10] + b[6:10] + a[12:16] + b[12:16]
        )
    if key.is_single_des:
        return DesfireKey(KeyType.DES, a[0:4] + b[0:4])
    return DesfireKey(KeyType.TDES_2K, a[0:4] + b[0:4] + a[4:8] + b[4:8])
