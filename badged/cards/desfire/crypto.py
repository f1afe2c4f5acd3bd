"""DESFire crypto primitives: CRCs, CBC helpers, CMAC with a running IV, AN10922.

The block ciphers come from pycryptodome (ECB only); CBC, CMAC (continued from a running
IV) and the DESFire glue (CRC_A, the legacy "decipher to send" CBC, AN10922 padding) are
built here on a per-key `BlockCipher`, so a key schedule is computed once per key.
Every function takes ``aes=True`` for AES-128 or ``aes=False`` for the DES family,
where the key length (8, 16 or 24 bytes) picks DES, 2K3DES or 3K3DES.
"""

from __future__ import annotations

import sys
import zlib
from typing import Any


def _import_ciphers() -> tuple[Any, Any, Any]:
    """pycryptodome's ciphers on its ctypes backend.

    pycryptodome binds its C code through cffi when cffi is importable, else through
    ctypes. The cffi backend parses C declarations with pycparser at import: ≈ 1.5 MB of
    the daemon's resident memory for the same calls (≈ 1 µs more per call with ctypes,
    a few µs per card read). So cffi is hidden while pycryptodome picks its backend (only
    if nothing imported it yet), and put back for whoever else needs it.
    """
    hide = "cffi" not in sys.modules and "Crypto.Util._raw_api" not in sys.modules
    if hide:
        sys.modules["cffi"] = None  # type: ignore[assignment]  # `import cffi` fails
    try:
        from Crypto.Cipher import AES, DES, DES3
    finally:
        if hide:
            del sys.modules["cffi"]
    return AES, DES, DES3


AES, DES, DES3 = _import_ciphers()

__all__ = [
    "BlockCipher",
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


def _xor(a: bytes, b: bytes) -> bytes:
    n = len(a)
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(n, "big")


class BlockCipher:
    """One key's cipher, built once: CBC and CMAC on a reusable ECB object.

    DESFire exchanges encrypt one to a few blocks at a time with a fresh IV each time, so
    a new pycryptodome CBC or CMAC object per call (key schedule, subkeys) would cost more
    than the encryption itself. A key (`DesfireKey`) keeps its BlockCipher for its
    lifetime: the subkeys are computed once, and each block costs one ECB call.
    """

    __slots__ = ("_ecb", "_subkeys", "block_size")

    def __init__(self, key: bytes, *, aes: bool) -> None:
        mod, k = _cipher(key, aes=aes)
        self._ecb = mod.new(k, mod.MODE_ECB)
        self.block_size: int = mod.block_size
        self._subkeys: tuple[bytes, bytes] | None = None

    def ecb_encrypt(self, data: bytes) -> bytes:
        return self._ecb.encrypt(data)

    def ecb_decrypt(self, data: bytes) -> bytes:
        return self._ecb.decrypt(data)

    def cbc_encrypt(self, iv: bytes, data: bytes) -> bytes:
        bs = self.block_size
        _check_blocks(data, bs)
        if len(iv) != bs:
            raise ValueError(f"IV must be {bs} bytes, got {len(iv)}")
        encrypt = self._ecb.encrypt
        prev, out = iv, bytearray()
        for i in range(0, len(data), bs):
            prev = encrypt(_xor(data[i : i + bs], prev))
            out += prev
        return bytes(out)

    def cbc_decrypt(self, iv: bytes, data: bytes) -> bytes:
        bs = self.block_size
        _check_blocks(data, bs)
        if len(iv) != bs:
            raise ValueError(f"IV must be {bs} bytes, got {len(iv)}")
        if not data:
            return b""
        # One ECB call for all blocks, then P_i = D(C_i) xor C_{i-1} in one big XOR.
        return _xor(self._ecb.decrypt(data), iv + data[:-bs])

    @property
    def subkeys(self) -> tuple[bytes, bytes]:
        """CMAC subkeys (K1, K2), computed on first use."""
        if self._subkeys is None:
            k1 = _dbl(self._ecb.encrypt(bytes(self.block_size)))
            self._subkeys = (k1, _dbl(k1))
        return self._subkeys

    def cmac(self, data: bytes, iv: bytes | None = None) -> bytes:
        """Full-block CMAC (NIST SP 800-38B), the CBC state starting at `iv` (or zero)."""
        bs = self.block_size
        if iv is None:
            iv = bytes(bs)
        elif len(iv) != bs:
            raise ValueError(f"IV must be {bs} bytes, got {len(iv)}")
        k1, k2 = self.subkeys
        n = len(data)
        if n and n % bs == 0:
            head, last = data[: n - bs], _xor(data[n - bs :], k1)
        else:
            cut = n - n % bs
            head = data[:cut]
            last = _xor((data[cut:] + b"\x80").ljust(bs, b"\x00"), k2)
        encrypt = self._ecb.encrypt
        state = iv
        for i in range(0, len(head), bs):
            state = encrypt(_xor(head[i : i + bs], state))
        return encrypt(_xor(last, state))


def cbc_encrypt(key: bytes, iv: bytes, data: bytes, *, aes: bool) -> bytes:
    return BlockCipher(key, aes=aes).cbc_encrypt(iv, data)


def cbc_decrypt(key: bytes, iv: bytes, data: bytes, *, aes: bool) -> bytes:
    return BlockCipher(key, aes=aes).cbc_decrypt(iv, data)


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
    """
    return BlockCipher(key, aes=aes).cmac(data, iv)


def _dbl(block: bytes) -> bytes:
    """Doubling in GF(2^n) (CMAC subkey step): shift left, xor Rb on carry."""
    n = int.from_bytes(block, "big") << 1
    rb = 0x87 if len(block) == 16 else 0x1B
    if n >> (8 * len(block)):
        n ^= rb
    return (n & ((1 << (8 * len(block))) - 1)).to_bytes(len(block), "big")


def cmac_subkeys(key: bytes, *, aes: bool) -> tuple[bytes, bytes]:
    """(K1, K2) of CMAC; AN10922 needs K2 explicitly for its 32-byte padding."""
    return BlockCipher(key, aes=aes).subkeys


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
