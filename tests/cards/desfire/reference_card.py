"""A second DESFire EV1 card for the tests, written from the public facts alone.

badged's simulator reuses the library's secure messaging (`session.py`), so a
misunderstanding there would sit on both ends and every simulator test would still pass.
This card shares no code with either: raw pycryptodome, zlib and the facts of
docs/desfire.md (wrapping, chaining, the three authentications, CMAC chaining, CRC32 and
CRC16, session keys, free access). It answers what a profile read needs (FF CA,
SelectApplication, the authentications, GetVersion, GetCardUID, ReadData) and a few
commands around them (GetFileSettings, GetKeyVersion), in frames of a chosen size.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from Crypto.Cipher import AES, DES, DES3
from Crypto.Hash import CMAC

FREE = "free"
PLAIN, MAC, ENCIPHERED = "plain", "mac", "enciphered"
_COMM_BITS = {PLAIN: 0, MAC: 1, ENCIPHERED: 3}


def crc32(data: bytes) -> bytes:
    return ((~zlib.crc32(data)) & 0xFFFFFFFF).to_bytes(4, "little")


def crc_a(data: bytes) -> bytes:
    crc = 0x6363
    for byte in data:
        byte ^= crc & 0xFF
        byte = (byte ^ (byte << 4)) & 0xFF
        crc = (crc >> 8) ^ (byte << 8) ^ (byte << 3) ^ (byte >> 4)
    return crc.to_bytes(2, "little")


def rotl(data: bytes) -> bytes:
    return data[1:] + data[:1]


class Key:
    """One key with its cipher: AES, 3K3DES, 2K3DES (equal halves: DES) or DES."""

    def __init__(self, kind: str, data: bytes, version: int = 0) -> None:
        self.kind, self.data, self.version = kind, data, version
        self.bs = 16 if kind == "aes" else 8
        self.rnd = 16 if kind in ("aes", "3k3des") else 8
        halves_equal = len(data) == 16 and bytes(b & 0xFE for b in data[:8]) == bytes(
            b & 0xFE for b in data[8:])
        self.single_des = kind == "des" or (kind == "2k3des" and halves_equal)
        if kind == "aes":
            self._mod, self._key = AES, data
        elif self.single_des:
            self._mod, self._key = DES, data[:8]
        else:
            self._mod, self._key = DES3, data

    def ecb(self) -> Any:
        return self._mod.new(self._key, self._mod.MODE_ECB)

    def encrypt(self, iv: bytes, data: bytes) -> bytes:
        return self._mod.new(self._key, self._mod.MODE_CBC, iv=iv).encrypt(data)

    def decrypt(self, iv: bytes, data: bytes) -> bytes:
        return self._mod.new(self._key, self._mod.MODE_CBC, iv=iv).decrypt(data)

    def cmac(self, iv: bytes, data: bytes) -> bytes:
        """CMAC continued from `iv`: a first block that encrypts to `iv` puts it there."""
        return CMAC.new(self._key, self.ecb().decrypt(iv) + data, ciphermod=self._mod).digest()

    def session(self, a: bytes, b: bytes) -> Key:
        if self.kind == "aes":
            return Key("aes", a[0:4] + b[0:4] + a[12:16] + b[12:16])
        if self.kind == "3k3des":
            return Key("3k3des", a[0:4] + b[0:4] + a[6:10] + b[6:10] + a[12:16] + b[12:16])
        if self.single_des:
            return Key("des", a[0:4] + b[0:4])
        return Key("2k3des", a[0:4] + b[0:4] + a[4:8] + b[4:8])


@dataclass
class RefFile:
    comm: str  # plain | mac | enciphered
    read: int | str  # a key number or "free"
    data: bytes


@dataclass
class RefApp:
    keys: list[Key]
    files: dict[int, RefFile] = field(default_factory=dict)


class ReferenceCard:
    """`card(apdu) -> response`: a transmit callable, like a reader's; with `atr`,
    `power_on`, `power_off` and `process` it is also a card engine for vpcd."""

    atr = bytes.fromhex("3B8180018080")

    VERSION = bytes.fromhex("04010101001805" "04010101041805")
    BATCH_AND_DATE = bytes.fromhex("BA5E1D8040" "2619")

    def __init__(self, uid: bytes, apps: dict[int, RefApp], *, picc: Key | None = None,
                 random_uid: bool = False, frame: int = 59,
                 rng: Callable[[int], bytes] = os.urandom) -> None:
        self.uid, self.apps, self.frame, self.rng = uid, apps, frame, rng
        self.picc = picc or Key("des", bytes(8))
        self.random_id = b"\x08" + rng(3) if random_uid else None
        self.app: RefApp | None = None
        self.session: Key | None = None
        self.legacy = False
        self.key_no = -1
        self.iv = b""
        self.pending: Callable[[bytes], bytes] | None = None
        self.exchanges: list[tuple[bytes, bytes]] = []

    def power_on(self) -> None:
        """In the field: card level, no session; a random-UID card draws a new id."""
        self.app, self.session, self.pending = None, None, None
        if self.random_id is not None:
            self.random_id = b"\x08" + self.rng(3)

    def power_off(self) -> None:
        self.app, self.session, self.pending = None, None, None

    def process(self, apdu: bytes) -> bytes:
        return self(apdu)

    def __call__(self, apdu: bytes) -> bytes:
        response = self._answer(bytes(apdu))
        self.exchanges.append((bytes(apdu), response))
        return response

    def _error(self, code: int) -> bytes:
        self.session, self.pending = None, None
        return bytes([0x91, code])

    def _answer(self, apdu: bytes) -> bytes:
        if apdu == bytes.fromhex("FFCA000000"):
            return (self.random_id or self.uid) + b"\x90\x00"
        if len(apdu) < 5 or apdu[0] != 0x90 or apdu[2:4] != b"\x00\x00":
            return b"\x6e\x00"
        ins, body = apdu[1], apdu[4:]
        if len(body) == 1 and body == b"\x00":
            data = b""
        elif len(body) == body[0] + 2 and body[-1] == 0 and body[0]:
            data = body[1:-1]
        else:
            return b"\x67\x00"
        if ins == 0xAF:
            pending, self.pending = self.pending, None
            return pending(data) if pending else self._error(0x1C)
        self.pending = None
        if ins in (0x0A, 0x1A, 0xAA):
            return self._authenticate(ins, data)
        if ins == 0x5A:
            self.session = None
            aid = int.from_bytes(data, "little")
            if aid and aid not in self.apps:
                return self._error(0xA0)
            self.app = self.apps.get(aid)
            return b"\x91\x00"
        if self.session is not None and not self.legacy:
            self.iv = self.session.cmac(self.iv, bytes([ins]) + data)
        if ins == 0x60:
            uid = bytes(7) if self.random_id else self.uid
            return self._reply(self.VERSION + uid + self.BATCH_AND_DATE, PLAIN, first=(7, 7))
        if ins == 0x51:
            return self._reply(self.uid, ENCIPHERED) if self.session else self._error(0xAE)
        if ins == 0x64:
            keys = self.app.keys if self.app else [self.picc]
            return self._reply(bytes([keys[data[0]].version]), PLAIN)
        f = self.app.files.get(data[0]) if self.app and data else None
        if f is None:
            return self._error(0xF0 if ins in (0xBD, 0xF5) else 0x1C)
        if ins == 0xF5:
            read = 0xE if f.read == FREE else int(f.read)
            access = (read << 12 | 0x0000).to_bytes(2, "little")
            settings = bytes([0, _COMM_BITS[f.comm]]) + access + len(f.data).to_bytes(3, "little")
            return self._reply(settings, PLAIN)
        if ins != 0xBD or len(data) != 7:
            return self._error(0x1C)
        if f.read == FREE:
            comm = PLAIN  # free access: plain whatever the file's setting
        elif self.session is not None and self.key_no == f.read:
            comm = f.comm
        else:
            return self._error(0xAE)
        offset, length = int.from_bytes(data[1:4], "little"), int.from_bytes(data[4:7], "little")
        if offset >= len(f.data) or offset + length > len(f.data):
            return self._error(0xBE)
        return self._reply(f.data[offset : offset + length] if length else f.data[offset:], comm)

    def _reply(self, data: bytes, comm: str, first: tuple[int, ...] = ()) -> bytes:
        s = self.session
        if s is not None and self.legacy:
            if comm == MAC:
                data += s.encrypt(bytes(8), data + bytes(-len(data) % 8))[-8:][:4]
            elif comm == ENCIPHERED:
                plain = data + crc_a(data)
                data = s.encrypt(bytes(8), plain + bytes(-len(plain) % 8))
        elif s is not None and comm == ENCIPHERED:
            plain = data + crc32(data + b"\x00")
            data = s.encrypt(self.iv, plain + bytes(-len(plain) % s.bs))
            self.iv = data[-s.bs :]
        elif s is not None:  # plain and MACed answers alike: 8 bytes of CMAC(data || 00)
            self.iv = s.cmac(self.iv, data + b"\x00")
            data += self.iv[:8]
        frames = []
        for size in first:
            frames.append(data[:size])
            data = data[size:]
        frames += [data[i : i + self.frame] for i in range(0, len(data), self.frame)] or [b""]
        return self._frames(frames)

    def _frames(self, frames: list[bytes]) -> bytes:
        if len(frames) == 1:
            return frames[0] + b"\x91\x00"
        self.pending = lambda data: self._frames(frames[1:]) if not data else self._error(0x7E)
        return frames[0] + b"\x91\xaf"

    def _authenticate(self, ins: int, data: bytes) -> bytes:
        self.session = None
        keys = self.app.keys if self.app else [self.picc]
        if len(data) != 1 or data[0] >= len(keys):
            return self._error(0x40)
        key_no, key = data[0], keys[data[0]]
        if (ins == 0xAA) != (key.kind == "aes") or (ins == 0x0A and key.kind == "3k3des"):
            return self._error(0xAE)
        legacy, bs = ins == 0x0A, key.bs
        rnd_b = self.rng(key.rnd)
        ek_rnd_b = key.encrypt(bytes(bs), rnd_b)

        def finish(token: bytes) -> bytes:
            if len(token) != 2 * key.rnd:
                return self._error(0x7E)
            if legacy:  # the reader deciphered in "send mode": P_i = E(C_i) xor C_i-1
                ecb, prev, plain = key.ecb(), bytes(bs), b""
                for i in range(0, len(token), bs):
                    block = token[i : i + bs]
                    plain += bytes(x ^ y for x, y in zip(ecb.encrypt(block), prev, strict=True))
                    prev = block
            else:
                plain = key.decrypt(ek_rnd_b[-bs:], token)
            rnd_a = plain[: key.rnd]
            if plain[key.rnd :] != rotl(rnd_b):
                return self._error(0xAE)
            answer = key.encrypt(bytes(bs) if legacy else token[-bs:], rotl(rnd_a))
            self.session, self.legacy, self.key_no = key.session(rnd_a, rnd_b), legacy, key_no
            self.iv = bytes(self.session.bs)
            return answer + b"\x91\x00"

        self.pending = finish
        return ek_rnd_b + b"\x91\xaf"
