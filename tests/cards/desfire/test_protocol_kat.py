"""Whole exchanges with fixed randoms, the expected bytes computed independently here
with raw pycryptodome and zlib (not with the library's session code)."""

from __future__ import annotations

import zlib

import pytest
from Crypto.Cipher import AES, DES, DES3
from Crypto.Hash import CMAC

from badged.cards.desfire.commands import DesfireCard
from badged.cards.desfire.errors import AuthenticationError, PermissionDenied
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


# -- more whole exchanges, one reference fact each ------------------------------------------


def cmac_from(mod, key: bytes, iv: bytes, data: bytes) -> bytes:  # type: ignore[no-untyped-def]
    """CMAC continued from a running IV, with a stock CMAC: a first block that encrypts
    to `iv` (D(iv)) puts the CBC state there before `data`."""
    prefix = mod.new(key, mod.MODE_ECB).decrypt(iv)
    return CMAC.new(key, prefix + data, ciphermod=mod).digest()


def aes_session(k: bytes, rnd_a: bytes, rnd_b: bytes) -> tuple[list[bytes], bytes]:
    """The card's two answers to an AES authentication, and the session key."""
    ek_b = AES.new(k, AES.MODE_CBC, iv=bytes(16)).encrypt(rnd_b)
    token = AES.new(k, AES.MODE_CBC, iv=ek_b).encrypt(rnd_a + rotl(rnd_b))
    ek_a = AES.new(k, AES.MODE_CBC, iv=token[-16:]).encrypt(rotl(rnd_a))
    sk = rnd_a[0:4] + rnd_b[0:4] + rnd_a[12:16] + rnd_b[12:16]
    return [ek_b + H("91AF"), ek_a + H("9100")], sk


RND_A16 = bytes(range(0x30, 0x40))
RND_B16 = bytes(range(0x70, 0x80))
K_AES = H("00112233445566778899AABBCCDDEEFF")


def test_get_card_uid_is_the_reference_block_enciphered_with_the_command_iv() -> None:
    """GetCardUID (51) after AES auth: IV = CMAC(sk, 0, 51); the reply deciphers to
    `04440F32763180 || 99CE1AD4 || 00 × 5`; the next IV is the last cipher block."""
    auth, sk = aes_session(K_AES, RND_A16, RND_B16)
    iv1 = CMAC.new(sk, H("51"), ciphermod=AES).digest()
    enc = AES.new(sk, AES.MODE_CBC, iv=iv1).encrypt(H("04440F3276318099CE1AD40000000000"))
    iv2 = cmac_from(AES, sk, enc, H("6400"))
    mac = cmac_from(AES, sk, iv2, H("01") + b"\x00")[:8]
    card = Card([*auth, enc + H("9100"), H("01") + mac + H("9100")])
    reader = DesfireCard(card, rng=lambda n: RND_A16[:n])
    reader.authenticate(1, DesfireKey(KeyType.AES, K_AES))
    assert reader.get_card_uid() == H("04440F32763180")
    assert card.sent[2] == H("9051000000")
    assert reader.get_key_version(0) == 1


def test_get_version_in_session_one_cmac_after_three_frames() -> None:
    """The IV moves on the command only (60), not on the AF frames; one CMAC over all
    28 bytes || 00 ends the last frame."""
    auth, sk = aes_session(K_AES, RND_A16, RND_B16)
    version = H("04010101001805" "04010101041805" "04112233445566" "BA5E1D8040" "2619")
    iv1 = CMAC.new(sk, H("60"), ciphermod=AES).digest()
    mac = cmac_from(AES, sk, iv1, version + b"\x00")[:8]
    frames = [version[:7] + H("91AF"), version[7:14] + H("91AF"), version[14:] + mac + H("9100")]
    card = Card([*auth, *frames])
    reader = DesfireCard(card, rng=lambda n: RND_A16[:n])
    reader.authenticate(0, DesfireKey(KeyType.AES, K_AES))
    v = reader.get_version()
    assert v.uid == H("04112233445566") and v.hardware.storage_size == 4096
    assert card.sent[2:] == [H("9060000000"), H("90AF000000"), H("90AF000000")]


def test_iso_2k3des_session_key_and_a_maced_read_over_two_frames() -> None:
    """1A with 2K3DES: 8-byte randoms, session key A[0:4] B[0:4] A[4:8] B[4:8], 8-byte
    CMAC; ReadData offset and length 3 bytes LE; the CMAC straddles the two frames."""
    k = H("00112233445566778899AABBCCDDEEFF")
    rnd_a, rnd_b = H("A0A1A2A3A4A5A6A7"), H("B0B1B2B3B4B5B6B7")
    ek_b = DES3.new(k, DES3.MODE_CBC, iv=bytes(8)).encrypt(rnd_b)
    token = DES3.new(k, DES3.MODE_CBC, iv=ek_b).encrypt(rnd_a + rotl(rnd_b))
    ek_a = DES3.new(k, DES3.MODE_CBC, iv=token[-8:]).encrypt(rotl(rnd_a))
    sk = rnd_a[0:4] + rnd_b[0:4] + rnd_a[4:8] + rnd_b[4:8]
    data = bytes(range(56))
    cmd = H("BD02") + (0x000105).to_bytes(3, "little") + (56).to_bytes(3, "little")
    iv1 = CMAC.new(sk, cmd, ciphermod=DES3).digest()
    reply = data + cmac_from(DES3, sk, iv1, data + b"\x00")
    card = Card([ek_b + H("91AF"), ek_a + H("9100"),
                 reply[:59] + H("91AF"), reply[59:] + H("9100")])
    reader = DesfireCard(card, rng=lambda n: rnd_a[:n])
    reader.authenticate(2, DesfireKey(KeyType.TDES_2K, k), "iso")
    assert card.sent[0] == H("901A0000010200")
    assert reader.read_data(2, 0x105, 56, comm="mac") == data
    assert card.sent[2] == H("90BD00000702050100380000") + H("00")


