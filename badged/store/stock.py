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
          direct_price: Decimal | None, actor: str) -> None:
    conn.execute(
        "INSERT INTO stock_moves (at, delta, reason, csn, unit_price_eur, direct_price_eur, "
        "actor) VALUES (?, -1, 'issued', ?, ?, ?, ?)",
        (utcnow(), csn, str(unit_price), None if direct_price is None else str(direct_price),
         actor),
    )


@dataclass(frozen=True)
class YearCosts:
    """One calendar year: cards received and issued, what the issued cards cost, and what
    they would have cost at the direct price."""

    year: int
    received: int
    issued: int
    spend_eur: Decimal
    direct_eur: Decimal | None

    @property
    def savings_eur(self) -> Decimal | None:
        return None if self.direct_eur is None else self.direct_eur - self.spend_eur


def costs(conn: sqlite3.Connection, year: int) -> YearCosts:
    rows = conn.execute(
        "SELECT reason, delta, unit_price_eur, direct_price_eur FROM stock_moves "
        "WHERE substr(at, 1, 4) = ?", (f"{year:04d}",))
    received = issued = 0
    spend, direct = Decimal(0), Decimal(0)
    direct_known = True
    for reason, delta, unit, direct_price in rows:
        if reason == "received":
            received += delta
            continue
        issued += -delta
        spend += Decimal(unit) * -delta
        if direct_price is None:
            direct_known = False
        else:
            direct += Decimal(direct_price) * -delta
    return YearCosts(year, received, issued, spend, direct if direct_known else None)


def spend_total(conn: sqlite3.Connection) -> Decimal:
    total = Decimal(0)
    for (unit,) in conn.execute("SELECT unit_price_eur FROM stock_moves WHERE reason = 'issued'"):
        total += Decimal(unit)
    return total
