"""The reader against a second, independent card (`reference_card.py`): every key type and
authentication, every communication mode, offsets and lengths, frames of another size
than the simulator's, and the demo profiles end to end. The simulator shares the
library's secure messaging; this card shares nothing with it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from Crypto.Cipher import AES
from Crypto.Hash import CMAC

from badged.cards.desfire.commands import DesfireCard
from badged.cards.desfire.errors import AuthenticationError, ResponseMacError
from badged.cards.desfire.info import CommMode
from badged.cards.desfire.keys import DesfireKey
from badged.cards.profile import ProfileReader
from badged.cli import main
from badged.config.tree import load_card_profile

from .reference_card import ENCIPHERED, FREE, MAC, PLAIN, Key, RefApp, ReferenceCard, RefFile

H = bytes.fromhex
REPO = Path(__file__).resolve().parents[3]
UID = H("04112233445566")
ATR = H("3B8180018080")
KEYS = {
    "aes": "F0E1D2C3B4A5968778695A4B3C2D1E0F",
    "3k3des": "00112233445566778899AABBCCDDEEFF0123456789ABCDEF",
    "2k3des": "00112233445566778899AABBCCDDEEFF",
    "des": "0011223344556677",
}
MATRIX = [("aes", "aes"), ("3k3des", "iso"), ("2k3des", "iso"), ("2k3des", "legacy"),
          ("des", "iso"), ("des", "legacy")]
SIZES = (1, 11, 16, 28, 51, 60, 200)  # around the CRC, the blocks and the 40-byte frames


def card_with(key_type: str, content: bytes, frame: int) -> ReferenceCard:
    files = {0: RefFile(PLAIN, 1, content), 1: RefFile(MAC, 1, content),
             2: RefFile(ENCIPHERED, 1, content), 3: RefFile(ENCIPHERED, FREE, content)}
    keys = [Key(key_type, bytes(len(H(KEYS[key_type])))), Key(key_type, H(KEYS[key_type]), 7)]
    rng = random.Random(len(content)).randbytes
    return ReferenceCard(UID, {0xF58540: RefApp(keys, files)}, frame=frame, rng=rng)


@pytest.mark.parametrize(("key_type", "mode"), MATRIX)
def test_every_comm_mode_offset_and_length(key_type: str, mode: str) -> None:
    key = DesfireKey.from_hex(key_type, KEYS[key_type])
    for size in SIZES:
        content = random.Random(size).randbytes(size)
        card = card_with(key_type, content, frame=40)
        reader = DesfireCard(card)
        reader.select_application("F58540")
        assert reader.read_data(3) == content  # free: plain, no session
        reader.authenticate(1, key, mode)
        for offset, length in ((0, 0), (0, size), (size - 1, 0), (size // 2, size - size // 2)):
            want = content[offset : offset + length] if length else content[offset:]
            for file_no, comm in ((0, "plain"), (1, "mac"), (2, "enciphered"), (3, "plain")):
                got = reader.read_data(file_no, offset, length, comm)
                assert got == want, (size, file_no, offset, length)
        if mode != "legacy":  # EV1 secure messaging: GetVersion and GetCardUID in session
            assert reader.get_version().uid == UID
            assert reader.get_card_uid() == UID
        settings = reader.get_file_settings(2)
        assert (settings.comm, settings.access.read, settings.size) == (
            CommMode.ENCIPHERED, 1, size)
        assert reader.get_key_version(1) == 7


def test_a_wrong_key_and_a_forged_cmac_are_refused() -> None:
    card = card_with("aes", b"249760531028417", frame=59)
    reader = DesfireCard(card)
    reader.select_application("F58540")
    with pytest.raises(AuthenticationError, match=r"^AuthenticateAES: SW 91AE"):
        reader.authenticate(1, DesfireKey.from_hex("aes", "00" * 16))
    assert reader.read_data(3) == b"249760531028417"  # no session on either side
    reader.authenticate(1, DesfireKey.from_hex("aes", KEYS["aes"]))
    card.session = Key("aes", bytes(16))  # the card now MACs with another key
    with pytest.raises(ResponseMacError, match=r"^ReadData: response MAC"):
        reader.read_data(1, comm="mac")
    assert reader.session is None


def an10922(master: bytes, uid: bytes, aid_lsb_first: bytes, system: bytes) -> bytes:
    """AN10922 for an 18-byte message: a plain AES-CMAC of 01 || input."""
    return CMAC.new(master, b"\x01" + uid + aid_lsb_first + system, ciphermod=AES).digest()


def profile(name: str) -> ProfileReader:
    if name == "demo":
        return ProfileReader(*load_card_profile(REPO / "config", "demo"))
    return ProfileReader(*load_card_profile(None, str(REPO / "demo" / "profiles" /
                                                    f"{name}.yaml")))


def demo_cards() -> dict[str, tuple[ReferenceCard, dict[str, object]]]:
    escn = H("9B1A2C3D4E5F40718293A4B5C6D7E8F9")
    real = H("04782E21801D80")
    diversified = an10922(H("00112233445566778899AABBCCDDEEFF"), real, H("3042F5"),
                          H("4E585020416275"))
    aes0 = Key("aes", bytes(16))
    return {
        "demo": (ReferenceCard(UID, {
            0xF58540: RefApp([aes0, Key("aes", H("00112233445566778899AABBCCDDEEFF"))],
                             {0: RefFile(ENCIPHERED, 1, b"249760531028417")}),
            0xF58840: RefApp([aes0], {0: RefFile(PLAIN, FREE, escn)}),
        }, frame=32), {"csn": "04112233445566", "crous_number": "249760531028417",
                       "escn": "9b1a2c3d-4e5f-4071-8293-a4b5c6d7e8f9", "apdus": 7}),
        "douai-random-uid": (ReferenceCard(real, {
            0xF58840: RefApp([aes0, Key("aes", H("F0E1D2C3B4A5968778695A4B3C2D1E0F"))],
                             {0: RefFile(ENCIPHERED, FREE, escn)}),
        }, random_uid=True), {"csn": "04782E21801D80", "random_uid": True, "apdus": 9,
                              "escn": "9b1a2c3d-4e5f-4071-8293-a4b5c6d7e8f9"}),
        "legacy-3des": (ReferenceCard(H("04A1B2C3D4E5F6"), {
            0xF58540: RefApp([Key("2k3des", bytes(16)),
                              Key("2k3des", H("C0C1C2C3C4C5C6C7C8C9CACBCCCDCECF"))],
                             {0: RefFile(ENCIPHERED, 1, H("36000000FFFFFFFF"))}),
        }), {"csn": "04A1B2C3D4E5F6", "crous_number": "36000000"}),
        "diversified": (ReferenceCard(real, {
            0xF54230: RefApp([aes0, Key("aes", diversified)], {1: RefFile(MAC, 1, b"36882379")}),
        }), {"csn": "04782E21801D80", "crous_number": "36882379"}),
    }


@pytest.mark.parametrize("name", ["demo", "douai-random-uid", "legacy-3des", "diversified"])
def test_demo_profiles_read_the_reference_card(credentials: Path, name: str) -> None:
    card, expected = demo_cards()[name]
    read = profile(name).read(card, reader="Reference PCD 00 00", atr=ATR).to_json()
    assert {k: read[k] for k in expected} == expected


def test_card_read_cli_through_pcscd_with_the_reference_card(
        pcsc, insert_card, credentials: Path, host_file: Path) -> None:
    """`badged card read --json` through the real pcscd and vpcd, the reference card in the
    reader: a random-UID card, its real UID by GetCardUID, GetVersion, a free ESCN."""
    card, expected = demo_cards()["douai-random-uid"]
    insert_card(card)
    result = CliRunner().invoke(main, [
        "--host-config", str(host_file), "card", "read", "--profile",
        str(REPO / "demo" / "profiles" / "douai-random-uid.yaml"), "--reader",
        pcsc.readers[0], "--timeout", "5", "--json"],
        env={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert result.exit_code == 0, (result.output, result.exception)
    read = json.loads(result.stdout)
    assert {k: read[k] for k in expected} == expected
    assert read["atr"] == "3B8180018080" and read["reader"] == pcsc.readers[0]
    assert read["desfire"]["hardware"]["generation"] == "EV1"
    assert read["desfire"]["software"]["storage_bytes"] == 4096
