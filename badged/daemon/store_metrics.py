"""What the store says, as metrics: the totals it keeps and the gauges read from its tables.

The card and people totals are counters the store keeps (the daemon, `badged stock receive`
and `badged person purge` all write there): exported from the store, a restart loses
nothing. The gauges (cards by state, stock, outbox, deadlines, API CROUS state) are read
from the store at start-up, every 30 s, after a reload and after an enrolment.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import ClassVar

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


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
