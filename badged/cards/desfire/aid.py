"""Application ids: written MSB first by people (``F58540``), sent LSB first (``40 85 F5``)."""

from __future__ import annotations

from functools import lru_cache

__all__ = ["PICC_AID", "aid_from_wire", "aid_to_wire", "format_aid", "parse_aid"]

PICC_AID = 0x000000


# Cached: a reader selects the same few applications on every card (typed: True is no 1).
@lru_cache(maxsize=256, typed=True)
def parse_aid(value: str | int) -> int:
    """An AID as people write it: 6 hex digits MSB first (``"F58540"``), or an int."""
    if isinstance(value, bool):
        raise TypeError("AID must be a hex string or an int")
    if isinstance(value, int):
        aid = value
    else:
        text = value.strip()
        if len(text) != 6:
            raise ValueError(f"AID {value!r} must be 6 hex digits (3 bytes, MSB first)")
        try:
            aid = int(text, 16)
        except ValueError:
            raise ValueError(f"AID {value!r} is not hexadecimal") from None
    if not 0 <= aid <= 0xFFFFFF:
        raise ValueError(f"AID {aid:#x} does not fit in 3 bytes")
    return aid


@lru_cache(maxsize=256, typed=True)
def aid_to_wire(aid: str | int) -> bytes:
    """The 3 bytes sent to the card: LSB first."""
    return parse_aid(aid).to_bytes(3, "little")


def aid_from_wire(data: bytes) -> int:
    if len(data) != 3:
        raise ValueError(f"AID must be 3 bytes on the wire, got {len(data)}")
    return int.from_bytes(data, "little")


def format_aid(aid: int) -> str:
    """``0xF58540`` → ``"F58540"`` (upper case, MSB first)."""
    return f"{aid:06X}"
