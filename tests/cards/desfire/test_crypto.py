"""Known-answer tests: every public vector of docs/desfire.md, plus session keys."""

from __future__ import annotations

import pytest
from Crypto.Cipher import AES, DES, DES3

from badged.cards.desfire import crypto
from badged.cards.desfire.errors import ResponseCrcError, ResponseMacError
from badged.cards.desfire.info import CommMode
from badged.cards.desfire.keys import DesfireKey, KeyType, session_key
from badged.cards.desfire.session import Ev1Messaging, LegacyMessaging

H = bytes.fromhex

NIST_KEY = H("2b7e151628aed2a6abf7158809cf4f3c")
NIST_MSG = H(
    "6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710"
)


# -- CMAC (NIST SP 800-38B) ----------------------------------------------------------------


def test_cmac_subkeys_nist() -> None:
    k1, k2 = crypto.cmac_subkeys(NIST_KEY, aes=True)
    assert k1 == H("fbeed618357133667c85e08f7236a8de")
    assert k2 == H("f7ddac306ae266ccf90bc11ee46d513b")


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (0, "bb1d6929e95937287fa37d129b756746"),
        (16, "070a16b46b4d4144f79bdd9dd04a287c"),
        (40, "dfa66747de9ae63030ca32611497c827"),
        (64, "51f0bebf7e3b9d92fc49741779363cfe"),
    ],
)
def test_cmac_nist_vectors(length: int, expected: str) -> None:
    assert crypto.cmac(NIST_KEY, NIST_MSG[:length], aes=True) == H(expected)


def _reference_cmac(key: bytes, iv: bytes, data: bytes) -> bytes:
    """Textbook CMAC with a starting IV (libfreefare's cmac()), AES only."""
    k1, k2 = crypto.cmac_subkeys(key, aes=True)
    if data and len(data) % 16 == 0:
        last_mask, padded = k1, data
    else:
        last_mask = k2
        padded = data + b"\x80" + bytes(-(len(data) + 1) % 16)
    padded = padded[:-16] + bytes(a ^ b for a, b in zip(padded[-16:], last_mask, strict=True))
    return AES.new(key, AES.MODE_CBC, iv=iv).encrypt(padded)[-16:]


@pytest.mark.parametrize("length", [1, 15, 16, 17, 33, 64])
def test_cmac_continued_from_iv(length: int) -> None:
    iv = H("000102030405060708090a0b0c0d0e0f")
    data = NIST_MSG[:length]
    assert crypto.cmac(NIST_KEY, data, aes=True, iv=iv) == _reference_cmac(NIST_KEY, iv, data)


def test_cmac_3des_and_degenerate_des() -> None:
    key3 = H("0123456789abcdef23456789abcdef01456789abcdef0123")
    # the 3DES CMAC subkey constant is 0x1B; a full block uses K1
    k1, _ = crypto.cmac_subkeys(key3, aes=False)
    block = H("6bc1bee22e409f96")
    expected = DES3.new(key3, DES3.MODE_ECB).encrypt(
        bytes(a ^ b for a, b in zip(block, k1, strict=True))
    )
    assert crypto.cmac(key3, block, aes=False) == expected
    # a 2K3DES key with K1 == K2 (parity ignored) is single DES
    des = H("0011223344556677")
    des_twin = des + bytes(b ^ 1 for b in des)
    assert crypto.cmac(des_twin, b"abc", aes=False) == crypto.cmac(des, b"abc", aes=False)


# -- AN10922 / AN10957 ---------------------------------------------------------------------


def test_an10922_vector() -> None:
    master = H("00112233445566778899AABBCCDDEEFF")
    div = H("04782E21801D80") + H("3042F5") + H("4E585020416275")
    derived = crypto.an10922_aes128(master, div)
    assert derived == H("A8DD63A3B89D54B37CA802473FDA9175")
    # 18-byte M: AN10922 equals a plain CMAC of M
    assert derived == crypto.cmac(master, b"\x01" + div, aes=True)


def test_an10957_vector_short_input_differs_from_plain_cmac() -> None:
    key = H("F3F9377698707B688EAF84ABE39E3791")
    m = H("0104DEADBEEFFEED")
    derived = crypto.an10922_aes128(key, m[1:])
    assert derived == H("0BB408BAFF98B6EE9F2E1585777F6A51")
    plain = crypto.cmac(key, m, aes=True)
    assert plain == H("721E2C01E81AF85D815633969CEA2607")
    assert derived != plain


