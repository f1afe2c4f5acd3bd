"""Each sample card read with its profile through the real private pcscd + vpcd + simulator.

Through `read_one` and through `badged card read --json` (click's CliRunner) on the same
insertion. Expected values are computed here from the card files themselves (read as plain
YAML) and by hand, never by the code under test.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from badged.cards.profile import ProfileReader
from badged.cards.reading import read_one
from badged.cards.simulator import SimulatedDesfire
from badged.cli import main
from badged.config.tree import load_card_profile

REPO = Path(__file__).resolve().parents[2]
CARDS = REPO / "demo" / "cards"
PROFILES = REPO / "demo" / "profiles"

# docs/contracts.md: the CardRead JSON contract, no more, no less.
CARD_READ_KEYS = {
    "reader", "atr", "csn", "csn_reversed", "csn_decimal", "csn_reversed_decimal",
    "random_uid", "desfire", "crous_number", "escn", "files", "person", "apdus",
    "duration_ms",
}  # fmt: skip
FILE_KEYS = {"aid", "id", "meaning", "value"}
DESFIRE_ATR = "3B8180018080"


# --- fixtures ------------------------------------------------------------------------------


def profile_arg(ref: str) -> str:
    """`--profile` argument: the tree's `demo` by id, the others by path."""
    return ref if ref == "demo" else str(PROFILES / f"{ref}.yaml")


def profile_reader(ref: str) -> ProfileReader:
    if ref == "demo":
        return ProfileReader(*load_card_profile(REPO / "config", "demo"))
    return ProfileReader(*load_card_profile(None, profile_arg(ref)))


def cli_read(host_file: Path, credentials: Path, profile: str, reader: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        main,
        ["--host-config", str(host_file), "card", "read", "--profile", profile_arg(profile),
         "--reader", reader, "--timeout", "5", "--json"],
        env={"CREDENTIALS_DIRECTORY": str(credentials)},
    )  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


# --- independent expectations --------------------------------------------------------------


def card_doc(name: str) -> dict[str, Any]:
    return yaml.safe_load((CARDS / f"{name}.yaml").read_text())


def card_file(name: str, aid: str, file_id: int) -> dict[str, Any]:
    app = next(a for a in card_doc(name)["applications"] if a["aid"] == aid)
    return next(f for f in app["files"] if f["id"] == file_id)


def csn_forms(uid_hex: str) -> dict[str, str]:
    """Hex as read, byte-reversed hex, and both as decimal (by string handling)."""
    pairs = [uid_hex[i : i + 2] for i in range(0, len(uid_hex), 2)]
    reversed_hex = "".join(pairs[::-1])
    return {
        "csn": uid_hex.upper(),
        "csn_reversed": reversed_hex.upper(),
        "csn_decimal": str(int(uid_hex, 16)),
        "csn_reversed_decimal": str(int(reversed_hex, 16)),
    }


def test_csn_forms_helper_by_hand() -> None:
    """The crous card's UID, worked out by hand: the helper above is right."""
    assert csn_forms("04112233445566") == {
        "csn": "04112233445566",
        "csn_reversed": "66554433221104",
        # 0x04112233445566 = 4·2^48 + 0x112233445566
        "csn_decimal": str(4 * 2**48 + 0x112233445566),
        "csn_reversed_decimal": str(0x66554433221104),
    }
    assert csn_forms("04112233445566")["csn_decimal"] == "1144738493519206"


def escn_of(name: str) -> str:
    return str(uuid.UUID(hex=card_file(name, "F58840", 0)["hex"]))


CASES = {
    # card file: (profile, APDUs, expected fields)
    "crous-card": (
        "demo",
        7,  # FF CA; select, AES auth (2), enciphered read; select, plain read
        lambda: {
            **csn_forms(card_doc("crous-card")["uid"]),
            "crous_number": card_file("crous-card", "F58540", 0)["text"],
            "escn": escn_of("crous-card"),
            "random_uid": False,
            "desfire": None,
            "files": [
                {
                    "aid": "F58540",
                    "id": 0,
                    "meaning": "crous_number",
                    "value": card_file("crous-card", "F58540", 0)["text"],
                },
                {"aid": "F58840", "id": 0, "meaning": "escn", "value": escn_of("crous-card")},
            ],
        },
    ),
    "diversified": (
        "diversified",
        5,  # FF CA; select, AES auth with the AN10922 key (2), MACed read
        lambda: {
            **csn_forms("04782E21801D80"),
            "crous_number": card_file("diversified", "F54230", 1)["text"],
            "escn": None,
            "random_uid": False,
        },
    ),
    "legacy-3des": (
        "legacy-3des",
        5,  # FF CA; select, legacy 0A auth (2), enciphered read (CRC16)
        lambda: {
            **csn_forms(card_doc("legacy-3des")["uid"]),
            # BCD with F padding: 36000000FFFFFFFF
            "crous_number": card_file("legacy-3des", "F58540", 0)["hex"].rstrip("F"),
            "escn": None,
            "random_uid": False,
        },
    ),
    "douai-random-uid": (
        "douai-random-uid",
        9,  # FF CA; select, GetVersion (3); free read; AES auth (2), GetCardUID
        lambda: {
            **csn_forms("04782E21801D80"),  # the real UID, not the 08xxxxxx id
            "crous_number": None,
            "escn": escn_of("douai-random-uid"),
            "random_uid": True,
        },
    ),
}


