"""A virtual MIFARE DESFire EV1 card for the demo and the tests.

`card.py` is the card (APDU in, response out), `state.py` what it remembers between
APDUs, `commands.py` the native commands it answers, `spec.py` what it holds, and
`cardfile.py` (with `values.py`) the YAML card file that says so.
"""

from badged.cards.simulator.card import SimulatedDesfire
from badged.cards.simulator.cardfile import CardFile, CardFileError, load_card_file, parse_card_file
from badged.cards.simulator.spec import DEFAULT_ATR, AppSpec, CardSpec, FileSpec, VersionSpec

__all__ = [
    "DEFAULT_ATR",
    "AppSpec",
    "CardFile",
    "CardFileError",
    "CardSpec",
    "FileSpec",
    "SimulatedDesfire",
    "VersionSpec",
    "load_card_file",
    "parse_card_file",
]
