"""The blank card stock of a host (badged.enrolment.card_stock): deliveries at the COMUE's
prices, and the years a costs report covers."""

from __future__ import annotations

from contextlib import closing
from datetime import date
from decimal import Decimal

from badged.config.host import Host
from badged.enrolment.card_stock import costs_report, receive_cards
from badged.store.db import open_store


def test_deliveries_at_the_comue_prices_and_the_years_reported(host: Host) -> None:
    site = host.load_site()
    today = date(2028, 3, 1)
    assert costs_report(host, None, today).years[0].year == 2028  # nothing yet: this year
    assert receive_cards(host, site, 50, "UDL-1", "desk") == 50
    assert receive_cards(host, site, 20, None, "desk") == 70
    with closing(open_store(host.state_dir)) as conn, conn:  # two years ago, last year
        conn.execute("UPDATE stock_moves SET at = CASE WHEN batch_ref = 'UDL-1' THEN "
                     "'2026-05-04T10:00:00+00:00' ELSE '2027-01-10T09:00:00+00:00' END")
        prices = conn.execute("SELECT DISTINCT unit_price_eur, direct_price_eur, actor "
                              "FROM stock_moves").fetchall()
    assert [tuple(p) for p in prices] == [(str(site.comue.unit_price_eur),
                                          str(site.comue.direct_price_eur), "desk")]
    report = costs_report(host, None, today)
    assert report.stock == 70
    assert [c.year for c in report.years] == [2026, 2027, 2028]
    assert [c.received for c in report.years] == [50, 20, 0]
    assert report.years[0].spend_eur == 50 * Decimal(site.comue.unit_price_eur)
    (only,) = costs_report(host, 2026, today).years
    assert (only.year, only.received) == (2026, 50)
