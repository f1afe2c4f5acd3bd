"""`badged stock receive` and `badged report costs`: blank cards and what they cost."""

from __future__ import annotations

import json
from decimal import Decimal

import click

from .. import clock
from ..lifecycle import actor
from ..store import stock
from ..store.db import open_store
from . import Context, main, pass_ctx, user_errors


def euros(amount: Decimal | None) -> str | None:
    """Money as text with cents, exact (JSON numbers would be floats)."""
    return None if amount is None else str(amount.quantize(Decimal("0.01")))


@main.group("stock")
def stock_group() -> None:
    """Blank card stock."""


@stock_group.command("receive")
@click.argument("quantity", type=click.IntRange(min=1))
@click.option("--batch", "batch_ref", metavar="REF", help="Delivery or order reference.")
@pass_ctx
@user_errors
def stock_receive(ctx: Context, quantity: int, batch_ref: str | None) -> None:
    """Record a delivery of QUANTITY blank cards (priced at the COMUE contract's price)."""
    comue = ctx.host.load_site().comue
    conn = open_store(ctx.host.state_dir)
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        stock.receive(conn, quantity, comue.unit_price_eur, comue.direct_price_eur, batch_ref,
                      actor())
        level = stock.level(conn)
    click.echo(f"received {quantity} cards at {euros(comue.unit_price_eur)} €: stock is "
               f"{level}")


@main.group()
def report() -> None:
    """Reports."""


@report.command("costs")
@click.option("--year", type=int, default=lambda: clock.today().year, show_default="this year",
              help="Calendar year.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@user_errors
def report_costs(ctx: Context, year: int, as_json: bool) -> None:
    """Cards received and issued in a year, their cost, and the savings against direct."""
    site = ctx.host.load_site()
    conn = open_store(ctx.host.state_dir)
    costs = stock.costs(conn, year)
    data = {"year": year, "comue": site.school.comue,
            "unit_price_eur": euros(site.comue.unit_price_eur),
            "direct_price_eur": euros(site.comue.direct_price_eur),
            "received": costs.received, "issued": costs.issued,
            "spend_eur": euros(costs.spend_eur), "direct_eur": euros(costs.direct_eur),
            "savings_eur": euros(costs.savings_eur), "stock": stock.level(conn)}
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"{year}: {costs.issued} cards issued, {costs.received} received, "
               f"stock {data['stock']}")
    click.echo(f"spend {costs.spend_eur:.2f} € at the {site.comue.name} price "
               f"({euros(site.comue.unit_price_eur)} € a card)")
    if costs.direct_eur is not None:
        click.echo(f"direct price would have been {costs.direct_eur:.2f} €: "
                   f"saved {costs.savings_eur:.2f} €")
