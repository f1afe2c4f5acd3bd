"""Prometheus metrics of the daemon (docs/contracts.md, Metrics): names are a contract.

Everything lives on a private `CollectorRegistry` (never prometheus_client's global one, so
tests and several instances never collide) and `_created` series are disabled. Labels
only ever carry reader names, reasons, task names, exchange kinds, card states, API
op/code and access export names: never a person, a card id or free text.

This module defines every metric and the event that moves it; the counters the store
keeps are in `store_metrics`, the HTTP endpoint in `metrics_http`.

    m = Metrics()
    server = m.serve(listen)      # MetricsBindError if the address is taken
    m.card_read("ACS ACR122U 00 00", 0.084)
    ...
    server.close()
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

import badged

from .metrics_http import MetricsServer
from .store_metrics import StoreTotals

# Card reads take 10-500 ms (a UID read is ~10 ms, an enciphered DESFire file ~100-300 ms);
# the tail catches slow readers and retries.
READ_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0,
                         2.5, 5.0)

# Card states exported even when their count is 0 (an alert on `lost` needs the series).
CARD_STATES = ("active", "lost", "stolen", "broken", "expired")

_REASON = re.compile(r"[a-z][a-z0-9_]{0,39}")


def reason_label(reason: str) -> str:
    """A read-error reason as a bounded label value: `[a-z][a-z0-9_]*` (≤ 40), else `other`.

    Callers pass a fixed vocabulary (`timeout`, `removed`, `auth_failed`, `not_desfire`,
    `no_application`, `io_error`, …), never an exception message or a card id.
    """
    return reason if _REASON.fullmatch(reason) else "other"


class Metrics:
    """Every metric of badged, on its own registry, with one small method per event."""

    def __init__(self, version: str | None = None) -> None:
        prometheus_client.disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry

        self.build_info = Gauge("badged_build_info", "badged build; always 1.",
                                ["version"], registry=r)
        self.build_info.labels(version=version or badged.__version__).set(1)

        # readers and card reads
        self.reader_up_g = Gauge("badged_reader_up",
                                 "1 if the PC/SC reader is present, 0 if absent.",
                                 ["reader"], registry=r)
        self.sam_up_g = Gauge("badged_sam_up",
                              "1 if the SAM expected in the reader answers, 0 if not.",
                              ["reader"], registry=r)
        self.card_reads = Counter("badged_card_reads_total", "Card reads, by reader.",
                                  ["reader"], registry=r)
        self.card_read_errors = Counter("badged_card_read_errors_total",
                                        "Failed card reads, by reader and reason.",
                                        ["reader", "reason"], registry=r)
        self.card_read_duration = Histogram("badged_card_read_duration_seconds",
                                            "Duration of a card read (tap to CardRead).",
                                            buckets=READ_DURATION_BUCKETS, registry=r)
        self.enrolments = Counter("badged_enrolments_total",
                                  "Cards linked to a person.", registry=r)

        # cards and stock
        self.cards_g = Gauge("badged_cards", "Cards in the store, by state.", ["state"],
                             registry=r)
        self.card_stock_g = Gauge("badged_card_stock", "Blank cards in stock.", registry=r)
        self.card_stock_low_threshold_g = Gauge(
            "badged_card_stock_low_threshold",
            "The school's blank card stock threshold (schools/<id>.yaml card_stock).",
            registry=r)
        # Counters kept by the store (the daemon, `badged stock receive` and `badged person
        # purge` all write there): exported from its totals, so a restart loses nothing.
        self.store_totals = StoreTotals()
        r.register(self.store_totals)

        # scheduled tasks
        self.task_last_success = Gauge("badged_task_last_success_timestamp_seconds",
                                       "Unix time of the task's last success, 0 if never.",
                                       ["task"], registry=r)
        self.task_last_run = Gauge("badged_task_last_run_timestamp_seconds",
                                   "Unix time of the task's last run, 0 if never.",
                                   ["task"], registry=r)
        self.task_duration = Gauge("badged_task_duration_seconds",
                                   "Duration of the task's last run.", ["task"], registry=r)
        self.task_failures = Counter("badged_task_failures_total", "Failed task runs.",
                                     ["task"], registry=r)
        self.task_interval = Gauge("badged_task_interval_seconds",
                                   "Scheduled interval of the task, 0 if not scheduled.",
                                   ["task"], registry=r)

        # exchanges with the CROUS
        self.outbox_pending = Gauge("badged_outbox_pending_batches",
                                    "Exchange batches written but not yet sent.", registry=r)
        self.exchange_deadline = Gauge("badged_exchange_deadline_timestamp_seconds",
                                       "Unix time of the next CROUS deadline of this kind.",
                                       ["kind"], registry=r)
        self.exchange_last_sent = Gauge(
            "badged_exchange_last_sent_timestamp_seconds",
            "Unix time the last batch of this kind was delivered, 0 if never.",
            ["kind"], registry=r)
        self.academic_year_start_g = Gauge(
            "badged_academic_year_start_timestamp_seconds",
            "Unix time of the start of the current academic year.", registry=r)
        self.exchange_batches = Counter("badged_exchange_batches_written_total",
                                        "Exchange batches written to the outbox, by kind.",
                                        ["kind"], registry=r)
        self.exchange_sent = Counter("badged_exchange_batches_sent_total",
                                     "Exchange batches delivered, by kind.", ["kind"],
                                     registry=r)
        self.exchange_failures = Counter("badged_exchange_delivery_failures_total",
                                         "Failed delivery attempts of exchange batches.",
                                         ["kind"], registry=r)
        self.exchange_people = Gauge("badged_exchange_people",
                                     "People in the kind's file at its last run (sent or "
                                     "unchanged).", ["kind"], registry=r)
        self.tariff_default_people = Gauge(
            "badged_tariff_default_people",
            "Present staff whose status matches no tariff rule (default rate, e.g. 78 / 99).",
            registry=r)
        self.crous_api_requests = Counter("badged_crous_api_requests_total",
                                          "API CROUS requests, by operation and HTTP status.",
                                          ["op", "code"], registry=r)
        self.crous_sync_duration = Gauge("badged_crous_sync_duration_seconds",
                                         "Duration of the last API CROUS sync.", registry=r)
        self.crous_people_in_error = Gauge(
            "badged_crous_people_in_error",
            "People (or their cards) the API CROUS refused, by whether it blocks them.",
            ["blocking"], registry=r)
        self.crous_pending_changes = Gauge(
            "badged_crous_pending_changes",
            "Holders and cards the API CROUS still has to be told.", registry=r)
        self.crous_sync_last_run = Gauge(
            "badged_crous_sync_last_run_timestamp_seconds",
            "Unix time the last API CROUS sync ended, 0 if never.", registry=r)
        self.crous_sync_last_success = Gauge(
            "badged_crous_sync_last_success_timestamp_seconds",
            "Unix time the last API CROUS sync that was not aborted ended, 0 if never.",
            registry=r)
        for blocking in ("true", "false"):
            self.crous_people_in_error.labels(blocking=blocking)

        # door-system exports
        self.access_cards = Gauge("badged_access_cards_exported",
                                  "Cards in the export's last run (valid and blocked).",
                                  ["export"], registry=r)
        self.access_last_success = Gauge(
            "badged_access_last_success_timestamp_seconds",
            "Unix time of the export's last success (written or unchanged), 0 if never.",
            ["export"], registry=r)
        self.access_last_run = Gauge("badged_access_last_run_timestamp_seconds",
                                     "Unix time of the export's last attempt, 0 if never.",
                                     ["export"], registry=r)
        self.access_interval = Gauge("badged_access_interval_seconds",
                                     "Scheduled interval of the export.", ["export"],
                                     registry=r)
        self.access_written = Counter("badged_access_exports_written_total",
                                      "Exports delivered (files written; an unchanged "
                                      "export writes nothing).", ["export"], registry=r)
        self.access_failures = Counter("badged_access_failures_total",
                                       "Failed export attempts (retried with a backoff).",
                                       ["export"], registry=r)

        # config
        self.config_reload_ok = Gauge("badged_config_last_reload_successful",
                                      "0 if the last config reload was rejected, else 1.",
                                      registry=r)
        self.config_reload_ok.set(1)
        self.set_cards({})

    # --- readers and reads ------------------------------------------------------------

    def reader_up(self, reader: str, up: bool) -> None:
        """A reader appeared (True) or went away (False); its read counter starts at 0."""
        self.reader_up_g.labels(reader=reader).set(1 if up else 0)
        self.card_reads.labels(reader=reader)

    def sam_up(self, reader: str, up: bool) -> None:
        self.sam_up_g.labels(reader=reader).set(1 if up else 0)

    def forget_reader(self, reader: str) -> None:
        """Drop a reader's series (after a reload that no longer expects it)."""
        for metric in (self.reader_up_g, self.sam_up_g, self.card_reads):
            _remove(metric, reader)
        for labels in _label_sets(self.card_read_errors):
            if labels[0] == reader:
                _remove(self.card_read_errors, *labels)

    def card_read(self, reader: str, seconds: float) -> None:
        """A successful read."""
        self.card_reads.labels(reader=reader).inc()
        self.card_read_duration.observe(seconds)

    def card_read_error(self, reader: str, reason: str) -> None:
        """A failed read; `reason` from a fixed vocabulary (see `reason_label`)."""
        self.card_read_errors.labels(reader=reader, reason=reason_label(reason)).inc()

    def enrolment(self) -> None:
        self.enrolments.inc()

    # --- cards and stock --------------------------------------------------------------

    def set_cards(self, counts: Mapping[str, int]) -> None:
        """Cards by state (store.cards.count_by_state); the known states default to 0."""
        for state in (*CARD_STATES, *counts):
            self.cards_g.labels(state=state).set(counts.get(state, 0))

    def set_card_stock(self, count: int, low_threshold: int | None = None) -> None:
        self.card_stock_g.set(count)
        if low_threshold is not None:
            self.card_stock_low_threshold_g.set(low_threshold)

    def set_card_stock_low_threshold(self, threshold: int) -> None:
        self.card_stock_low_threshold_g.set(threshold)

    def set_card_costs(self, *, received: int, issued: int, lost: int, replaced: int,
                       spend_eur: Decimal, savings_eur: Decimal) -> None:
        """The store's card totals (store.stock.totals): cards bought and what they cost."""
        self.store_totals.set(
            badged_cards_received_total=received, badged_cards_issued_total=issued,
            badged_cards_lost_total=lost, badged_cards_replaced_total=replaced,
            badged_card_spend_euros_total=float(spend_eur),
            badged_card_savings_euros_total=float(savings_eur))

    def set_people_purged(self, total: int) -> None:
        """People whose records were purged, from the store (store.retention)."""
        self.store_totals.set(badged_people_purged_total=total)

    # --- tasks ------------------------------------------------------------------------

    def register_task(self, task: str, interval_seconds: float,
                      last_run: float | None = None,
                      last_success: float | None = None) -> None:
        """Create a task's series: timestamps from the store (0 if never), failures 0."""
        self.task_interval.labels(task=task).set(interval_seconds)
        self.task_last_run.labels(task=task).set(last_run or 0)
        self.task_last_success.labels(task=task).set(last_success or 0)
        self.task_duration.labels(task=task)
        self.task_failures.labels(task=task)

    def set_task_interval(self, task: str, seconds: float) -> None:
        """Scheduled interval; 0 for a task only run on demand."""
        self.task_interval.labels(task=task).set(seconds)

    def task_run(self, task: str, started: float, duration: float, ok: bool) -> None:
        """One run of a task, started at Unix time `started`."""
        self.task_last_run.labels(task=task).set(started)
        self.task_duration.labels(task=task).set(duration)
        if ok:
            self.task_last_success.labels(task=task).set(started)
        else:
            self.task_failures.labels(task=task).inc()

    def forget_task(self, task: str) -> None:
        for metric in (self.task_interval, self.task_last_run, self.task_last_success,
                       self.task_duration, self.task_failures):
            _remove(metric, task)

    # --- exchanges and API CROUS ------------------------------------------------------

    def set_tariff_default_people(self, count: int) -> None:
        self.tariff_default_people.set(count)

    def set_outbox_pending(self, batches: int) -> None:
        self.outbox_pending.set(batches)

    def set_exchange_deadline(self, kind: str, timestamp: float) -> None:
        self.exchange_deadline.labels(kind=kind).set(timestamp)

    def register_exchange(self, kind: str) -> None:
        """Create a configured kind's series at 0, so rates and alerts see them at once."""
        self.exchange_batches.labels(kind=kind)
        self.exchange_sent.labels(kind=kind)
        self.exchange_failures.labels(kind=kind)

    def set_exchange_last_sent(self, kind: str, timestamp: float | None) -> None:
        """Last delivery of a kind; call for every configured kind (None/0 = never)."""
        self.exchange_last_sent.labels(kind=kind).set(timestamp or 0)

    def forget_exchange(self, kind: str) -> None:
        for metric in (self.exchange_deadline, self.exchange_last_sent, self.exchange_people,
                       self.exchange_batches, self.exchange_sent, self.exchange_failures):
            _remove(metric, kind)

    def set_academic_year_start(self, timestamp: float) -> None:
        self.academic_year_start_g.set(timestamp)

    def exchange_run(self, kind: str, people: int, batch_written: bool) -> None:
        """One run of an exchange: how many people its file covers, and whether it wrote."""
        self.exchange_people.labels(kind=kind).set(people)
        if batch_written:
            self.exchange_batches.labels(kind=kind).inc()

    def exchange_delivery(self, kind: str, sent: bool) -> None:
        """One delivery attempt of a batch."""
        (self.exchange_sent if sent else self.exchange_failures).labels(kind=kind).inc()

    def crous_api_request(self, op: str, code: int | str) -> None:
        """One API CROUS request: `code` is the HTTP status, or "timeout"/"network"."""
        self.crous_api_requests.labels(op=op, code=str(code)).inc()

    def crous_sync(self, duration: float) -> None:
        self.crous_sync_duration.set(duration)

    def set_crous_state(self, *, in_error: Mapping[bool, int], pending: int,
                        last_run: float | None, last_success: float | None) -> None:
        """The API CROUS gauges, from the store (store.crous_api)."""
        for blocking, n in in_error.items():
            self.crous_people_in_error.labels(blocking=str(blocking).lower()).set(n)
        self.crous_pending_changes.set(pending)
        self.crous_sync_last_run.set(last_run or 0)
        self.crous_sync_last_success.set(last_success or 0)

    # --- door-system exports ----------------------------------------------------------

    def register_access(self, export: str, interval_seconds: float, *,
                        last_success: float | None = None, last_run: float | None = None,
                        cards: int | None = None) -> None:
        """Create an export's series (times and count from the store; 0 if never)."""
        self.access_interval.labels(export=export).set(interval_seconds)
        self.access_last_success.labels(export=export).set(last_success or 0)
        self.access_last_run.labels(export=export).set(last_run or 0)
        self.access_cards.labels(export=export).set(cards or 0)
        self.access_written.labels(export=export)
        self.access_failures.labels(export=export)

    def access_run(self, export: str, at: float, *, ok: bool, cards: int | None = None,
                   written: bool = False) -> None:
        """One attempt of an export at Unix time `at`."""
        self.access_last_run.labels(export=export).set(at)
        if not ok:
            self.access_failures.labels(export=export).inc()
            return
        self.access_last_success.labels(export=export).set(at)
        if cards is not None:
            self.access_cards.labels(export=export).set(cards)
        if written:
            self.access_written.labels(export=export).inc()

    def forget_access(self, export: str) -> None:
        for metric in (self.access_cards, self.access_last_success, self.access_last_run,
                       self.access_interval, self.access_written, self.access_failures):
            _remove(metric, export)

    # --- config -----------------------------------------------------------------------

    def config_reload(self, ok: bool) -> None:
        self.config_reload_ok.set(1 if ok else 0)

    # --- exposition -------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The text exposition, as served on /metrics."""
        return prometheus_client.generate_latest(self.registry)

    def serve(self, listen: str) -> MetricsServer:
        """Bind `listen` and serve /metrics in a thread; MetricsBindError on failure."""
        return MetricsServer(self, listen)


def _remove(metric: Gauge | Counter, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)


def _label_sets(metric: Counter) -> Iterable[tuple[str, ...]]:
    with metric._lock:  # no public API lists a metric's children
        return list(metric._metrics)