def test_an10922_full_32_bytes_uses_k1() -> None:
    key = NIST_KEY
    div = bytes(range(31))
    assert crypto.an10922_aes128(key, div) == crypto.cmac(key, b"\x01" + div, aes=True)


@pytest.mark.parametrize("bad", [b"", bytes(32)])
def test_an10922_input_length(bad: bytes) -> None:
    with pytest.raises(ValueError, match="1 to 31 bytes"):
        crypto.an10922_aes128(NIST_KEY, bad)


# -- CRCs ----------------------------------------------------------------------------------


def test_crc32_getcarduid_block() -> None:
    assert crypto.crc32(H("04440F3276318000")) == H("99CE1AD4")


def test_crc32_check_string() -> None:
    assert crypto.crc32(b"123456789") == H("D9C60B34")


def test_crc_a() -> None:
    assert crypto.crc16(H("04440F32763180")) == H("2798")


def test_crc_residues_are_zero() -> None:
    """No final inversion: appending the CRC gives a zero register (libfreefare's check)."""
    data = H("04440F32763180")
    assert crypto.crc16(data + crypto.crc16(data)) == bytes(2)
    assert crypto.crc32(data + crypto.crc32(data)) == bytes(4)


# -- AES primitive (AN12196) and legacy CBC ------------------------------------------------


def test_an12196_aes_decrypt() -> None:
    key = DesfireKey(KeyType.AES, bytes(16))
    rnd_b = key.cbc_decrypt(bytes(16), H("A04C124213C186F22399D33AC2A30215"))
    assert rnd_b == H("B9E2FC789B64BF237CCCAA20EC7E6E48")


def test_legacy_send_mode_uses_decipher() -> None:
    key = H("0011223344556677")
    p1, p2 = H("0102030405060708"), H("1112131415161718")
    ecb = DES.new(key, DES.MODE_ECB)
    c1 = ecb.decrypt(p1)
    c2 = ecb.decrypt(bytes(a ^ b for a, b in zip(p2, c1, strict=True)))
    sent = crypto.cbc_decipher_send(key, p1 + p2)
    assert sent == c1 + c2
    assert crypto.cbc_encipher_receive(key, sent) == p1 + p2


# -- keys ----------------------------------------------------------------------------------

RND_A = bytes(range(0x00, 0x10))
RND_B = bytes(range(0x10, 0x20))


@pytest.mark.parametrize(
    ("key", "expected_type", "expected"),
    [
        (DesfireKey(KeyType.AES, bytes(16)), KeyType.AES, "00010203 10111213 0C0D0E0F 1C1D1E1F"),
        (
            DesfireKey(KeyType.TDES_3K, bytes(range(24))),
            KeyType.TDES_3K,
            "00010203 10111213 06070809 16171819 0C0D0E0F 1C1D1E1F",
        ),
        (
            DesfireKey(KeyType.TDES_2K, bytes(range(16))),
            KeyType.TDES_2K,
            "00010203 10111213 04050607 14151617",
        ),
        (DesfireKey(KeyType.DES, bytes(8)), KeyType.DES, "00010203 10111213"),
        # 2K3DES with K1 == K2 is single DES for the card, session key included
        (DesfireKey(KeyType.TDES_2K, bytes(16)), KeyType.DES, "00010203 10111213"),
    ],
)
def test_session_keys(key: DesfireKey, expected_type: KeyType, expected: str) -> None:
    rnd_len = key.type.rnd_length
    sk = session_key(key, RND_A[:rnd_len], RND_B[:rnd_len])
    assert sk.type is expected_type
    assert sk.data == H(expected)


def test_key_lengths_and_des_twin() -> None:
    with pytest.raises(ValueError, match="aes key must be 16 bytes"):
        DesfireKey(KeyType.AES, bytes(8))
    with pytest.raises(ValueError, match="3k3des key must be 24 bytes"):
        DesfireKey(KeyType.TDES_3K, bytes(16))
    twin = DesfireKey(KeyType.DES, H("00112233445566770011223344556677"))
    assert twin.data == H("0011223344556677")
    with pytest.raises(ValueError, match="K1 == K2"):
        DesfireKey(KeyType.DES, H("00112233445566778899AABBCCDDEEFF"))


