"""Whole exchanges with fixed randoms, the expected bytes computed independently here
with raw pycryptodome and zlib (not with the library's session code)."""

from __future__ import annotations

import zlib

from Crypto.Cipher import AES, DES, DES3
from Crypto.Hash import CMAC

from badged.cards.desfire.commands import DesfireCard
from badged.cards.desfire.keys import DesfireKey, KeyType

H = bytes.fromhex


def rotl(b: bytes) -> bytes:
    return b[1:] + b[:1]


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def desfire_crc32(data: bytes) -> bytes:
    return ((~zlib.crc32(data)) & 0xFFFFFFFF).to_bytes(4, "little")


class Card:
    """Replays replies and records what the reader sent."""

    def __init__(self, replies: list[bytes]) -> None:
        self.replies = replies
        self.sent: list[bytes] = []

    def __call__(self, apdu: bytes) -> bytes:
        self.sent.append(apdu)
        return self.replies[len(self.sent) - 1]


def test_aes_auth_and_enciphered_read() -> None:
    k = H("000102030405060708090A0B0C0D0E0F")
    rnd_a = H("A0A1A2A3A4A5A6A7A8A9AAABACADAEAF")
    rnd_b = H("B0B1B2B3B4B5B6B7B8B9BABBBCBDBEBF")
    ek_b = AES.new(k, AES.MODE_CBC, iv=bytes(16)).encrypt(rnd_b)
    token = AES.new(k, AES.MODE_CBC, iv=ek_b).encrypt(rnd_a + rotl(rnd_b))
    ek_a = AES.new(k, AES.MODE_CBC, iv=token[-16:]).encrypt(rotl(rnd_a))
    sk = rnd_a[0:4] + rnd_b[0:4] + rnd_a[12:16] + rnd_b[12:16]
    cmd = H("BD00000000000000")  # ReadData file 0, whole file
    iv1 = CMAC.new(sk, cmd, ciphermod=AES).digest()  # IV is zero right after auth
    data = b"249760531028417"
    plain = data + desfire_crc32(data + b"\x00")
    plain += bytes(-len(plain) % 16)
    enc = AES.new(sk, AES.MODE_CBC, iv=iv1).encrypt(plain)
    # next command: GetKeyVersion 1 (plain, CMACed reply), IV = last cipher block
    cmd2 = H("6401")
    iv2 = CMAC.new(sk, AES.new(sk, AES.MODE_ECB).decrypt(enc[-16:]) + cmd2, ciphermod=AES).digest()
    mac = CMAC.new(sk, AES.new(sk, AES.MODE_ECB).decrypt(iv2) + H("10") + b"\x00", ciphermod=AES)

    card = Card(
        [
            ek_b + H("91AF"),
            ek_a + H("9100"),
            enc + H("9100"),
            H("10") + mac.digest()[:8] + H("9100"),
        ]
    )
    reader = DesfireCard(card, rng=lambda n: rnd_a[:n])
    reader.authenticate(0, DesfireKey(KeyType.AES, k))
    assert card.sent[0] == H("90AA0000010000")
    assert card.sent[1] == H("90AF000020") + token + H("00")
    assert reader.read_data(0, comm="enciphered") == data
    assert card.sent[2] == H("90BD0000070000000000000000")
    assert reader.get_key_version(1) == 0x10


def test_legacy_des_auth_and_maced_read() -> None:
    k = H("0011223344556677")
    rnd_a = H("A0A1A2A3A4A5A6A7")
    rnd_b = H("B0B1B2B3B4B5B6B7")
    ecb = DES.new(k, DES.MODE_ECB)
    ek_b = ecb.encrypt(rnd_b)
    d1 = ecb.decrypt(rnd_a)  # "send mode" deciphers
    d2 = ecb.decrypt(xor(rotl(rnd_b), d1))
    ek_a = ecb.encrypt(rotl(rnd_a))
    sk = rnd_a[0:4] + rnd_b[0:4]
    data = H("0102030405060708090A0B")
    mac = DES.new(sk, DES.MODE_CBC, iv=bytes(8)).encrypt(data + bytes(5))[-8:][:4]
    crc = 0x6363
    for byte in data:  # ISO 14443-3 CRC_A, written out
        byte ^= crc & 0xFF
        byte = (byte ^ (byte << 4)) & 0xFF
        crc = (crc >> 8) ^ (byte << 8) ^ (byte << 3) ^ (byte >> 4)
    enc_plain = data + crc.to_bytes(2, "little") + bytes(3)
    enc = DES.new(sk, DES.MODE_CBC, iv=bytes(8)).encrypt(enc_plain)

    card = Card(
        [
            ek_b + H("91AF"),
            ek_a + H("9100"),
            data + mac + H("9100"),
            enc + H("9100"),
        ]
    )
    reader = DesfireCard(card, rng=lambda n: rnd_a[:n])
    reader.authenticate(3, DesfireKey(KeyType.DES, k))
    assert card.sent[0] == H("900A0000010300")
    assert card.sent[1] == H("90AF000010") + d1 + d2 + H("00")
    assert reader.read_data(1, comm="mac") == data
    assert reader.read_data(2, length=11, comm="enciphered") == data


def test_iso_3k3des_auth_and_cmac_read() -> None:
    k = H("00112233445566778899AABBCCDDEEFF0123456789ABCDEF")
    rnd_a = bytes(range(0xA0, 0xB0))
    rnd_b = bytes(range(0xB0, 0xC0))
    ek_b = DES3.new(k, DES3.MODE_CBC, iv=bytes(8)).encrypt(rnd_b)
    token = DES3.new(k, DES3.MODE_CBC, iv=ek_b[-8:]).encrypt(rnd_a + rotl(rnd_b))
    ek_a = DES3.new(k, DES3.MODE_CBC, iv=token[-8:]).encrypt(rotl(rnd_a))
    a, b = rnd_a, rnd_b
    sk = a[0:4] + b[0:4] + a[6:10] + b[6:10] + a[12:16] + b[12:16]
    cmd = H("BD01000000000000")
    iv1 = CMAC.new(sk, cmd, ciphermod=DES3).digest()
    data = b"hello, world"
    prefix = DES3.new(sk, DES3.MODE_ECB).decrypt(iv1)
    mac = CMAC.new(sk, prefix + data + b"\x00", ciphermod=DES3).digest()

    card = Card([ek_b + H("91AF"), ek_a + H("9100"), data + mac + H("9100")])
    reader = DesfireCard(card, rng=lambda n: rnd_a[:n])
    reader.authenticate(2, DesfireKey(KeyType.TDES_3K, k))
    assert card.sent[0] == H("901A0000010200")
    assert card.sent[1] == H("90AF000020") + token + H("00")
    assert reader.read_data(1, comm="mac") == data
