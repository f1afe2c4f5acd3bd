"""Blank card stock: deliveries received and cards issued, with the price of each."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from decimal import Decimal

from .db import utcnow


def level(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(sum(delta), 0) FROM stock_moves").fetchone()[0])


def receive(conn: sqlite3.Connection, quantity: int, unit_price: Decimal,
            direct_price: Decimal | None, batch_ref: str | None, actor: str) -> None:
    conn.execute(
        "INSERT INTO stock_moves (at, delta, reason, batch_ref, unit_price_eur, "
        "direct_price_eur, actor) VALUES (?, ?, 'received', ?, ?, ?, ?)",
        (utcnow(), quantity, batch_ref, str(unit_price),
         None if direct_price is None else str(direct_price), actor),
    )


def issue(conn: sqlite3.Connection, csn: str, unit_price: Decimal,
          direct_price: Decimal | None, actor: str, replacement: bool = False) -> None:
    """One card out of stock; `replacement`: its holder already had a card."""
    conn.execute(
        "INSERT INTO stock_moves (at, delta, reason, csn, unit_price_eur, direct_price_eur, "
        "actor, replacement) VALUES (?, -1, 'issued', ?, ?, ?, ?, ?)",
        (utcnow(), csn, str(unit_price), None if direct_price is None else str(direct_price),
         actor, int(replacement)),
    )


# Card states that mean the card is gone from its holder (the COMUE's "lost").
LOST_STATES = ("lost", "stolen")


@dataclass(frozen=True)
class CardCosts:
    """Cards bought, issued, lost and replaced over a period, and what was paid.

    The COMUE contract is paid per card bought (received into stock), not per card issued:
    the spend is the cards received at the price of each delivery, the saving what they
    would have cost more at the direct price (None if a delivery had no direct price).
    """

    received: int
    issued: int
    lost: int
    replaced: int
    spend_eur: Decimal
    direct_eur: Decimal | None
    year: int | None = None  # None: the whole history
    known_savings_eur: Decimal = Decimal(0)  # over the deliveries that had a direct price

    @property
    def savings_eur(self) -> Decimal | None:
        return None if self.direct_eur is None else self.direct_eur - self.spend_eur


def _costs(conn: sqlite3.Connection, year: int | None) -> CardCosts:
    when = "1" if year is None else "substr(at, 1, 4) = ?"
    params: tuple[str, ...] = () if year is None else (f"{year:04d}",)
    received = issued = replaced = 0
    spend, direct, known = Decimal(0), Decimal(0), Decimal(0)
    direct_known = True
    rows = conn.execute("SELECT reason, delta, unit_price_eur, direct_price_eur, replacement "
                        f"FROM stock_moves WHERE {when}", params)
    for reason, delta, unit, direct_price, replacement in rows:
        if reason != "received":
            issued += -delta
            replaced += replacement
            continue
        received += delta
        spend += Decimal(unit) * delta
        if direct_price is None:
            direct_known = False
        else:
            direct += Decimal(direct_price) * delta
            known += (Decimal(direct_price) - Decimal(unit)) * delta
    states = ", ".join("?" * len(LOST_STATES))
    lost = conn.execute(  # a card becoming lost or stolen (not stolen after lost)
        f"SELECT count(*) FROM card_state_changes WHERE {when} AND new_state IN ({states}) "
        f"AND coalesce(old_state, '') NOT IN ({states})",
        (*params, *LOST_STATES, *LOST_STATES)).fetchone()[0]
    return CardCosts(received, issued, int(lost), replaced, spend,
                     direct if direct_known else None, year, known)


def costs(conn: sqlite3.Connection, year: int) -> CardCosts:
    """The cards and money of calendar year `year` (UTC dates of the moves)."""
    return _costs(conn, year)


def totals(conn: sqlite3.Connection) -> CardCosts:
    """The store's whole history (the metrics' counters)."""
    return _costs(conn, None)


def years(conn: sqlite3.Connection) -> list[int]:
    """Calendar years with a stock move, oldest first."""
    return [int(y) for (y,) in conn.execute(
        "SELECT DISTINCT substr(at, 1, 4) FROM stock_moves ORDER BY 1")]
