"""What an operator asks of the mail exchanges of a host (badged.crous.exchange_operations),
on the demo school: its exchanges go to a local maildir, so a batch is written, delivered,
listed and sent again with no relay."""

from __future__ import annotations

from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from badged.config.host import Host, load_host
from badged.config.model import ExchangeKind as K
from badged.crous.exchange_operations import (
    batch_history,
    plan_exchanges,
    resend_batch,
    retry_batches,
    run_exchange,
)
from badged.crous.mail import OutboxError
from badged.store import people
from badged.store.db import open_store

NOW = datetime(2026, 10, 5, 8, 0, tzinfo=UTC)


@pytest.fixture
def host(host_file: Path) -> Host:
    return load_host(host_file)


def test_plan_run_list_resend_retry(host: Host) -> None:
    site = host.load_site()
    with closing(open_store(host.state_dir)) as conn:
        people.upsert(conn, people.Person(
            id="t1", last_name="Martin", first_name="Paul", category="staff",
            email="t1@ecole-demo.example.org", source="staff", status_code="ens",
            staff_index=420))
    plans = plan_exchanges(host, site, None, NOW)
    assert [p.kind for p in plans] == [ex.kind for ex in site.school.exchanges]
    (personnels,) = plan_exchanges(host, site, K.PERSONNELS, NOW)
    assert [line.person_id for line in personnels.changes.lines] == ["t1"]

    result = run_exchange(host, site, K.PERSONNELS, NOW, what="test")
    assert result.batch_id is not None
    assert (result.delivery.sent, result.delivery.pending) == (1, 0)
    (listed,) = batch_history(host)
    assert (listed.batch.id, listed.batch.kind, listed.batch.state, listed.resends) == (
        result.batch_id, "personnels", "sent", [])

    again = resend_batch(host, site, result.batch_id, NOW, "desk")
    assert again == {"batch": result.batch_id, "message_id": listed.batch.message_id}
    (listed,) = batch_history(host, limit=5)
    assert [(r["actor"], r["outcome"]) for r in listed.resends] == [("desk", "sent")]
    assert listed.to_json()["resends"] == listed.resends

    assert retry_batches(host, site, NOW) == {"retried": [], "sent": 0, "failed": 0,
                                              "pending": 0, "errors": []}
    with pytest.raises(OutboxError):
        retry_batches(host, site, NOW, result.batch_id)  # sent: nothing to retry
