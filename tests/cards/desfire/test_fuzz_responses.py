"""Fuzzing the DESFire layer with card responses (hypothesis), through a fake transport.

Property: whatever a card (or something posing as one) answers, a read ends with a typed,
clear error (CardReadError naming the reader, DesfireError for the commands) or a correct
result; never another exception and never a hang. Two sources of answers:

- anything at all: random frames, biased towards real status words (AF chaining included);
- the simulator's true answers with one of them corrupted: what secure messaging protects
  (an enciphered CROUS number, the real UID from GetCardUID) is then right or refused.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from badged.cards.desfire.commands import DesfireCard
from badged.cards.desfire.errors import DesfireError
from badged.cards.desfire.info import CommMode
from badged.cards.desfire.keys import DesfireKey, KeyType
from badged.cards.desfire.session import Ev1Messaging, LegacyMessaging
from badged.cards.profile import CardRead, CardReadError, ProfileReader
from badged.cards.simulator import SimulatedDesfire
from badged.config.tree import load_card_profile

REPO = Path(__file__).resolve().parents[3]
CARDS = REPO / "demo" / "cards"
PAIRS = {  # card file → profile (the tree's id, or a file of demo/profiles)
    "crous-card": "demo",
    "douai-random-uid": "douai-random-uid",
    "diversified": "diversified",
    "legacy-3des": "legacy-3des",
}
ATR = bytes.fromhex("3B8180018080")
FUZZ = settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow])


def profile(name: str) -> ProfileReader:
    if name == "demo":
        return ProfileReader(*load_card_profile(REPO / "config", "demo"))
    return ProfileReader(*load_card_profile(None, str(REPO / "demo" / "profiles" /
                                                    f"{name}.yaml")))


@pytest.fixture(scope="module")
def readers(credentials: Path) -> dict[str, ProfileReader]:
    return {card: profile(name) for card, name in PAIRS.items()}


class Script:
    """A transport answering from a list; once it is used up, the last answer forever (a
    card stuck on 91 AF must not hang the reader)."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = answers or [b""]
        self.sent = 0

    def __call__(self, apdu: bytes) -> bytes:
        self.sent += 1
        assert self.sent < 10_000, "the reader does not stop asking"
        return self.answers[min(self.sent - 1, len(self.answers) - 1)]


status_words = st.sampled_from([b"\x91\x00", b"\x91\xaf", b"\x90\x00", b"\x91\xae",
                                b"\x91\xca", b"\x91\x1c", b"\x91\x9d", b"\x91\xa0",
                                b"\x91\x7e", b"\x91\xbe", b"\x6a\x81", b"\x63\x00"])
frames = st.one_of(
    st.binary(max_size=3),
    st.builds(lambda data, sw: data + sw, st.binary(max_size=48), status_words),
    st.builds(lambda n, sw: bytes(n) + sw, st.integers(0, 40), status_words),
)


def read_with(reader: ProfileReader, transmit: Callable[[bytes], bytes]) -> CardRead | None:
    try:
        return reader.read(transmit, reader="Fuzz PCD 00 00", atr=ATR)
    except CardReadError as exc:
        assert str(exc).startswith("reader 'Fuzz PCD 00 00': ") and exc.detail
        return None


@FUZZ
@given(card=st.sampled_from(sorted(PAIRS)), answers=st.lists(frames, max_size=24))
# Found by this test: a 22-byte "UID" went into the AN10922 input (a ValueError).
@example(card="diversified", answers=[bytes(22) + b"\x90\x00", b"\x91\x00"])
def test_any_answers_give_a_read_or_a_clear_error(readers, card: str,
                                                  answers: list[bytes]) -> None:
    read_with(readers[card], Script(answers))


@FUZZ
@given(answers=st.lists(frames, min_size=1, max_size=12),
       command=st.sampled_from(["version", "aids", "settings", "file", "keys", "read",
                                "read_mac", "read_enc", "read_legacy", "card_uid", "auth"]))
def test_each_command_gives_a_result_or_a_desfire_error(answers: list[bytes],
                                                        command: str) -> None:
    card = DesfireCard(Script(answers), rng=lambda n: bytes(range(n)))
    aes = DesfireKey(KeyType.AES, bytes(16))
    if command in ("read_mac", "read_enc", "card_uid"):
        card._session = Ev1Messaging(1, aes)
    elif command == "read_legacy":
        card._session = LegacyMessaging(1, DesfireKey(KeyType.TDES_2K, bytes(16)))
    calls = {
        "version": card.get_version, "aids": card.get_application_ids,
        "settings": lambda: card.get_file_settings(0), "file": card.get_file_ids,
        "keys": card.get_key_settings, "read": lambda: card.read_data(0),
        "read_mac": lambda: card.read_data(0, 0, 0, CommMode.MAC),
        "read_enc": lambda: card.read_data(0, 0, 16, CommMode.ENCIPHERED),
        "read_legacy": lambda: card.read_data(0, 0, 0, CommMode.ENCIPHERED),
        "card_uid": card.get_card_uid, "auth": lambda: card.authenticate(1, aes),
    }
    try:
        calls[command]()
    except DesfireError as exc:
        assert str(exc)


corruptions = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 63), st.integers(0, 7)),
    st.tuples(st.just("cut"), st.integers(0, 40), st.just(0)),
    st.tuples(st.just("grow"), st.integers(1, 16), st.just(0)),
    st.tuples(st.just("status"), st.sampled_from([0x00, 0xAF, 0xAE, 0xCA, 0x1C, 0x9D]),
              st.just(0)),
)


def corrupt(response: bytes, how: tuple[str, int, int]) -> bytes:
    kind, a, b = how
    if kind == "flip":
        i = a % len(response)
        return response[:i] + bytes([response[i] ^ (1 << b)]) + response[i + 1:]
    if kind == "cut":
        return response[:min(a, len(response))]
    if kind == "grow":
        return response[:-2] + bytes(range(a)) + response[-2:]
    return response[:-2] + bytes([0x91, a])


@FUZZ
@given(card=st.sampled_from(sorted(PAIRS)), at=st.integers(0, 12), how=corruptions)
def test_a_corrupted_answer_never_gives_a_wrong_protected_value(readers, card: str, at: int,
                                                                how: tuple) -> None:
    engine = SimulatedDesfire.from_file(CARDS / f"{card}.yaml", rng=lambda n: bytes(n))
    clean = read_with(readers[card], engine.process)
    assert clean is not None
    engine.power_on()
    count = 0

    def hooked(apdu: bytes) -> bytes:
        nonlocal count
        response = engine.process(apdu)
        count += 1
        return corrupt(response, how) if count - 1 == at else response

    got = read_with(readers[card], hooked)
    if got is None:
        return
    protected = readers[card].profile
    if any(f.comm.value == "enciphered" and f.meaning.value == "crous_number"
           for app in protected.applications for f in app.files):
        assert got.crous_number == clean.crous_number
    if protected.csn.source.value == "card_uid":
        assert got.csn == clean.csn
