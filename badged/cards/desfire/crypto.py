"""DESFire crypto primitives: CRCs, CBC helpers, CMAC with a running IV, AN10922.

Ciphers and CMAC come from pycryptodome; only the DESFire glue lives here (CRC_A,
the legacy "decipher to send" CBC, CMAC continued from an IV, AN10922 padding).
Every function takes ``aes=True`` for AES-128 or ``aes=False`` for the DES family,
where the key length (8, 16 or 24 bytes) picks DES, 2K3DES or 3K3DES.
"""

from __future__ import annotations

import zlib
from typing import Any

from Crypto.Cipher import AES, DES, DES3
from Crypto.Hash import CMAC

__all__ = [
    "an10922_aes128",
    "block_size",
    "cbc_decipher_send",
    "cbc_decrypt",
    "cbc_encipher_receive",
    "cbc_encrypt",
    "cmac",
    "cmac_subkeys",
    "crc16",
    "crc32",
    "ecb_decrypt",
    "ecb_encrypt",
    "strip_parity",
]


def crc32(data: bytes) -> bytes:
    """DESFire CRC32: IEEE 802.3 CRC without the final inversion, little-endian."""
    return ((~zlib.crc32(data)) & 0xFFFFFFFF).to_bytes(4, "little")


def crc16(data: bytes) -> bytes:
    """ISO 14443-3 CRC_A (preset 0x6363, reflected 0x1021), little-endian.

    Used by legacy (0A) secure messaging; zlib has no such polynomial.
    """
    crc = 0x6363
    for byte in data:
        b = (byte ^ crc) & 0xFF
        b = (b ^ (b << 4)) & 0xFF
        crc = ((crc >> 8) ^ (b << 8) ^ (b << 3) ^ (b >> 4)) & 0xFFFF
    return crc.to_bytes(2, "little")


def strip_parity(key: bytes) -> bytes:
    """Clear DES parity bits: DESFire stores the key version there, ciphers ignore them."""
    return bytes(b & 0xFE for b in key)


def block_size(*, aes: bool) -> int:
    return 16 if aes else 8


def _cipher(key: bytes, *, aes: bool) -> tuple[Any, bytes]:
    """(pycryptodome module, effective key). Degenerate 3DES keys fall back to DES.

    DESFire keeps DES keys as 2K3DES with K1 == K2 (parity ignored); pycryptodome
    refuses such keys, but E-D-E with equal halves *is* single DES.
    """
    if aes:
        if len(key) != 16:
            raise ValueError(f"AES-128 key must be 16 bytes, got {len(key)}")
        return AES, key
    if len(key) == 8:
        return DES, key
    if len(key) == 16:
        if strip_parity(key[:8]) == strip_parity(key[8:]):
            return DES, key[:8]
        return DES3, key
    if len(key) == 24:
        k1, k2, k3 = (strip_parity(key[i : i + 8]) for i in (0, 8, 16))
        if k1 == k2:
            return DES, key[16:]
        if k2 == k3:
            return DES, key[:8]
        return DES3, key
    raise ValueError(f"DES-family key must be 8, 16 or 24 bytes, got {len(key)}")


def _check_blocks(data: bytes, bs: int) -> None:
    if len(data) % bs:
        raise ValueError(f"data length {len(data)} is not a multiple of the block size {bs}")


def ecb_encrypt(key: bytes, data: bytes, *, aes: bool) -> bytes:
    mod, k = _cipher(key, aes=aes)
    return mod.new(k, mod.MODE_ECB).encrypt(data)


def ecb_decrypt(key: bytes, data: bytes, *, aes: bool) -> bytes:
    mod, k = _cipher(key, aes=aes)
    return mod.new(k, mod.MODE_ECB).decrypt(data)


def cbc_encrypt(key: bytes, iv: bytes, data: bytes, *, aes: bool) -> bytes:
    mod, k = _cipher(key, aes=aes)
    _check_blocks(data, mod.block_size)
    return mod.new(k, mod.MODE_CBC, iv=iv).encrypt(data)


def cbc_decrypt(key: bytes, iv: bytes, data: bytes, *, aes: bool) -> bytes:
    mod, k = _cipher(key, aes=aes)
    _check_blocks(data, mod.block_size)
    return mod.new(k, mod.MODE_CBC, iv=iv).decrypt(data)


