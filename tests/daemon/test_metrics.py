"""Metrics: the docs/contracts.md contract scraped over real HTTP and checked by a real promtool."""

from __future__ import annotations

import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from decimal import Decimal

import pytest
from prometheus_client.parser import text_string_to_metric_families

import badged
from badged.daemon.metrics import Metrics, reason_label
from badged.daemon.metrics_http import MetricsBindError, MetricsServer, parse_listen

# name → (type, label names): docs/contracts.md + monitoring/README.md. A contract.
CONTRACT = {
    "badged_build_info": ("gauge", {"version"}),
    "badged_reader_up": ("gauge", {"reader"}),
    "badged_sam_up": ("gauge", {"reader"}),
    "badged_card_reads_total": ("counter", {"reader"}),
    "badged_card_read_errors_total": ("counter", {"reader", "reason"}),
    "badged_card_read_duration_seconds": ("histogram", set()),
    "badged_enrolments_total": ("counter", set()),
    "badged_cards": ("gauge", {"state"}),
    "badged_card_stock": ("gauge", set()),
    "badged_card_spend_euros_total": ("counter", set()),
    "badged_card_savings_euros_total": ("counter", set()),
    "badged_cards_received_total": ("counter", set()),
    "badged_cards_issued_total": ("counter", set()),
    "badged_cards_lost_total": ("counter", set()),
    "badged_cards_replaced_total": ("counter", set()),
    "badged_people_purged_total": ("counter", set()),
    "badged_task_last_success_timestamp_seconds": ("gauge", {"task"}),
    "badged_task_last_run_timestamp_seconds": ("gauge", {"task"}),
    "badged_task_duration_seconds": ("gauge", {"task"}),
    "badged_task_failures_total": ("counter", {"task"}),
    "badged_task_interval_seconds": ("gauge", {"task"}),
    "badged_outbox_pending_batches": ("gauge", set()),
    "badged_exchange_batches_written_total": ("counter", {"kind"}),
    "badged_exchange_batches_sent_total": ("counter", {"kind"}),
    "badged_exchange_delivery_failures_total": ("counter", {"kind"}),
    "badged_exchange_people": ("gauge", {"kind"}),
    "badged_tariff_default_people": ("gauge", set()),
    "badged_exchange_deadline_timestamp_seconds": ("gauge", {"kind"}),
    "badged_crous_api_requests_total": ("counter", {"op", "code"}),
    "badged_config_last_reload_successful": ("gauge", set()),
    "badged_exchange_last_sent_timestamp_seconds": ("gauge", {"kind"}),
    "badged_academic_year_start_timestamp_seconds": ("gauge", set()),
    "badged_card_stock_low_threshold": ("gauge", set()),
    "badged_crous_sync_duration_seconds": ("gauge", set()),
    "badged_crous_people_in_error": ("gauge", {"blocking"}),
    "badged_crous_pending_changes": ("gauge", set()),
    "badged_crous_sync_last_run_timestamp_seconds": ("gauge", set()),
    "badged_crous_sync_last_success_timestamp_seconds": ("gauge", set()),
    "badged_access_cards_exported": ("gauge", {"export"}),
    "badged_access_last_success_timestamp_seconds": ("gauge", {"export"}),
    "badged_access_last_run_timestamp_seconds": ("gauge", {"export"}),
    "badged_access_interval_seconds": ("gauge", {"export"}),
    "badged_access_exports_written_total": ("counter", {"export"}),
    "badged_access_failures_total": ("counter", {"export"}),
}


