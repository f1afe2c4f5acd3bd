"""Random-UID cards: the real UID is read first, whatever the order of the applications,
so a key diversified from the UID is never derived from the random id; or it is read with
the PICC master key alone. Through the private pcscd + vpcd + simulator (the order of the
exchanges, in process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from badged.cards.profile import CardReadError, ProfileReader
from badged.cards.reading import read_one
from badged.cards.simulator import SimulatedDesfire
from badged.config.errors import ConfigError
from badged.config.tree import load_card_profile

REAL_UID = "04782E21801D80"
MASTER = "00112233445566778899AABBCCDDEEFF"
UID_KEY = "F0E1D2C3B4A5968778695A4B3C2D1E0F"
PICC_KEY = "8899AABBCCDDEEFF0011223344556677"

CARD = f"""
name: random-diversified
uid: "{REAL_UID}"
random_uid: true
picc: {{key_type: aes, key: "{PICC_KEY}"}}
applications:
  - aid: "F54230"
    key_type: aes
    keys:
      - "000102030405060708090A0B0C0D0E0F"
      - diversify: {{master: "{MASTER}", input: [uid, aid, "4E585020416275"]}}
    files:
      - id: 1
        comm: enciphered
        access: {{read: 1, write: 0, read_write: 0, change: 0}}
        text: "36882379"
  - aid: "F58840"
    key_type: aes
    keys:
      - "000102030405060708090A0B0C0D0E0F"
      - "{UID_KEY}"
    files:
      - id: 0
        comm: plain
        access: {{read: free, write: 0, read_write: 0, change: 0}}
        hex: "5A6B7C8D9EAF40B1C2D3E4F506172839"
"""

DIVERSIFIED_APP = """
  - aid: "F54230"
    key_type: aes
    keys:
      1: {diversify: {master: {file: master.key}, input: [uid, aid, "4E585020416275"]}}
    files:
      - {id: 1, comm: enciphered, read_key: 1, meaning: crous_number}
"""
UID_APP = """
  - aid: "F58840"
    key_type: aes
    keys:
      1: {file: uid.key}
    files:
      - {id: 0, comm: plain, read_key: free, meaning: escn}
"""


def write_profile(folder: Path, text: str) -> ProfileReader:
    for name, key in (("master.key", MASTER), ("uid.key", UID_KEY), ("picc.key", PICC_KEY)):
        (folder / name).write_text(key + "\n")
        (folder / name).chmod(0o600)
    path = folder / "profile.yaml"
    path.write_text(text)
    return ProfileReader(*load_card_profile(None, str(path)))


@pytest.fixture
def card(tmp_path: Path, pcsc, insert_card) -> str:
    path = tmp_path / "card.yaml"
    path.write_text(CARD)
    insert_card(SimulatedDesfire.from_file(path))
    return pcsc.readers[0]


def test_uid_diversified_application_listed_before_the_uid_one(tmp_path: Path,
                                                                card: str) -> None:
    profile = write_profile(tmp_path, "csn:\n  source: card_uid\n  card_uid_auth: "
                            '{aid: "F58840", key_no: 1}\napplications:'
                            + DIVERSIFIED_APP + UID_APP)
    read = read_one(profile, card, 5)
    assert read.random_uid and read.csn == REAL_UID
    assert read.crous_number == "36882379"
    # Files in the profile's order, whatever order they were read in.
    assert [(f.aid, f.id) for f in read.files] == [("F54230", 1), ("F58840", 0)]


def test_real_uid_with_the_picc_master_key_alone(tmp_path: Path, card: str) -> None:
    profile = write_profile(tmp_path, "csn:\n  source: card_uid\n  card_uid_auth: "
                            '{aid: "000000", key_no: 0}\n'
                            "picc: {key_type: aes, keys: {0: {file: picc.key}}}\n"
                            "read_version: true\napplications:" + DIVERSIFIED_APP)
    read = read_one(profile, card, 5)
    assert read.random_uid and read.csn == REAL_UID
    assert read.crous_number == "36882379"
    assert read.desfire is not None


def test_random_uid_without_a_way_to_the_real_uid_is_said_plainly(tmp_path: Path,
                                                                  card: str) -> None:
    profile = write_profile(tmp_path, "applications:" + DIVERSIFIED_APP)
    with pytest.raises(CardReadError, match=r"random-UID card \(id 08[0-9A-F]{6}\): key 1 of "
                       r"application F54230 is diversified from the real UID") as caught:
        read_one(profile, card, 5)
    assert "authentication" not in str(caught.value).lower()


@pytest.mark.parametrize(("text", "message"), [
    ('csn: {source: card_uid, card_uid_auth: {aid: "000000", key_no: 0}}\napplications:'
     + UID_APP, 'csn.card_uid_auth.aid: aid 000000 is the card itself (PICC): add picc:'),
    ('csn: {source: card_uid, card_uid_auth: {aid: "000000", key_no: 1}}\n'
     "picc: {keys: {0: {file: picc.key}}}\napplications:" + UID_APP,
     "csn.card_uid_auth.key_no: key 1 has no reference in picc.keys"),
    ("picc: {keys: {0: {file: picc.key}}}\napplications:" + UID_APP,
     "picc: picc keys are only used to read the real UID"),
    ('csn: {source: card_uid, card_uid_auth: {aid: "000000", key_no: 0}}\n'
     "picc: {keys: {3: {file: picc.key}}}\napplications:" + UID_APP,
     "picc.keys.3: the PICC has one key: number 0"),
    ("applications:\n  - aid: \"F54230\"\n    keys:\n      1: {diversify: {master: "
     "{file: master.key}, input: [uid, aid, \"" + "AB" * 20 + "\"]}}\n    files:\n"
     "      - {id: 1, comm: enciphered, read_key: 1}\n",
     "AN10922 input of up to 33 bytes: it takes at most 31"),
])
def test_picc_step_validation(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        write_profile(tmp_path, text)
    assert message in str(caught.value)


def test_free_files_are_read_before_the_getcarduid_session(tmp_path: Path) -> None:
    """The free ESCN is read with no session open (so answered plain, with no CMAC, by any
    card whatever its file's communication setting), then the UID key opens GetCardUID."""
    profile = write_profile(tmp_path, "csn:\n  source: card_uid\n  card_uid_auth: "
                            '{aid: "F58840", key_no: 1}\napplications:' + UID_APP)
    seen: list[tuple[int, int]] = []  # (INS, response length)

    def record(apdu: bytes, response: bytes) -> bytes:
        seen.append((apdu[1], len(response)))
        return response

    path = tmp_path / "card.yaml"
    path.write_text(CARD)
    sim = SimulatedDesfire.from_file(path, response_hook=record)
    read = profile.read(sim.process, reader="Test PCD 00 00", atr=sim.atr)
    assert read.csn == REAL_UID and read.escn == "5a6b7c8d-9eaf-40b1-c2d3-e4f506172839"
    assert [ins for ins, _ in seen] == [0xCA, 0x5A, 0xBD, 0xAA, 0xAF, 0x51]
    assert seen[2][1] == 16 + 2  # the ESCN and 91 00: no CMAC