def cbc_decipher_send(key: bytes, data: bytes, *, aes: bool = False) -> bytes:
    """Legacy (0A) "send mode": C_i = D(P_i xor C_{i-1}), IV zero.

    Native DESFire cards only ever encipher, so the reader deciphers what it sends
    (libfreefare MCD_SEND + MCO_DECYPHER).
    """
    mod, k = _cipher(key, aes=aes)
    bs = mod.block_size
    _check_blocks(data, bs)
    ecb = mod.new(k, mod.MODE_ECB)
    prev, out = bytes(bs), bytearray()
    for i in range(0, len(data), bs):
        prev = ecb.decrypt(bytes(a ^ b for a, b in zip(data[i : i + bs], prev, strict=True)))
        out += prev
    return bytes(out)


def cbc_encipher_receive(key: bytes, data: bytes, *, aes: bool = False) -> bytes:
    """Card side of :func:`cbc_decipher_send`: P_i = E(C_i) xor C_{i-1}, IV zero."""
    mod, k = _cipher(key, aes=aes)
    bs = mod.block_size
    _check_blocks(data, bs)
    ecb = mod.new(k, mod.MODE_ECB)
    prev, out = bytes(bs), bytearray()
    for i in range(0, len(data), bs):
        block = data[i : i + bs]
        out += bytes(a ^ b for a, b in zip(ecb.encrypt(block), prev, strict=True))
        prev = block
    return bytes(out)


def cmac(key: bytes, data: bytes, *, aes: bool, iv: bytes | None = None) -> bytes:
    """Full-block CMAC (NIST SP 800-38B), optionally continued from a running IV.

    DESFire EV1 chains CMACs: the CBC state starts at the session IV instead of zero.
    Prefixing the message with D(IV) makes the CBC state equal IV after one block,
    so pycryptodome's CMAC does the rest (the last-block subkey only depends on
    the real message, which is never empty here: a command or a status byte).
    """
    mod, k = _cipher(key, aes=aes)
    bs = mod.block_size
    prefix = b""
    if iv is not None and any(iv):
        if len(iv) != bs:
            raise ValueError(f"IV must be {bs} bytes, got {len(iv)}")
        if not data:
            raise ValueError("CMAC continued from an IV needs a non-empty message")
        prefix = mod.new(k, mod.MODE_ECB).decrypt(iv)
    return CMAC.new(k, prefix + data, ciphermod=mod).digest()


def _dbl(block: bytes) -> bytes:
    """Doubling in GF(2^n) (CMAC subkey step): shift left, xor Rb on carry."""
    n = int.from_bytes(block, "big") << 1
    rb = 0x87 if len(block) == 16 else 0x1B
    if n >> (8 * len(block)):
        n ^= rb
    return (n & ((1 << (8 * len(block))) - 1)).to_bytes(len(block), "big")


def cmac_subkeys(key: bytes, *, aes: bool) -> tuple[bytes, bytes]:
    """(K1, K2) of CMAC; AN10922 needs K2 explicitly for its 32-byte padding."""
    mod, k = _cipher(key, aes=aes)
    k1 = _dbl(mod.new(k, mod.MODE_ECB).encrypt(bytes(mod.block_size)))
    return k1, _dbl(k1)


def an10922_aes128(master: bytes, diversification_input: bytes) -> bytes:
    """AN10922 AES-128 key diversification.

    M = 0x01 || input; M is padded (0x80 00..) to 32 bytes and the last block is
    masked with K2 when padding happened, K1 otherwise; the CBC-MAC is the key.
    This differs from a plain CMAC when M is 16 bytes or shorter.
    """
    if not 1 <= len(diversification_input) <= 31:
        raise ValueError(f"AN10922 input must be 1 to 31 bytes, got {len(diversification_input)}")
    m = b"\x01" + diversification_input
    k1, k2 = cmac_subkeys(master, aes=True)
    if len(m) < 32:
        m = (m + b"\x80").ljust(32, b"\x00")
        mask = k2
    else:
        mask = k1
    m = m[:16] + bytes(a ^ b for a, b in zip(m[16:], mask, strict=True))
    return cbc_encrypt(master, bytes(16), m, aes=True)[16:]