def test_key_version_in_parity_bits_is_ignored_for_equality() -> None:
    base = DesfireKey(KeyType.TDES_2K, H("00112233445566778899AABBCCDDEEFF"))
    # version 0xA5 = 1010 0101 written in the LSBs of bytes 0..7
    versioned = bytes(
        (b & 0xFE) | ((0xA5 >> (7 - i)) & 1) if i < 8 else b for i, b in enumerate(base.data)
    )
    other = DesfireKey(KeyType.TDES_2K, versioned)
    assert other.key_version == 0xA5
    assert base.key_version == 0x55  # LSBs of 00 11 22 33 44 55 66 77
    assert other.same_key(base)
    assert not other.same_key(DesfireKey(KeyType.TDES_2K, bytes(16)))


# -- secure messaging known answers ----------------------------------------------------------

SESSION_AES = DesfireKey(KeyType.AES, H("000102030405060708090A0B0C0D0E0F"))


def test_ev1_getcarduid_decipher_known_block() -> None:
    """The decrypted GetCardUID block of docs/desfire.md, enciphered independently."""
    iv = H("F0E0D0C0B0A090807060504030201000")
    block = H("04440F3276318099CE1AD40000000000")
    cipher = AES.new(SESSION_AES.data, AES.MODE_CBC, iv=iv).encrypt(block)
    for length in (7, None):
        sm = Ev1Messaging(0, SESSION_AES)
        sm.iv = iv
        assert sm.unwrap("GetCardUID", cipher, CommMode.ENCIPHERED, length) == H("04440F32763180")
        assert sm.iv == cipher[-16:]
    card = Ev1Messaging(0, SESSION_AES)
    card.iv = iv
    assert card.wrap(H("04440F32763180"), CommMode.ENCIPHERED) == cipher


def test_ev1_getcarduid_bad_crc() -> None:
    iv = bytes(16)
    block = H("04440F3276318099CE1AD50000000000")  # one CRC bit flipped
    cipher = AES.new(SESSION_AES.data, AES.MODE_CBC, iv=iv).encrypt(block)
    with pytest.raises(ResponseCrcError, match="GetCardUID: CRC"):
        Ev1Messaging(0, SESSION_AES).unwrap("GetCardUID", cipher, CommMode.ENCIPHERED, 7)


def test_ev1_command_and_response_cmac_chain() -> None:
    """IV = CMAC(IV, cmd); reply MAC = CMAC(IV, data || 00)[:8]; IV = that CMAC."""
    sm = Ev1Messaging(1, SESSION_AES)
    cmd = H("BD00000000000000")
    sm.on_command(cmd)
    iv1 = _reference_cmac(SESSION_AES.data, bytes(16), cmd)
    assert sm.iv == iv1
    data = b"249760531028417"
    full = _reference_cmac(SESSION_AES.data, iv1, data + b"\x00")
    assert sm.unwrap("ReadData", data + full[:8], CommMode.PLAIN) == data
    assert sm.iv == full
    bad = Ev1Messaging(1, SESSION_AES)
    bad.on_command(cmd)
    with pytest.raises(ResponseMacError, match="ReadData: response MAC"):
        bad.unwrap("ReadData", data + bytes(8), CommMode.MAC)


def test_legacy_mac_and_crc16() -> None:
    key = DesfireKey(KeyType.DES, H("0011223344556677"))
    data = H("0102030405060708090A")
    padded = data + bytes(6)
    mac = DES.new(key.data, DES.MODE_CBC, iv=bytes(8)).encrypt(padded)[-8:][:4]
    sm = LegacyMessaging(0, key)
    assert sm.unwrap("ReadData", data + mac, CommMode.MAC) == data
    plain = data + crypto.crc16(data)
    plain += bytes(-len(plain) % 8)
    cipher = DES.new(key.data, DES.MODE_CBC, iv=bytes(8)).encrypt(plain)
    assert sm.unwrap("ReadData", cipher, CommMode.ENCIPHERED, None) == data
    assert sm.wrap(data, CommMode.ENCIPHERED) == cipher
    assert sm.wrap(data, CommMode.MAC) == data + mac