def test_iso_des_session_is_single_des_and_length_zero_finds_the_crc() -> None:
    """1A with a DES key: session key A[0:4] B[0:4] (single DES); an enciphered ReadData of
    the whole file (length 0) deciphers to data || CRC32(data || 00) || zero padding."""
    k = H("0011223344556677")
    rnd_a, rnd_b = H("C0C1C2C3C4C5C6C7"), H("D0D1D2D3D4D5D6D7")
    ek_b = DES.new(k, DES.MODE_CBC, iv=bytes(8)).encrypt(rnd_b)
    token = DES.new(k, DES.MODE_CBC, iv=ek_b).encrypt(rnd_a + rotl(rnd_b))
    ek_a = DES.new(k, DES.MODE_CBC, iv=token[-8:]).encrypt(rotl(rnd_a))
    sk = rnd_a[0:4] + rnd_b[0:4]
    data = b"249760531028417\x00\x00"  # ends with zeros, like the padding after it
    iv1 = CMAC.new(sk, H("BD00000000000000"), ciphermod=DES).digest()
    plain = data + desfire_crc32(data + b"\x00")
    plain += bytes(-len(plain) % 8)
    enc = DES.new(sk, DES.MODE_CBC, iv=iv1).encrypt(plain)
    card = Card([ek_b + H("91AF"), ek_a + H("9100"), enc + H("9100")])
    reader = DesfireCard(card, rng=lambda n: rnd_a[:n])
    reader.authenticate(0, DesfireKey(KeyType.DES, k), "iso")
    assert reader.read_data(0, comm="enciphered") == data


def test_legacy_2k3des_token_is_deciphered_in_send_mode() -> None:
    """0A with 2K3DES: the reader deciphers what it sends (C_i = D(P_i xor C_i-1)), the card
    enciphers; session key A[0:4] B[0:4] A[4:8] B[4:8]; a MACed reply carries 4 bytes."""
    k = H("00112233445566778899AABBCCDDEEFF")
    rnd_a, rnd_b = H("A0A1A2A3A4A5A6A7"), H("B0B1B2B3B4B5B6B7")
    ecb = DES3.new(k, DES3.MODE_ECB)
    ek_b = ecb.encrypt(rnd_b)
    d1 = ecb.decrypt(rnd_a)
    d2 = ecb.decrypt(xor(rotl(rnd_b), d1))
    ek_a = ecb.encrypt(rotl(rnd_a))
    sk = rnd_a[0:4] + rnd_b[0:4] + rnd_a[4:8] + rnd_b[4:8]
    data = b"hello"
    mac = DES3.new(sk, DES3.MODE_CBC, iv=bytes(8)).encrypt(data + bytes(3))[:4]
    card = Card([ek_b + H("91AF"), ek_a + H("9100"), data + mac + H("9100")])
    reader = DesfireCard(card, rng=lambda n: rnd_a[:n])
    reader.authenticate(1, DesfireKey(KeyType.TDES_2K, k), "legacy")
    assert card.sent[1] == H("90AF000010") + d1 + d2 + H("00")
    assert reader.read_data(0, comm="mac") == data
    assert card.sent[2] == H("90BD0000070000000000000000")  # no CMAC sent, none expected


def test_an_error_status_ends_the_session_and_a_wrong_key_leaves_none() -> None:
    """After 91 9D the next reply is plain with no CMAC; a refused key (91 AE after the
    token) leaves no session either."""
    auth, _sk = aes_session(K_AES, RND_A16, RND_B16)
    ek_b_other = AES.new(K_AES, AES.MODE_CBC, iv=bytes(16)).encrypt(RND_B16)
    card = Card([*auth, H("919D"), H("109100"), ek_b_other + H("91AF"), H("91AE"),
                 H("209100")])
    reader = DesfireCard(card, rng=lambda n: RND_A16[:n])
    reader.authenticate(1, DesfireKey(KeyType.AES, K_AES))
    with pytest.raises(PermissionDenied, match=r"^ReadData: SW 919D"):
        reader.read_data(3, comm="mac")
    assert reader.session is None
    assert reader.get_key_version(1) == 0x10  # plain, no CMAC: the session is over
    with pytest.raises(AuthenticationError, match=r"^AuthenticateAES: SW 91AE"):
        reader.authenticate(2, DesfireKey(KeyType.AES, bytes(16)))
    assert reader.session is None
    assert reader.get_key_version(2) == 0x20
