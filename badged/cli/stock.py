"""`badged stock receive` and `badged report costs`: blank cards and what they cost."""

from __future__ import annotations

import json
from decimal import Decimal

import click

from .. import clock
from ..enrolment.card_stock import costs_report, receive_cards
from ..enrolment.lifecycle import actor
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
    site = ctx.host.load_site()
    level = receive_cards(ctx.host, site, quantity, batch_ref, actor())
    click.echo(f"received {quantity} cards at {euros(site.comue.unit_price_eur)} €: stock is "
               f"{level}")


@main.group()
def report() -> None:
    """Reports."""


@report.command("costs")
@click.option("--year", type=int, help="One calendar year (default: every year with cards "
              "received or issued, up to this one).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@user_errors
def report_costs(ctx: Context, year: int | None, as_json: bool) -> None:
    """Per year: cards bought and their spend, cards issued, lost and replaced, savings.

    The COMUE contract is paid per card bought (received into stock), not per card issued.
    """
    site = ctx.host.load_site()
    report = costs_report(ctx.host, year, clock.today())
    per_year = report.years
    data = {"comue": site.school.comue, "unit_price_eur": euros(site.comue.unit_price_eur),
            "direct_price_eur": euros(site.comue.direct_price_eur), "stock": report.stock,
            "years": [{"year": c.year, "received": c.received, "spend_eur": euros(c.spend_eur),
                       "issued": c.issued, "lost": c.lost, "replaced": c.replaced,
                       "direct_eur": euros(c.direct_eur), "savings_eur": euros(c.savings_eur)}
                      for c in per_year]}
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"{site.comue.name}: {euros(site.comue.unit_price_eur)} € a card bought"
               + (f" (direct {euros(site.comue.direct_price_eur)} €)"
                  if site.comue.direct_price_eur is not None else "")
               + f"; stock now {data['stock']}")
    for c in per_year:
        saved = ("saved " + euros(c.savings_eur) + " € against the direct price"
                 if c.savings_eur is not None else "saving unknown (no direct price)")
        click.echo(f"{c.year}: {c.received} cards bought, spend {euros(c.spend_eur)} €; "
                   f"{c.issued} issued, {c.lost} lost, {c.replaced} replaced; {saved}")