def fill(m: Metrics) -> None:
    """One event of every kind, as the runtime would report them."""
    m.reader_up("ACS ACR122U PICC Interface 00 00", True)
    m.reader_up("Identiv uTrust 3700 F 01 00", False)
    m.sam_up("ACS ACR122U PICC Interface 00 00", True)
    m.card_read("ACS ACR122U PICC Interface 00 00", 0.084)
    m.card_read("ACS ACR122U PICC Interface 00 00", 0.310)
    m.card_read_error("ACS ACR122U PICC Interface 00 00", "auth_failed")
    m.enrolment()
    m.set_cards({"active": 120, "lost": 3})
    m.set_card_stock(42, low_threshold=50)
    m.set_card_costs(received=100, issued=3, lost=1, replaced=1, spend_eur=Decimal("30.00"),
                     savings_eur=Decimal("270.00"))
    m.set_people_purged(2)
    m.register_task("exchange:personnels", 7 * 86400, last_run=1_700_000_000.0)
    m.task_run("exchange:personnels", 1_700_600_000.0, 1.25, ok=True)
    m.register_task("crous-sync", 0)
    m.crous_sync(2.5)
    m.set_crous_state(in_error={True: 2, False: 5}, pending=7, last_run=1_700_600_100.0,
                      last_success=None)
    m.task_run("crous-sync", 1_700_600_100.0, 0.5, ok=False)
    m.set_outbox_pending(1)
    m.set_exchange_deadline("reinscriptions", 1_730_246_400.0)
    m.set_exchange_last_sent("reinscriptions", None)
    m.set_exchange_last_sent("personnels", 1_700_600_000.0)
    m.register_exchange("personnels")
    m.exchange_run("personnels", 12, batch_written=True)
    m.exchange_delivery("personnels", sent=False)
    m.exchange_delivery("personnels", sent=True)
    m.set_academic_year_start(1_725_141_600.0)
    m.crous_api_request("create_user", 201)
    m.crous_api_request("create_user", "error")
    m.register_access("til", 3600, last_success=1_700_000_000.0, cards=12)
    m.access_run("til", 1_700_003_600.0, ok=True, cards=13, written=True)
    m.access_run("til", 1_700_007_200.0, ok=False)
    m.config_reload(False)


@pytest.fixture
def served() -> Iterator[tuple[Metrics, MetricsServer]]:
    m = Metrics()
    fill(m)
    server = m.serve("127.0.0.1:0")
    yield m, server
    server.close()


