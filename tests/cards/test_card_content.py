"""A card whose files do not hold what the profile says: the read is refused, naming the
reader and the file's problem, never a CardRead with a cut or odd value (in process: the
demo profile on the simulator engine, one fixture per case)."""

from __future__ import annotations

from pathlib import Path

import pytest

from badged.cards.profile import CardReadError, ProfileReader
from badged.cards.simulator import SimulatedDesfire
from badged.config.tree import load_card_profile

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "cards"
ATR = bytes.fromhex("3B8180018080")


@pytest.mark.parametrize(("card", "message"), [
    ("content-escn-too-long", "bad file content: 20 bytes is not a UUID (16 bytes)"),
    ("content-escn-too-short", "bad file content: 15 bytes is not a UUID (16 bytes)"),
    ("content-crous-number-not-digits",
     "bad file content: '24976053102841A' is not a CROUS card number (decimal digits)"),
])
def test_bad_file_content_is_refused(credentials: Path, card: str, message: str) -> None:
    reader = ProfileReader(*load_card_profile(REPO / "config", "demo"))
    sim = SimulatedDesfire.from_file(FIXTURES / f"{card}.yaml")
    with pytest.raises(CardReadError) as info:
        reader.read(sim.process, reader="Test PCD 00 00", atr=ATR)
    assert str(info.value) == f"reader 'Test PCD 00 00': {message}"
    assert info.value.reason == "decode"


def test_the_same_profile_reads_a_good_card(credentials: Path) -> None:
    reader = ProfileReader(*load_card_profile(REPO / "config", "demo"))
    sim = SimulatedDesfire.from_file(REPO / "demo" / "cards" / "crous-card.yaml")
    read = reader.read(sim.process, reader="Test PCD 00 00", atr=ATR)
    assert read.crous_number == "249760531028417"
    assert read.escn == "9b1a2c3d-4e5f-4071-8293-a4b5c6d7e8f9"
