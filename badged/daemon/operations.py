"""What the control socket asks of the daemon: status, enrol, exchange run/retry/resend,
crous sync, access export.

`Operations(daemon).register(server)` puts each op on the control socket with the fields
it takes; a refusal is an `OpError` (a clean error answer, exit code 1 on the CLI side).
The status answer and the one-line summary sent to systemd (STATUS=) are built here too.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from .. import __version__, clock
from ..cards.pcsc import match_readers
from ..cards.profile import CardReadError
from ..config.model import ExchangeKind, ReaderRole
from ..enrolment.desk import EnrolmentError, Policy, enrol
from ..store import people
from . import health
from .control import ControlServer, OpError
from .school_jobs import CROUS_SYNC

if TYPE_CHECKING:
    from .runtime import Daemon

log = logging.getLogger(__name__)

MAX_ENROL_WAIT = 3600.0  # seconds an enrolment request may wait for its tap


class Operations:
    """The control socket's ops on `daemon`'s state (its site, jobs, readers and store)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def register(self, server: ControlServer) -> None:
        server.register("status", lambda _req: self.status(), light=True)
        server.register("exchange-run", self.exchange_run, required={"kind": str})
        server.register("crous-sync", self.crous_sync, optional={"dry_run": bool})
        server.register("access-export", self.access_export,
                        optional={"name": str, "full": bool})
        server.register("exchange-retry", self.exchange_retry, optional={"batch": int})
        server.register("exchange-resend", self.exchange_resend,
                        required={"batch": int}, optional={"actor": str})
        server.register("enrol", self.enrol, required={"person": str}, optional={
            "reader": str, "wait_seconds": float, "actor": str}, cancellable=True)

    # --- exchanges and exports ---------------------------------------------------------

    def exchange_run(self, request: dict[str, Any]) -> dict[str, Any]:
        d = self.daemon
        try:
            kind = ExchangeKind(request["kind"])
        except ValueError:
            raise OpError(f"unknown exchange kind {request['kind']!r}") from None
        name = f"exchange-{kind.value}"
        if name not in d.jobs.names:
            raise OpError(f"school {d.site.id} has no mail exchange {kind.value}")
        if any(ex.kind is kind and ex.transport == "api" for ex in d.site.school.exchanges):
            raise OpError(f"{kind.value} goes by the API CROUS: run `badged crous sync`")
        result = d.jobs.run_now(name)
        if not result.ok:
            raise OpError(f"{name} failed: {result.error}")
        return {"result": result.value}

    def crous_sync(self, request: dict[str, Any]) -> dict[str, Any]:
        """`badged crous sync [--dry-run]` through the daemon: runs never overlap."""
        d = self.daemon
        if CROUS_SYNC not in d.jobs.names:
            raise OpError(f"school {d.site.id} has no exchange with transport api")
        if request.get("dry_run"):
            from ..crous.sync import sync

            with d.store.use() as conn:
                return {"result": sync(conn, d.site, clock.now(), dry_run=True).to_json()}
        result = d.jobs.run_now(CROUS_SYNC)
        if not result.ok:
            raise OpError(f"{CROUS_SYNC} failed: {result.error}")
        return {"result": result.value}

    def access_export(self, request: dict[str, Any]) -> dict[str, Any]:
        """`badged access export [NAME]`: run the export(s) now, answer their results."""
        d = self.daemon
        exports = d.site.school.access_exports
        names = [request["name"]] if request.get("name") else list(exports)
        results = []
        for name in names:
            job = f"access-{name}"
            if job not in d.jobs.names:
                raise OpError(f"school {d.site.id} has no access export {name!r} (known: "
                              f"{', '.join(exports) or 'none'})")
            outcome, result = d.school_jobs.export_now(name, full=bool(request.get("full")))
            if result is None:  # it failed before delivering (e.g. a name not encodable)
                raise OpError(outcome.error or f"{job} failed")
            results.append(result.to_json())
        return {"results": results}

    def exchange_retry(self, request: dict[str, Any]) -> dict[str, Any]:
        """Deliver the pending batches (or one) now, ignoring their backoff."""
        from ..crous import exchanges
        from ..crous.mail import OutboxError

        d = self.daemon
        with d.jobs.exclusive():
            try:
                ids, report = exchanges.retry(d.job_conn, d.host, d.site, clock.now(),
                                              request.get("batch"))
            except OutboxError as exc:
                raise OpError(str(exc)) from None
        d.school_jobs.delivered(report)
        return {"result": exchanges.retry_json(ids, report)}

    def exchange_resend(self, request: dict[str, Any]) -> dict[str, Any]:
        """A sent batch again, same Message-ID, recorded (the daemon holds the credentials)."""
        from ..crous import exchanges
        from ..crous.mail import DeliveryError, OutboxError

        d = self.daemon
        with d.jobs.exclusive():
            try:
                message_id = exchanges.send_again(
                    d.job_conn, d.host, d.site, request["batch"], clock.now(),
                    request.get("actor") or "badged")
            except (OutboxError, DeliveryError) as exc:
                raise OpError(str(exc)) from None
        return {"result": {"batch": request["batch"], "message_id": message_id}}

    # --- enrolment ---------------------------------------------------------------------

    def enrol(self, request: dict[str, Any], cancelled: threading.Event) -> dict[str, Any]:
        """Wait for the next tap on an enrolment reader, then link it to the person."""
        d = self.daemon
        person_id = request["person"]
        wait = float(request.get("wait_seconds") or 30.0)
        if not 0 < wait <= MAX_ENROL_WAIT:
            raise OpError(f"wait_seconds must be more than 0 and at most {MAX_ENROL_WAIT:g}")
        with d.store.use() as conn:
            if people.get(conn, person_id) is None:
                raise OpError(f"unknown person {person_id!r} (add them with badged person "
                              "add, or import the registry)")
        pattern = request.get("reader")
        desks = d.readers.present(ReaderRole.ENROLMENT)
        if not match_readers(pattern, desks):  # at once: no wait for a reader not there
            wanted = "no enrolment reader is present" if pattern is None else (
                f"no enrolment reader matches {pattern!r}")
            raise OpError(f"{wanted} (enrolment readers present: "
                          f"{', '.join(repr(r) for r in desks) or 'none'})")
        read = d.desk.wait(pattern, wait, cancelled)
        if read is None:
            raise OpError(f"no card tapped on an enrolment reader within {wait:g} s")
        if isinstance(read, CardReadError):
            raise OpError(f"a card was tapped but could not be read: {read}")
        policy = Policy.of(d.site.school.enrolment, d.site.comue)
        try:
            with d.store.use() as conn:
                done = enrol(conn, person_id, read.csn, policy,
                             crous_number_on_card=read.crous_number,
                             who=request.get("actor") or "badged")
        except EnrolmentError as exc:
            log.warning("enrolment refused: %s", exc.rule)
            raise OpError(str(exc)) from None
        if done.new_card:
            d.metrics.enrolment()
        log.info("enrolled card %s", done.csn)
        d.refresh_gauges()
        return {"read": read.to_json(), "enrolled": done.to_json()}

    # --- status ------------------------------------------------------------------------

    def summary(self, problems: list[str] | None = None) -> str:
        """The one-line state of the daemon (STATUS=, and `summary` in the status)."""
        d = self.daemon
        snap = d.taps.snapshot()
        up = sum(snap["readers"].values())
        if problems is None:
            problems = self._health()[1]
        text = (f"school {d.site.id}: {up}/{len(snap['readers'])} readers up, "
                f"pcscd {'up' if snap['pcscd'] else 'down'}, "
                f"{d.desk.waiting} enrolment(s) waiting")
        if problems:
            text += f"; degraded: {problems[0]}" + (
                f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")
        return text

    def _health(self) -> tuple[dict[str, Any], list[str]]:
        """(status parts, problems) of the daemon now."""
        d = self.daemon
        snap = d.taps.snapshot()
        now = health.now_utc()
        with d.store.use() as conn:
            jobs = [j.__dict__ for j in d.jobs.info()]
            box = health.outbox(conn, d.site, now)
            stock_now = health.stock_state(conn, d.site)
            due = health.deadlines(conn, d.site, now)
        parts = {"snapshot": snap, "jobs": jobs, "outbox": box.pending, "stock": stock_now,
                 "deadlines": due}
        found = health.problems(snap, jobs, box)
        if d.readers.started and not d.readers.alive:
            found.insert(0, "reader thread dead")
        return parts, found

    def status(self) -> dict[str, Any]:
        """The `status` op's answer (`badged status --json`)."""
        d = self.daemon
        parts, problems = self._health()
        snap, jobs = parts["snapshot"], parts["jobs"]
        return {
            "health": "degraded" if problems else "healthy", "problems": problems,
            "outbox": parts["outbox"], "stock": parts["stock"],
            "deadlines": parts["deadlines"],
            "version": __version__, "pid": os.getpid(), "school": d.site.id,
            "name": d.site.school.name, "started": d.started,
            "uptime_seconds": round(time.time() - d.started, 1),
            "last_reload": d.last_reload, "summary": self.summary(problems),
            "pcscd": snap["pcscd"], "readers": snap["readers"], "sams": snap["sams"],
            "reader_thread_alive": d.readers.alive,
            "enrolments_waiting": d.desk.waiting, "jobs": jobs,
            "last_taps": snap["last_taps"],
        }
