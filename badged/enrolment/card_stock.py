"""Blank card stock on a host: a delivery received, and what the cards cost per year
(`badged stock receive`, `badged report costs`).

The COMUE contract is paid per card bought (received into stock), not per card issued.
Each function opens the host's store itself and returns plain data, so that the command
line and the daemon's control socket can both call it.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from datetime import date

from ..config.host import Host
from ..config.tree import Site
from ..store import stock
from ..store.db import open_store
from ..store.stock import CardCosts


@dataclass(frozen=True)
class CostsReport:
    """The stock level now, and the cards and money of each year asked for."""

    stock: int
    years: list[CardCosts]


def receive_cards(host: Host, site: Site, quantity: int, batch_ref: str | None,
                  who: str) -> int:
    """Record a delivery of `quantity` blank cards at the COMUE contract's prices; the
    stock level after it."""
    comue = site.comue
    with closing(open_store(host.state_dir)) as conn, conn:
        conn.execute("BEGIN IMMEDIATE")
        stock.receive(conn, quantity, comue.unit_price_eur, comue.direct_price_eur,
                      batch_ref, who)
        return stock.level(conn)


def costs_report(host: Host, year: int | None, today: date) -> CostsReport:
    """The costs of calendar year `year`; by default of every year from the first with a
    stock move up to this one (`today`'s), or this year alone when there is none."""
    with closing(open_store(host.state_dir)) as conn:
        if year is not None:
            wanted = [year]
        else:
            seen = stock.years(conn)
            wanted = (list(range(seen[0], max(seen[-1], today.year) + 1)) if seen
                      else [today.year])
        return CostsReport(stock.level(conn), [stock.costs(conn, y) for y in wanted])
