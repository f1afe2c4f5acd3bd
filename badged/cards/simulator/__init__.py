"""A virtual MIFARE DESFire EV1 card for the demo and the tests (see `card.py`)."""

from badged.cards.simulator.card import (
    DEFAULT_ATR,
    AppSpec,
    CardFileError,
    CardSpec,
    FileSpec,
    SimulatedDesfire,
    VersionSpec,
    load_card_file,
    parse_card_file,
)

__all__ = [
    "DEFAULT_ATR",
    "AppSpec",
    "CardFileError",
    "CardSpec",
    "FileSpec",
    "SimulatedDesfire",
    "VersionSpec",
    "load_card_file",
    "parse_card_file",
]
