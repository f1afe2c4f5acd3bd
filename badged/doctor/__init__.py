"""`badged doctor`: every precondition of this host, one verdict each, with the fix.

Each check family lives in its own module and returns `Check`s; `run` chains them in the
order an operator fixes things (host file and tree first: without them most other checks
cannot even be named). A check never raises: a failure is a `fail` line naming the fix.
Nothing here changes the host: no migration, no mail sent, no card written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

Status = Literal["ok", "warn", "fail", "skip"]


@dataclass(frozen=True)
class Check:
    """One precondition: `check` names it, `detail` says what was seen, `fix` what to do."""

    check: str
    status: Status
    detail: str
    fix: str | None = None

    def line(self) -> str:
        fix = f" — fix: {self.fix}" if self.fix and self.status in ("warn", "fail") else ""
        return f"{self.status:<4}  {self.check}: {self.detail}{fix}"

    def to_json(self) -> dict[str, str | None]:
        return asdict(self)


def ok(check: str, detail: str) -> Check:
    return Check(check, "ok", detail)


def warn(check: str, detail: str, fix: str | None = None) -> Check:
    return Check(check, "warn", detail, fix)


def fail(check: str, detail: str, fix: str | None = None) -> Check:
    return Check(check, "fail", detail, fix)


def skip(check: str, detail: str) -> Check:
    return Check(check, "skip", detail)


def run(host_path: Path, *, timeout: float = 10.0) -> list[Check]:
    """Every check of this host, in order."""
    from . import access, config, crous_api, keys, pcsc, smtp, system

    found: list[Check] = []
    host, site = config.load(host_path, found)
    if host is None:
        return found
    answer = system.ask_daemon(host, timeout)
    owner = config.service_owner(answer.get("pid") if isinstance(answer, dict) else None)
    families: list[Callable[[], Iterable[Check]]] = [
        lambda: config.directories(host, owner),
        lambda: config.store(host),
    ]
    if site is not None:
        families += [
            lambda: pcsc.checks(site, owner[0]),
            lambda: keys.checks(host, site),
            lambda: smtp.checks(host, site, timeout),
            lambda: crous_api.checks(site, timeout),
            lambda: access.checks(host, site),
        ]
    families += [
        lambda: system.disk(host),
        system.clock,
        lambda: system.daemon(host, answer),
    ]
    for family in families:
        try:
            found.extend(family())
        except Exception as exc:  # a check's own bug must not hide the others' verdicts
            found.append(fail("doctor", f"a check failed unexpectedly: "
                              f"{type(exc).__name__}: {exc}", "report it as a badged bug"))
    return found


def failed(checks: Iterable[Check]) -> bool:
    return any(c.status == "fail" for c in checks)