def scrape(server: MetricsServer) -> str:
    host, port = server.address
    url_host = f"[{host}]" if ":" in host else host
    with urllib.request.urlopen(f"http://{url_host}:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return resp.read().decode()


def test_promtool_finds_nothing_to_say(served: tuple[Metrics, MetricsServer]) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required (Debian package prometheus)"
    text = scrape(served[1])
    proc = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60, check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_names_types_and_labels_are_the_contract(served: tuple[Metrics, MetricsServer]) -> None:
    text = scrape(served[1])
    found = {}
    for family in text_string_to_metric_families(text):
        labels = set()
        for sample in family.samples:
            labels |= set(sample.labels) - {"le"}
        # the parser strips _total from counter family names
        name = family.name + "_total" if family.type == "counter" else family.name
        found[name] = (family.type, labels)
    assert found == CONTRACT
    assert "_created" not in text
    assert "process_" not in text and "python_gc" not in text  # private registry


def test_values(served: tuple[Metrics, MetricsServer]) -> None:
    m = served[0]

    def value(name: str, **labels: str) -> float | None:
        return m.registry.get_sample_value(name, labels)

    assert value("badged_build_info", version=badged.__version__) == 1
    assert value("badged_crous_people_in_error", blocking="true") == 2
    assert value("badged_crous_people_in_error", blocking="false") == 5
    assert value("badged_crous_pending_changes") == 7
    assert value("badged_crous_sync_duration_seconds") == 2.5
    assert value("badged_crous_sync_last_success_timestamp_seconds") == 0
    assert value("badged_reader_up", reader="Identiv uTrust 3700 F 01 00") == 0
    assert value("badged_card_reads_total", reader="Identiv uTrust 3700 F 01 00") == 0
    assert value("badged_card_reads_total", reader="ACS ACR122U PICC Interface 00 00") == 2
    assert value("badged_card_read_duration_seconds_count") == 2
    assert value("badged_card_read_duration_seconds_bucket", le="0.1") == 1
    assert value("badged_cards", state="stolen") == 0
    assert value("badged_cards", state="active") == 120
    assert value("badged_card_stock_low_threshold") == 50
    assert value("badged_card_spend_euros_total") == pytest.approx(30.0)
    assert value("badged_card_savings_euros_total") == pytest.approx(270.0)
    assert value("badged_cards_received_total") == 100
    assert value("badged_cards_issued_total") == 3
    assert value("badged_cards_lost_total") == 1
    assert value("badged_cards_replaced_total") == 1
    assert value("badged_people_purged_total") == 2
    assert value("badged_task_last_success_timestamp_seconds", task="crous-sync") == 0
    assert value("badged_task_last_run_timestamp_seconds", task="crous-sync") == 1_700_600_100
    assert value("badged_task_failures_total", task="crous-sync") == 1
    assert value("badged_task_failures_total", task="exchange:personnels") == 0
    assert value("badged_task_interval_seconds", task="crous-sync") == 0
    assert value("badged_task_duration_seconds", task="exchange:personnels") == 1.25
    assert value("badged_exchange_last_sent_timestamp_seconds", kind="reinscriptions") == 0
    assert value("badged_crous_api_requests_total", op="create_user", code="201") == 1
    assert value("badged_config_last_reload_successful") == 0


def test_fresh_metrics_say_reload_ok_and_show_every_card_state() -> None:
    m = Metrics(version="9.9.9")
    assert m.registry.get_sample_value("badged_config_last_reload_successful") == 1
    assert m.registry.get_sample_value("badged_build_info", {"version": "9.9.9"}) == 1
    for state in ("active", "lost", "stolen", "broken", "expired"):
        assert m.registry.get_sample_value("badged_cards", {"state": state}) == 0


def test_two_instances_do_not_collide() -> None:
    a, b = Metrics(), Metrics()
    a.enrolment()
    assert a.registry.get_sample_value("badged_enrolments_total") == 1
    assert b.registry.get_sample_value("badged_enrolments_total") == 0


def test_forget_series() -> None:
    m = Metrics()
    fill(m)
    m.forget_reader("ACS ACR122U PICC Interface 00 00")
    m.forget_task("crous-sync")
    m.forget_exchange("personnels")
    text = m.exposition().decode()
    assert "ACR122U" not in text and "crous-sync" not in text
    assert 'kind="personnels"' not in text and "Identiv" in text


def test_reason_labels_are_bounded() -> None:
    assert reason_label("auth_failed") == "auth_failed"
    for bad in ("04A1B2C3D4E5F6", "Card removed: SCARD_W_REMOVED_CARD", "", "x" * 80):
        assert reason_label(bad) == "other"


@pytest.mark.parametrize(("listen", "expected"), [
    ("127.0.0.1:8790", ("127.0.0.1", 8790)),
    (":8790", ("", 8790)),
    ("[::1]:8790", ("::1", 8790)),
    ("localhost:0", ("localhost", 0)),
])
def test_parse_listen(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["8790", "host:", "host:99999", "[::1]", "a b:1"])
def test_parse_listen_refuses(listen: str) -> None:
    with pytest.raises(MetricsBindError, match="not HOST:PORT"):
        parse_listen(listen)


def test_taken_port_is_a_clear_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MetricsBindError) as err:
            Metrics().serve(f"127.0.0.1:{port}")
    assert f"127.0.0.1:{port}" in str(err.value)
    assert "in use" in str(err.value).lower()


def test_unknown_host_is_a_clear_error() -> None:
    with pytest.raises(MetricsBindError, match=r"no-such-host\.invalid:8790"):
        Metrics().serve("no-such-host.invalid:8790")


def test_all_interfaces_and_ipv6() -> None:
    m = Metrics()
    with m.serve(":0") as server:
        port = server.address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert b"badged_build_info" in resp.read()
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = m.serve("[::1]:0")
    except MetricsBindError:
        pytest.skip("no IPv6 loopback")
    with server:
        assert server.address[0] == "::1"
        assert "badged_build_info" in scrape(server)


def test_close_is_clean_and_frees_the_port() -> None:
    m = Metrics()
    server = m.serve("127.0.0.1:0")
    port = server.address[1]
    scrape(server)
    server.close()
    server.close()  # idempotent
    assert not server._thread.is_alive()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    m.serve(f"127.0.0.1:{port}").close()  # the port can be bound again at once