# --- tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_sample_card_read_with_its_profile(
    name: str, pcsc, insert_card, credentials: Path, host_file: Path
) -> None:
    profile, apdus, expected = CASES[name]
    reader = pcsc.readers[0]
    card = insert_card(SimulatedDesfire.from_file(CARDS / f"{name}.yaml"))
    before = card.apdu_count

    result = read_one(profile_reader(profile), reader, timeout=5)

    got = result.to_json()
    assert set(got) == CARD_READ_KEYS
    assert got["reader"] == reader
    assert got["atr"] == DESFIRE_ATR
    for key, value in expected().items():
        assert got[key] == value, key
    assert all(set(f) == FILE_KEYS for f in got["files"])
    assert got["person"] is None
    assert got["apdus"] == apdus == card.apdu_count - before  # what the card really saw
    assert got["apdus"] <= 9 and (name != "crous-card" or got["apdus"] <= 8)
    assert got["duration_ms"] > 0

    # The CLI on the same insertion prints the same CardRead.
    printed = cli_read(host_file, credentials, profile, reader)
    assert set(printed) == CARD_READ_KEYS
    assert printed["apdus"] == apdus
    assert {k: v for k, v in printed.items() if k != "duration_ms"} == {
        k: v for k, v in got.items() if k != "duration_ms"
    }


def test_random_uid_card_real_uid_and_a_new_id_at_each_insertion(
    pcsc, insert_card, credentials: Path
) -> None:
    ids: list[bytes] = []

    def record_id(apdu: bytes, response: bytes) -> bytes:
        if apdu[:2] == b"\xff\xca":
            ids.append(response[:-2])
        return response

    engine = SimulatedDesfire.from_file(CARDS / "douai-random-uid.yaml", response_hook=record_id)
    card = insert_card(engine)
    reader = profile_reader("douai-random-uid")
    first = read_one(reader, pcsc.readers[0], timeout=5)

    card.remove()
    pcsc.wait_card(present=False)
    card.insert()
    pcsc.wait_card(present=True)
    second = read_one(reader, pcsc.readers[0], timeout=5)

    assert len(ids) == 2
    for random_id in ids:
        assert len(random_id) == 4 and random_id[0] == 0x08, random_id.hex()
    assert ids[0] != ids[1]  # a new id at each power-on (3 random bytes)
    for result in (first, second):
        assert result.random_uid is True
        assert result.csn == "04782E21801D80"  # GetCardUID, after authentication
        assert result.csn_reversed == "801D80212E7804"


def test_read_version_fills_desfire_and_costs_three_apdus(
    pcsc, insert_card, credentials: Path, tmp_path: Path
) -> None:
    insert_card(SimulatedDesfire.from_file(CARDS / "douai-random-uid.yaml"))
    result = read_one(profile_reader("douai-random-uid"), pcsc.readers[0], timeout=5)
    # The card stays in the field, still authenticated (GetCardUID key): a profile with no
    # application must still get a plain GetVersion (it selects the PICC level first).
    version_only = tmp_path / "version-only.yaml"
    version_only.write_text("technology: desfire-ev1\nread_version: true\napplications: []\n")
    again = read_one(
        ProfileReader(*load_card_profile(None, str(version_only))), pcsc.readers[0], timeout=5
    )
    assert again.desfire == result.desfire
    assert again.apdus == 5  # FF CA, SelectApplication 000000, GetVersion (3)
    assert again.random_uid and again.csn.startswith("08") and len(again.csn) == 8  # no GetCardUID
    # The simulator's default version: a 4 KB EV1 (storage byte 0x18 → 1 << 12).
    assert result.desfire == {
        "hardware": {"vendor_id": 4, "type": 1, "subtype": 1, "version": "1.0",
                     "generation": "EV1", "storage_bytes": 4096},
        "software": {"vendor_id": 4, "type": 1, "subtype": 1, "version": "1.4",
                     "generation": "EV1", "storage_bytes": 4096},
        "batch": "BA5E1D8040",
        "production": "week 26 of 2019",
    }  # fmt: skip
    assert result.apdus == 9  # 6 without read_version (see the table above)
