"""Faults: the daemon stays up and its metrics say what happened (docs/design.md).

A card pulled mid-read, pcscd killed and restarted, a job raising, the metrics port taken,
garbage on the control socket, SIGHUP with a broken tree.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from typing import Any

import pytest
from daemonkit import CARD, ENROLMENT, LOOKUP, Site, StartDaemon, samples, wait_until

from badged.cards.simulator import SimulatedDesfire
from badged.cards.vpcd import VpcdCard
from badged.config.host import load_host
from badged.config.schedules import parse_schedule
from badged.daemon.runtime import Daemon
from badged.demo.pcscd_sandbox import PcscdSandbox
from badged.store import jobs as job_store


class PullingCard:
    """The simulated card, pulled by its holder after `n` APDUs of the next read.

    pull_after() is armed when the reader powers the card on (an insertion resets it), so
    the daemon's read, which starts right at insertion, is the one cut.
    """

    def __init__(self, n: int) -> None:
        self.engine = SimulatedDesfire.from_file(CARD)
        self.atr = self.engine.atr
        self.n = n
        self.card: VpcdCard | None = None
        self.armed = False

    def power_on(self) -> None:
        self.engine.power_on()
        if not self.armed and self.card is not None:
            self.armed = True
            self.card.pull_after(self.n)

    def power_off(self) -> None:
        self.engine.power_off()

    def process(self, apdu: bytes) -> bytes:
        return bytes(self.engine.process(apdu))


def test_card_pulled_mid_read_is_counted_and_the_next_tap_reads(
        site: Site, pcsc: PcscdSandbox, insert_card, start_daemon: StartDaemon) -> None:
    daemon = start_daemon()
    daemon.wait_metric("badged_reader_up", 1, reader=LOOKUP)

    pulling = PullingCard(3)  # UID + SelectApplication + first half of the AES auth
    card = VpcdCard(pulling, port=pcsc.port + 1)  # type: ignore[operator]
    pulling.card = card
    try:
        card.insert()
        assert card.wait_removed(10), "the card was not pulled: the daemon did not read it"
        assert card.last_exit == "pulled"
        pcsc.wait_card(present=False, reader=1)

        def errors() -> float:
            text = daemon.scrape()
            return sum(v for n, ls, v in samples(text)
                       if n == "badged_card_read_errors_total" and ls["reader"] == LOOKUP)
        wait_until(lambda: errors() == 1, 10, "one read error on the lookup reader")
    finally:
        card.remove()
    status = daemon.status()
    [tap] = status["last_taps"]
    assert tap["csn"] is None and tap["outcome"].startswith("error: ")
    [(labels, value)] = [(ls, v) for n, ls, v in samples(daemon.scrape())
                         if n == "badged_card_read_errors_total"]
    assert value == 1 and labels["reader"] == LOOKUP and labels["reason"] in {
        "pcsc", "card", "removed"}
    assert daemon.metric("badged_card_reads_total", reader=LOOKUP) == 0

    insert_card(SimulatedDesfire.from_file(CARD), reader=1)  # the next tap reads
    daemon.wait_metric("badged_card_reads_total", 1, reader=LOOKUP)
    assert daemon.status()["last_taps"][-1]["csn"] == "04112233445566"
    assert daemon.alive and daemon.stop() == 0


def test_pcscd_killed_and_restarted(site: Site, pcscd_restart: PcscdSandbox,
                                    insert_card, start_daemon: StartDaemon) -> None:
    pcsc = pcscd_restart
    daemon = start_daemon(watchdog_usec=1_000_000)
    daemon.wait_metric("badged_reader_up", 1, reader=ENROLMENT)

    pcsc.kill()
    daemon.wait_metric("badged_reader_up", 0, reader=ENROLMENT)
    daemon.wait_metric("badged_reader_up", 0, reader=LOOKUP)
    assert daemon.status()["pcscd"] is False
    # Still alive, still pinging the watchdog: the reader thread survives pcscd's death.
    pings = len(daemon.notifications.lines("WATCHDOG=1"))  # type: ignore[union-attr]
    daemon.notifications.wait_for("WATCHDOG=1", count=pings + 2, timeout=5)  # type: ignore[union-attr]

    pcsc.start()
    daemon.wait_metric("badged_reader_up", 1, reader=ENROLMENT, timeout=15)
    daemon.wait_metric("badged_reader_up", 1, reader=LOOKUP)
    assert daemon.status()["pcscd"] is True

    # And it reads again on the new pcscd.
    insert_card(SimulatedDesfire.from_file(CARD), reader=1)
    daemon.wait_metric("badged_card_reads_total", 1, reader=LOOKUP)
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()


def test_a_job_raising_is_counted_and_the_loop_goes_on(site: Site, pcsc: PcscdSandbox,
                                                       monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    """In-process: the real main loop with a job that raises, caught up at start-up."""
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(site.credentials))
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    daemon = Daemon(load_host(site.host_file), reader_tick=0.1)
    ran = threading.Event()

    def boom() -> None:
        raise RuntimeError("the CROUS relay said no")

    an_hour_ago = time.time() - 3600
    with daemon.store.use() as conn:  # both ran an hour ago: a run was missed, due at once
        job_store.record(conn, "boom", an_hour_ago, None)
        job_store.record(conn, "after", an_hour_ago, None)
    # At start-up (and reload) the daemon registers its jobs and drops any other: ours go
    # in there.
    school_jobs = daemon._register_jobs

    def register_jobs() -> None:
        school_jobs()
        daemon.jobs.add("boom", parse_schedule("every 10 minutes"), boom)
        daemon.jobs.add("after", parse_schedule("every 10 minutes"), ran.set)

    monkeypatch.setattr(daemon, "_register_jobs", register_jobs)
    loop = threading.Thread(target=daemon.run, name="daemon-main", daemon=True)
    loop.start()
    try:
        assert ran.wait(10), "the job after the failing one did not run"
        text = daemon.metrics.exposition().decode()
        assert 'badged_task_failures_total{task="boom"} 1.0' in text
        assert 'badged_task_failures_total{task="after"} 0.0' in text
        assert 'badged_task_last_success_timestamp_seconds{task="boom"} 0.0' not in text
        jobs = {j["name"]: j for j in daemon.status()["jobs"]}
        assert jobs["boom"]["last_error"] == "RuntimeError: the CROUS relay said no"
        assert jobs["boom"]["failures"] == 1 and jobs["after"]["last_error"] is None
        assert jobs["boom"]["last_success"] == pytest.approx(an_hour_ago)
        # The loop goes on: a failing job run on demand is counted too, nothing raises.
        assert daemon.jobs.run_now("boom").error == "RuntimeError: the CROUS relay said no"
        assert 'badged_task_failures_total{task="boom"} 2.0' in (
            daemon.metrics.exposition().decode())
        assert loop.is_alive()
        assert daemon.status()["reader_thread_alive"]
    finally:
        daemon.request_stop()
        loop.join(10)
    assert not loop.is_alive()


def test_metrics_port_taken_is_a_one_line_start_error(site: Site, notifications,
                                                      start_daemon: StartDaemon) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", site.metrics_port))
        squatter.listen(1)
        daemon = start_daemon(ready=False)
        assert daemon.proc is not None
        assert daemon.proc.wait(15) == 1
    log = daemon.log()
    assert "Traceback" not in log
    errors = [line for line in log.splitlines() if line.startswith("error:")]
    assert errors == [f"error: cannot bind the metrics address 127.0.0.1:{site.metrics_port}"
                      ": Address already in use"], log
    assert not notifications.lines("READY=1")
    assert not site.control_socket.exists()


def raw_request(path: str, payload: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    answer = json.loads(data.split(b"\n", 1)[0])
    assert isinstance(answer, dict)
    return answer


BAD_REQUESTS = [
    (b"this is not json\n", "the request is not JSON"),
    (b"[1, 2]\n", "must be a JSON object"),
    (b"\xff\xfe\n", "not UTF-8"),
    (b"\n", "empty request"),
    (b'{"op": 42}\n', "no 'op'"),
    (b'{"op": "format-disk"}\n', "unknown op 'format-disk'"),
    (b'{"op": "enrol", "person": 42}\n', "field 'person' must be a string"),
    (b'{"op": "enrol", "person": "E1", "wait_seconds": "soon"}\n',
     "field 'wait_seconds' must be a number"),
    (b'{"op": "enrol"}\n', "missing field 'person'"),
    (b'{"op": "status", "verbose": true}\n', "unknown field 'verbose'"),
]


def test_malformed_control_requests_get_an_error_answer(start_daemon: StartDaemon) -> None:
    daemon = start_daemon()
    for payload, error in BAD_REQUESTS:
        answer = raw_request(str(daemon.site.control_socket), payload)
        assert answer["ok"] is False and error in answer["error"], (payload, answer)
        assert daemon.alive
    assert daemon.status()["ok"] is True
    assert "Traceback" not in daemon.log()
    assert daemon.stop() == 0


def test_sighup_with_a_broken_tree_keeps_the_old_config(site: Site, notifications,
                                                        start_daemon: StartDaemon) -> None:
    daemon = start_daemon()
    good = site.school_file.read_text()
    assert daemon.metric("badged_config_last_reload_successful") == 1

    site.school_file.write_text(good + "colour: purple\n")  # an unknown key: invalid
    mark = time.monotonic()
    daemon.send(signal.SIGHUP)
    notifications.wait_for("RELOADING=1", after=mark)
    notifications.wait_for("READY=1", after=mark)  # back to ready, on the old config
    assert daemon.metric("badged_config_last_reload_successful") == 0
    status = daemon.status()
    assert status["name"] == "École Démo" and status["last_reload"] is None
    assert "reload refused" in daemon.log() and "colour" in daemon.log()
    assert daemon.alive

    site.school_file.write_text(good.replace("name: École Démo", "name: École Démo bis"))
    mark = time.monotonic()
    daemon.send(signal.SIGHUP)
    notifications.wait_for("RELOADING=1", after=mark)
    notifications.wait_for("READY=1", after=mark)
    assert daemon.metric("badged_config_last_reload_successful") == 1
    status = daemon.status()
    assert status["name"] == "École Démo bis" and status["last_reload"] is not None
    assert daemon.stop() == 0


def test_sighup_rebinds_present_readers_to_the_new_rules(site: Site, pcsc: PcscdSandbox,
                                                         notifications, insert_card,
                                                         start_daemon: StartDaemon) -> None:
    """A reload that swaps the readers' roles, adds and drops a rule takes effect at once,
    without unplugging anything: metrics and the next tap follow the new rules."""
    daemon = start_daemon()
    daemon.wait_metric("badged_reader_up", 1, reader=LOOKUP)
    ghost = "Ghost Reader 00 00"
    site.set_readers([("Virtual PCD 00 0[1]", "enrolment"), (ghost, "lookup")])
    mark = time.monotonic()
    daemon.send(signal.SIGHUP)
    notifications.wait_for("READY=1", after=mark)
    assert daemon.metric("badged_config_last_reload_successful") == 1
    daemon.wait_metric("badged_reader_up", 0, reader=ghost)
    daemon.wait_metric("badged_reader_up", 1, reader="Virtual PCD 00 0[1]")
    wait_until(lambda: daemon.metric("badged_reader_up", reader=LOOKUP) is None, 5,
               "the dropped rules' series are gone")
    assert daemon.metric("badged_reader_up", reader=ENROLMENT) is None
    assert daemon.status()["readers"] == {"Virtual PCD 00 0[1]": True, ghost: False}

    insert_card(SimulatedDesfire.from_file(CARD), reader=1)
    daemon.wait_metric("badged_card_reads_total", 1, reader="Virtual PCD 00 0[1]")
    tap = daemon.status()["last_taps"][-1]
    assert (tap["reader"], tap["role"]) == ("Virtual PCD 00 0[1]", "enrolment")
    promtool_ok = daemon.scrape()
    assert 'reader="Virtual PCD 00 01"' not in promtool_ok
    assert daemon.stop() == 0
