"""Through the running daemon: a desk enrolment (`badged enrol` waits, a card is tapped on
the enrolment reader), an exchange run into the demo maildir, and the gauges that follow."""

from __future__ import annotations

import json
import mailbox
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner
from daemonkit import BADGED, wait_until

from badged.cards.simulator import SimulatedDesfire
from badged.cli import main
from badged.crous.deadlines import deadline
from badged.store import cards
from badged.store.db import open_store

REPO = Path(__file__).resolve().parents[2]
CARD = REPO / "demo/cards/crous-card.yaml"


def cli(site, *args: str) -> str:
    result = CliRunner().invoke(main, ["--host-config", str(site.host_file), *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_desk_enrolment_through_the_daemon(site, start_daemon, insert_card, pcsc) -> None:
    daemon = start_daemon()
    cli(site, "person", "add", "s1", "--last-name", "Martin", "--first-name", "Alex",
        "--category", "student")
    cli(site, "stock", "receive", "20")
    enrol = subprocess.Popen(
        [str(BADGED), "--host-config", str(site.host_file), "enrol", "--person", "s1",
         "--timeout", "20", "--json"],
        env={**daemon.env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The request is waiting at the desk before the card is tapped.
    wait_until(lambda: daemon.status()["enrolments_waiting"] == 1, what="enrol request")
    insert_card(SimulatedDesfire.from_file(CARD), reader=0)
    out, err = enrol.communicate(timeout=30)
    assert enrol.returncode == 0, err
    assert "not running" not in err  # the daemon did it, not the one-shot fallback
    done = json.loads(out)
    assert (done["csn"], done["person_id"], done["crous_number"], done["crous_number_from"],
            done["stock_left"]) == ("04112233445566", "s1", 249760531028417, "card", 19)
    assert daemon.metric("badged_enrolments_total") == 1
    # Paid per card bought: the 20 received, at the COMUE price (0.30 €).
    daemon.wait_metric("badged_card_spend_euros_total", 6.0)
    assert daemon.metric("badged_cards_received_total") == 20
    assert daemon.metric("badged_cards_issued_total") == 1
    daemon.wait_metric("badged_cards", 1, state="active")
    assert daemon.metric("badged_card_stock") == 19
    conn = open_store(site.state_dir)
    assert cards.get(conn, "04112233445566").person_id == "s1"
    # A second request for someone unknown is refused before any tap.
    refused = subprocess.run(
        [str(BADGED), "--host-config", str(site.host_file), "enrol", "--person", "nobody",
         "--timeout", "2"], env={**daemon.env}, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1
    assert "refused: unknown person 'nobody'" in refused.stderr


def test_exchange_run_through_the_daemon(site, start_daemon) -> None:
    daemon = start_daemon()
    for name in ("students", "staff"):
        cli(site, "population", "import", str(REPO / f"demo/registry/{name}.csv"),
            "--source", name)
    out = cli(site, "exchange", "run", "personnels")
    assert "personnels: batch 1 with" in out and "1 sent, 0 failed, 0 pending" in out
    box = mailbox.Maildir(site.state_dir / "maildir", create=False)
    [message] = list(box)
    assert message["To"] == ("monetique@crous-demo.example.org, "
                             "restauration@crous-demo.example.org")
    assert daemon.metric("badged_exchange_batches_written_total", kind="personnels") == 1
    assert daemon.metric("badged_exchange_batches_sent_total", kind="personnels") == 1
    # The réinscriptions deadline of the demo CROUS (10-30) in this academic year.
    expected = deadline(datetime.now(UTC), "10-30").timestamp()
    assert daemon.metric("badged_exchange_deadline_timestamp_seconds",
                         kind="reinscriptions") == expected
    assert daemon.metric("badged_outbox_pending_batches") == 0
    # The operators' outbox commands go through the daemon (it holds the credentials).
    retried = CliRunner().invoke(main, ["--host-config", str(site.host_file), "exchange",
                                        "retry"])
    assert retried.exit_code == 0 and "not running" not in retried.stderr
    assert "retried 0 batch(es): 0 sent, 0 failed, 0 pending" in retried.stdout
    resent = CliRunner().invoke(main, ["--host-config", str(site.host_file), "exchange",
                                       "resend", "1"])
    assert resent.exit_code == 0 and "not running" not in resent.stderr, resent.output
    assert [m["Message-ID"] for m in box] == [message["Message-ID"]] * 2


def test_desk_enrolment_reader_missing_and_unreadable_card(site, start_daemon, insert_card,
                                                           tmp_path) -> None:
    """No enrolment reader matching: refused at once, naming those present. A card tapped
    but not readable (not this profile's key): its error, not "no card tapped"."""
    daemon = start_daemon()
    cli(site, "person", "add", "s2", "--last-name", "Durand", "--first-name", "Lou",
        "--category", "student")
    enrol = [str(BADGED), "--host-config", str(site.host_file), "enrol", "--person", "s2"]
    missing = subprocess.run([*enrol, "--reader", "ACS*", "--timeout", "20"],
                             env={**daemon.env}, capture_output=True, text=True, timeout=10)
    assert missing.returncode == 1
    assert ("refused: no enrolment reader matches 'ACS*' (enrolment readers present: "
            "'Virtual PCD 00 00')") in missing.stderr

    stranger = tmp_path / "stranger.yaml"
    stranger.write_text(CARD.read_text().replace("00112233445566778899AABBCCDDEEFF",
                                                 "FFEEDDCCBBAA99887766554433221100"))
    waiting = subprocess.Popen([*enrol, "--timeout", "20"], env={**daemon.env},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: daemon.status()["enrolments_waiting"] == 1, what="enrol request")
    insert_card(SimulatedDesfire.from_file(stranger), reader=0)
    _, err = waiting.communicate(timeout=30)
    assert waiting.returncode == 1
    assert "a card was tapped but could not be read: reader 'Virtual PCD 00 00': " in err
    assert "no card tapped" not in err
