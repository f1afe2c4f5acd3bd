"""The simulator's card file: a pydantic model read by the one YAML loader, and every
problem of a file reported at once as `FILE:LINE:COL: path: message`, at the place the
author has to fix (one fixture per bad case under tests/fixtures/cards/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from badged.cards.simulator import CardFileError, SimulatedDesfire, load_card_file, parse_card_file

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cards"


def test_good_fixtures_load() -> None:
    spec = load_card_file(FIXTURES / "good-crous-card.yaml")
    assert spec.name == "crous-card"
    assert [f"{a.aid:06X}" for a in spec.applications] == ["F58540", "F58840"]
    assert spec.applications[0].key_settings == 0x0B
    assert load_card_file(FIXTURES / "good-random-uid.yaml").random_uid is True


BAD = {
    "bad-access-key": "9:24: applications.0.files.0.access.read: "
    "key 3 does not exist (the application has 2 keys)",
    "bad-access-missing": "9:17: applications.0.files.0.access.read_write: required key is missing",
    "bad-access-value": "9:24: applications.0.files.0.access.read: "
    "must be a key number, free or never",
    "bad-aid-picc": "3:10: applications.0.aid: 000000 is the PICC, not an application",
    "bad-aid-unquoted": "3:10: applications.0.aid: "
    "must be a quoted hex string (unquoted digits are a number)",
    "bad-comm": "8:15: applications.0.files.0.comm: must be one of: plain, mac, enciphered",
    "bad-des-key-halves": "5:12: applications.0.keys.0: "
    "a 16-byte DES key must have K1 == K2 (else use 2k3des)",
    "bad-diversify-input": "6:78: applications.0.keys.0.diversify.input.1: "
    "must be uid, aid, aid_msb or a hex literal, not 'serial'",
    "bad-diversify-not-aes": "6:9: applications.0.keys.0.diversify: "
    "AN10922 diversification is AES-128 only, not 2k3des",
    "bad-diversify-too-long": "8:18: applications.0.keys.0.diversify.input: "
    "input is 32 bytes, at most 31",
    "bad-duplicate-aid": "6:5: applications.1.aid: duplicate AID F58540",
    "bad-duplicate-file": "8:9: applications.0.files.1.id: duplicate file id 1",
    "bad-duplicate-key": "2:1: uid: duplicate key",
    "bad-empty": "1:1: (top level): the card file is empty",
    "bad-file-id": "7:13: applications.0.files.0.id: must be in 0..31, got 32",
    "bad-file-unknown-key": "11:9: applications.0.files.0.offset: "
    "unknown key (allowed: id, comm, access, text, hex, size)",
    "bad-key-not-hex": "5:12: applications.0.keys.0: "
    "not hexadecimal: '00112233445566778899AABBCCDDEEFG'",
    "bad-key-type": "4:15: applications.0.key_type: must be one of: aes, 3k3des, 2k3des, des",
    "bad-missing-uid": "1:1: uid: required key is missing",
    "bad-no-keys": "5:11: applications.0.keys: an application has 1 to 14 keys, got 0",
    "bad-picc-key-length": "2:31: picc.key: must be 24 bytes (48 hex digits), got 16 bytes",
    "bad-random-uid-type": "2:13: random_uid: must be true or false",
    "bad-size-too-small": "11:15: applications.0.files.0.size: "
    "8 is smaller than the 15-byte content",
    "bad-text-and-hex": "11:14: applications.0.files.0.hex: give text or hex, not both",
    "bad-uid-length": "1:6: uid: must be 7 bytes (14 hex digits), got 3 bytes",
    "bad-uid-unquoted": "2:6: uid: must be a quoted hex string (unquoted digits are a number)",
    "bad-unknown-key": "3:1: colour: unknown key (allowed: name, uid, random_uid, picc, "
    "applications, atr, version, free_memory)",
    "bad-yaml-syntax": "4:4: (yaml): expected <block end>, but found '<block mapping start>' "
    "(while parsing a block collection at line 3, column 3)",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_card_file(name: str) -> None:
    path = FIXTURES / f"{name}.yaml"
    with pytest.raises(CardFileError) as info:
        load_card_file(path)
    assert info.value.problems == [f"{path}:{BAD[name]}"]
    assert str(info.value) == f"{path}:{BAD[name]}"


def test_bad_card_file_lists_every_problem_in_file_order() -> None:
    path = FIXTURES / "bad-many-problems.yaml"
    with pytest.raises(CardFileError) as info:
        SimulatedDesfire.from_file(path)
    assert info.value.problems == [
        f"{path}:1:7: name: must be a string",
        f"{path}:2:6: uid: odd number of hex digits: '0411223344556'",
        f"{path}:4:10: applications.0.aid: odd number of hex digits: 'F5854'",
        f"{path}:10:24: applications.0.files.0.access.read: "
        "key 1 does not exist (the application has 1 key)",
        f"{path}:12:5: applications.0.extra: unknown key "
        "(allowed: aid, key_type, key_settings, keys, files)",
    ]


def test_bad_version_reports_both_fields() -> None:
    path = FIXTURES / "bad-version.yaml"
    with pytest.raises(CardFileError) as info:
        load_card_file(path)
    assert info.value.problems == [
        f"{path}:2:21: version.hardware: odd number of hex digits: '0401010100180'",
        f"{path}:2:45: version.batch: must be 5 bytes (10 hex digits), got 4 bytes",
    ]


ALLOWED = "(allowed: name, uid, random_uid, picc, applications, atr, version, free_memory)"
FILE = "applications.0.files"
MANY = {
    # a duplicate key does not hide the other problems of the file
    "bad-duplicate-key-and-more": [
        "2:1: uid: duplicate key",
        f"3:1: colour: unknown key {ALLOWED}",
    ],
    # a key written with no value is a bad value, not an absent key
    "bad-null-values": [
        "2:6: name: must be a string",
        "3:6: picc: must be a mapping",
        "4:14: applications: must be a list",
        "5:10: version: must be a mapping",
        "6:6: atr: must be a quoted hex string (unquoted digits are a number)",
    ],
    # a scalar the YAML loader cannot construct is reported once, by the loader
    "bad-scalar-tag": ["2:14: free_memory: not a valid int: 'abc'"],
    # the rules across a file's fields hold even when another field of it is bad
    "bad-file-siblings": [
        f"7:14: {FILE}.0.id: must be in 0..31, got 32",
        f"7:104: {FILE}.0.hex: give text or hex, not both",
        f"8:23: {FILE}.1.comm: must be one of: plain, mac, enciphered",
        f"8:102: {FILE}.1.size: 2 is smaller than the 3-byte content",
        f"9:9: {FILE}.2: an empty file needs a size",
        f"9:45: {FILE}.2.access.read: key 1 does not exist (the application has 1 key)",
    ],
}


@pytest.mark.parametrize("name", sorted(MANY))
def test_every_problem_of_a_file_at_once(name: str) -> None:
    path = FIXTURES / f"{name}.yaml"
    with pytest.raises(CardFileError) as info:
        load_card_file(path)
    assert info.value.problems == [f"{path}:{problem}" for problem in MANY[name]]


def test_a_value_that_looks_like_a_placeholder_is_quoted_as_written() -> None:
    with pytest.raises(CardFileError) as info:
        parse_card_file('uid: "{at}{message}"\n', filename="card.yaml")
    assert info.value.problems == ["card.yaml:1:6: uid: not hexadecimal: '{at}{message}'"]


def test_every_bad_fixture_is_tested() -> None:
    names = {p.stem for p in FIXTURES.glob("bad-*.yaml")}
    assert names == set(BAD) | set(MANY) | {"bad-many-problems", "bad-version"}


def test_missing_card_file() -> None:
    with pytest.raises(CardFileError, match=r"nope\.yaml:1:1: \(file\): cannot read"):
        load_card_file(FIXTURES / "nope.yaml")
