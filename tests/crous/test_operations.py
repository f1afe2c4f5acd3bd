"""What an operator asks of the CROUS side of a host (badged.crous.operations): the checks
the service makes itself, and the API CROUS's refusals as stored."""

from __future__ import annotations

from contextlib import closing
from datetime import date
from pathlib import Path

import pytest

from badged.config.host import Host, load_host
from badged.crous.operations import api_errors, import_registry
from badged.crous.population import PopulationError
from badged.store import crous_api
from badged.store.db import open_store

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def host(host_file: Path) -> Host:
    return load_host(host_file)


def test_a_source_the_school_lacks_is_refused_before_the_store(host: Host) -> None:
    with pytest.raises(PopulationError, match="unknown population source 'alumni'"):
        import_registry(host, host.load_site(), REPO / "demo/registry/etudiants.csv",
                        "alumni", today=date(2026, 10, 5))
    assert not host.state_dir.exists()


def test_api_errors_lists_the_refusals(host: Host) -> None:
    assert api_errors(host) == []
    with closing(open_store(host.state_dir)) as conn, conn:
        crous_api.record_error(conn, "card", "04112233445566", "s1", "add card", 409,
                               "CARD_EXISTS", "already known", True, "f1")
    (error,) = api_errors(host)
    assert (error.subject, error.key, error.code, error.blocking, error.tries) == (
        "card", "04112233445566", "CARD_EXISTS", True, 1)
