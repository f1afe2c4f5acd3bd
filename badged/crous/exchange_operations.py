"""What an operator asks of the mail exchanges of a host: plan them, run one now, deliver
the pending batches now, send a batch again, list the batches (`badged exchange …`).

Each function opens the host's store itself and returns the service's own result, so
that the command line and the daemon's control socket can both call it. The daemon runs
`run`, `retry` and `send_again` on its own connection, one job at a time; the command
line calls these only when no daemon runs (cli `in_daemon_or_here`).
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from ..config.host import Host
from ..config.model import ExchangeKind
from ..config.tree import Site
from ..store.db import open_store
from ..store.outbox import BatchInfo
from . import exchanges
from .mail import list_batches, resends


@dataclass(frozen=True)
class BatchHistory:
    """A batch as `badged exchange list` shows it: its delivery state, files, resends."""

    batch: BatchInfo
    resends: list[dict[str, Any]]  # at, actor, outcome; oldest first

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self.batch), "resends": self.resends}


def plan_exchanges(host: Host, site: Site, kind: ExchangeKind | None,
                   now: datetime) -> list[exchanges.Plan]:
    """What would be sent now for `kind` (default: every exchange of the school), to whom
    and why; nothing is written."""
    kinds = [kind] if kind is not None else [ex.kind for ex in site.school.exchanges]
    with closing(open_store(host.state_dir)) as conn:
        return [exchanges.plan(conn, site, k, now) for k in kinds]


def run_exchange(host: Host, site: Site, kind: ExchangeKind, now: datetime, *,
                 what: str = "badged") -> exchanges.RunResult:
    """Write the `kind` batch now, then deliver the outbox (`exchanges.run`)."""
    with closing(open_store(host.state_dir)) as conn:
        return exchanges.run(conn, host, site, kind, now, what=what)


def retry_batches(host: Host, site: Site, now: datetime,
                  batch: int | None = None) -> dict[str, Any]:
    """Deliver the pending batches (or only `batch`) now, despite their backoff; the
    answer of the daemon's `exchange-retry`. `OutboxError` for a batch not pending."""
    with closing(open_store(host.state_dir)) as conn:
        ids, report = exchanges.retry(conn, host, site, now, batch)
    return exchanges.retry_json(ids, report)


def resend_batch(host: Host, site: Site, batch: int, now: datetime,
                 who: str) -> dict[str, Any]:
    """Send a sent batch again with its Message-ID, recorded as done by `who`; the answer
    of the daemon's `exchange-resend`. `OutboxError` or `DeliveryError` otherwise."""
    with closing(open_store(host.state_dir)) as conn:
        message_id = exchanges.send_again(conn, host, site, batch, now, who)
    return {"batch": batch, "message_id": message_id}


def batch_history(host: Host, limit: int | None = None) -> list[BatchHistory]:
    """The batches, newest first (at most `limit`), each with its recorded resends."""
    with closing(open_store(host.state_dir)) as conn:
        batches = list_batches(conn, limit)
        again = resends(conn)
    return [BatchHistory(b, again.get(b.id, [])) for b in batches]
