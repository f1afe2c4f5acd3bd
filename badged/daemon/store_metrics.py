"""What the store says, as metrics: the totals it keeps and the gauges read from its tables.

The card and people totals are counters the store keeps (the daemon, `badged stock receive`
and `badged person purge` all write there): exported from the store, a restart loses
nothing. The gauges (cards by state, stock, outbox, deadlines, API CROUS state) are read
from the store at start-up, every 30 s, after a reload and after an enrolment.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from .. import clock
from ..crous.deadlines import academic_year_start, deadline
from ..crous.tariffs import default_rate_staff
from ..store import cards, crous_api, stock
from ..store import retention as retention_store

if TYPE_CHECKING:
    from ..config.tree import Site
    from ..store.db import SharedStore
    from .metrics import Metrics


class StoreTotals(Collector):
    """Counters whose value is a total the store keeps: set, never incremented here.

    They only grow (the store's rows they count are never deleted), so they are counters.
    """

    HELP: ClassVar[dict[str, str]] = {
        "badged_cards_received_total": "Blank cards bought (received into stock).",
        "badged_card_spend_euros_total": "Money spent on cards bought, in euros, at the "
                                         "COMUE price of each delivery.",
        "badged_card_savings_euros_total": "What the cards bought would have cost more at "
                                           "the direct price, in euros.",
        "badged_cards_issued_total": "Cards issued to a holder (out of stock).",
        "badged_cards_lost_total": "Cards declared lost or stolen.",
        "badged_cards_replaced_total": "Cards issued to a holder who already had one.",
        "badged_people_purged_total": "People whose records were purged (retention_days).",
    }

    def __init__(self) -> None:
        self._values = dict.fromkeys(self.HELP, 0.0)
        self._lock = threading.Lock()

    def set(self, **values: float) -> None:
        with self._lock:
            for name, value in values.items():
                self._values[name] = float(value)

    def collect(self) -> Iterable[CounterMetricFamily]:
        with self._lock:
            values = dict(self._values)
        for name, text in self.HELP.items():
            yield CounterMetricFamily(name.removesuffix("_total"), text, value=values[name])


def refresh(metrics: Metrics, store: SharedStore, site: Site) -> None:
    """Every gauge (and store total) read from the store, for `site`'s school."""
    school, crous = site.school, site.crous
    with store.use() as conn:
        metrics.set_cards(cards.count_by_state(conn))
        pending = conn.execute(
            "SELECT count(*) FROM batches WHERE state = 'pending'").fetchone()[0]
        sent = dict(conn.execute(
            "SELECT kind, max(sent_at) FROM batches WHERE state = 'sent' GROUP BY kind"))
    metrics.set_outbox_pending(pending)
    refresh_crous(metrics, store, site)
    with store.use() as conn:
        metrics.set_card_stock(stock.level(conn), school.card_stock.low_threshold)
        metrics.set_people_purged(retention_store.purged_total(conn))
        totals = stock.totals(conn)
        metrics.set_card_costs(
            received=totals.received, issued=totals.issued, lost=totals.lost,
            replaced=totals.replaced, spend_eur=totals.spend_eur,
            savings_eur=totals.known_savings_eur)
        metrics.set_tariff_default_people(len(default_rate_staff(conn, site.tariffs)))
    now = clock.now()
    metrics.set_academic_year_start(
        academic_year_start(now, school.academic_year_start).timestamp())
    for ex in school.exchanges:
        kind = ex.kind.value
        last = sent.get(kind)
        metrics.set_exchange_last_sent(
            kind, datetime.fromisoformat(last).timestamp() if last else None)
        if ex.kind in crous.deadlines:
            metrics.set_exchange_deadline(kind, deadline(
                now, crous.deadlines[ex.kind], school.academic_year_start).timestamp())


def refresh_crous(metrics: Metrics, store: SharedStore, site: Site) -> None:
    """The API CROUS gauges, for a school that uses the API (after each sync too)."""
    if not any(ex.transport == "api" for ex in site.school.exchanges):
        return
    with store.use() as conn:
        last_run, last_success = crous_api.last_runs(conn)
        metrics.set_crous_state(in_error=crous_api.error_counts(conn),
                                pending=crous_api.pending_changes(conn),
                                last_run=last_run, last_success=last_success)
