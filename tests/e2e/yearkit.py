"""A school's year for the end-to-end scenario (test_school_year.py): a movable clock, the
registry's exports and the CROUS card CSV as files, simulated cards, the demo school rewired
to a real SMTP server and the local API CROUS, door files, and the deadline alerts of
monitoring/alerts.yml evaluated by promtool over what the daemon serves on /metrics.

Time is the daemon's test clock (`BADGED_TEST_CLOCK_FILE`, badged/clock.py): a file the
daemon reads for every "now"; moving it never sleeps. The scheduler keeps real time, so the
scenario runs each job itself (`exchange run`, `crous sync`), as an operator would.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import yaml

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "daemon"))
sys.path.insert(0, str(TESTS / "crous"))
from daemonkit import (  # noqa: E402
    BADGED,
    CARD,
    DaemonProcess,
    Notifications,
    Site,
    make_site,
    samples,
    wait_until,
)
from smtpkit import Recorder, SmtpServer, make_pki  # noqa: E402

from badged.clock import CLOCK_FILE_ENV  # noqa: E402
from badged.crous.deadlines import PARIS  # noqa: E402

__all__ = ["BADGED", "DaemonProcess", "Notifications", "Recorder", "Site", "SmtpServer",
           "make_pki", "make_site", "wait_until"]  # the kits, for the scenario
REPO = TESTS.parent
ALERTS = REPO / "monitoring" / "alerts.yml"
SMTP_USER, SMTP_PASSWORD = "badged", "s3cret-année"
API_CLIENT, API_SECRET = "ecole-demo", "year-test-secret-7"
MONETIQUE = "monetique@crous-demo.example.org"
RESTAURATION = "restauration@crous-demo.example.org"


def paris(year: int, month: int, day: int, hour: int = 9) -> datetime:
    return datetime(year, month, day, hour, tzinfo=PARIS)


class Clock:
    """The daemon's (and this process's) "now": a Unix time in a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def set(self, when: datetime) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(f"{when.timestamp():.3f}\n", encoding="ascii")
        tmp.replace(self.path)  # the daemon never reads half a number
        self.when = when

    def now(self) -> datetime:
        return self.when

    def env(self) -> dict[str, str]:
        return {CLOCK_FILE_ENV: str(self.path)}


# --- the registry, the CROUS card CSV, the cards -------------------------------------------

def students_csv(path: Path, rows: list[tuple[str, str, str, int, int]]) -> Path:
    """(id, last name, first name, academic year, first enrolment year), demo columns."""
    lines = ["NUM_ETU;INE;NOM;PRENOM;DATE_NAISSANCE;FORMATION;MAIL;ANNEE;"
             "ANNEE_PREMIERE_INSCRIPTION"]
    for pid, last, first, year, since in rows:
        lines.append(f"{pid};{ine(pid)};{last};{first};14/03/2006;Cycle ingénieur;"
                     f"{pid}@example.org;{year};{since}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def ine(pid: str) -> str:
    """A student's INE (11 letters or digits): s1 → 0000000001S."""
    return f"{int(pid[1:]):010d}S"


def staff_csv(path: Path, rows: list[tuple[str, str, str, str, int, str]]) -> Path:
    """(id, last name, first name, status, index, end of contract dd/mm/yyyy or "")."""
    lines = ["MATRICULE;NOM;PRENOM;DATE_NAISSANCE;MAIL;STATUT;INDICE;FIN_CONTRAT"]
    for pid, last, first, status, index, end in rows:
        lines.append(f"{pid};{last};{first};21/09/1978;{pid.lower()}@example.org;{status};"
                     f"{index};{end}")
    path.write_text("\n".join(lines) + "\n", encoding="cp1252")  # HR's Windows export
    return path


def crous_cards_csv(path: Path, cards: dict[str, int]) -> Path:
    """The CROUS's card CSV: CSN → CROUS card number."""
    lines = ["PIX.SS;PIX.NN;AAPL;NUM_PROTOCOLAIRE;NUM_APPLICATIF;NFO;CNOUS;CROUS;EMETTEUR;"
             "MAPPING;NUM_CARTE;DATE_CREATION"]
    lines += [f"03;0000;D1;{csn};{csn};0;0;0691;41;1;{number};01/09/2026"
              for csn, number in cards.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def card_file(folder: Path, csn: str, number: int) -> Path:
    """A pre-encoded CROUS card of the demo profile with its own UID and CROUS number."""
    text = CARD.read_text().replace('uid: "04112233445566"', f'uid: "{csn}"')
    text = text.replace('text: "249760531028417"', f'text: "{number}"')
    path = folder / f"card-{csn}.yaml"
    path.write_text(text)
    return path


# --- the school -------------------------------------------------------------------------

def rewire(site: Site, *, transport: str, smtp_port: int, ca_file: Path,
           api_base: str | None = None) -> None:
    """The demo school with every exchange by `transport` (mail: both CROUS mailboxes over
    real SMTP; api: the local API CROUS), and no local maildir."""
    school = yaml.safe_load(site.school_file.read_text())
    school.pop("maildir", None)
    if transport == "mail":
        school["exchanges"] = [
            {"kind": kind, "schedule": "every day at 06:30",
             "recipients": ["monetique", "restauration"]}
            for kind in ("reinscriptions", "primo_entrants", "personnels", "departs")]
    else:
        school["exchanges"] = [
            {"kind": kind, "schedule": "every day at 05:00", "transport": "api"}
            for kind in ("reinscriptions", "primo_entrants", "personnels", "departs")]
    site.school_file.write_text(yaml.safe_dump(school, allow_unicode=True, sort_keys=False))
    crous_file = site.tree / "crous" / "demo.yaml"
    crous = yaml.safe_load(crous_file.read_text())
    if api_base is not None:
        crous["api"].update({"base_url": api_base, "token_url": f"{api_base}/api/oauth/token",
                             "client_id": API_CLIENT,
                             "client_secret": {"credential": "demo-crous-api"},
                             "backoff_seconds": 0.0})
        secret = site.credentials / "demo-crous-api"
        secret.write_text(API_SECRET + "\n")
        secret.chmod(0o600)
    crous_file.write_text(yaml.safe_dump(crous, allow_unicode=True, sort_keys=False))
    password = site.root / "smtp-password"
    password.write_text(SMTP_PASSWORD + "\n", encoding="utf-8")
    password.chmod(0o600)
    with site.host_file.open("a") as f:
        f.write(f"smtp:\n  host: 127.0.0.1\n  port: {smtp_port}\n  starttls: true\n"
                f"  ca_file: {ca_file}\n  username: {SMTP_USER}\n"
                f"  password: {{file: {password}}}\n")


def reload(daemon: DaemonProcess) -> None:
    """SIGHUP and wait for the reload: the gauges (year, deadlines, last sent) are fresh."""
    import signal

    before = daemon.status()["last_reload"]
    daemon.send(signal.SIGHUP)
    wait_until(lambda: daemon.status()["last_reload"] != before, what="reload")


def door_cards(site: Site) -> dict[str, bool]:
    """person id → valid, from the door system's TIL file (the export `doors`)."""
    [path] = [p for p in (site.state_dir / "access" / "doors").iterdir()
              if not p.name.startswith(".") and not re.search(r"\.\d+$", p.name)]
    out = {}
    for line in path.read_text(encoding="iso-8859-1").splitlines():
        fields = line.split(";")
        out[fields[0]] = fields[6] == "1"
    return out


# --- the deadline alerts, by promtool -----------------------------------------------------

def deadline_alerts() -> dict[str, str]:
    """alert name → expr, for the alerts of monitoring/alerts.yml on CROUS deadlines."""
    rules = yaml.safe_load(ALERTS.read_text())
    return {r["alert"]: r["expr"] for group in rules["groups"] for r in group["rules"]
            if "alert" in r and "badged_exchange_deadline_timestamp_seconds" in r["expr"]}


def check_alerts(scrape: str, at: datetime, firing: dict[str, set[str]], folder: Path) -> None:
    """promtool evaluates each deadline alert's expression over the scraped series at `at`
    (time() = `at`): `firing` alert name → the kinds it fires for (absent: none)."""
    exprs = deadline_alerts()
    assert set(firing) <= set(exprs), f"no such deadline alerts: {set(firing) - set(exprs)}"
    names = set(re.findall(r"badged_[a-z_]+", " ".join(exprs.values())))
    # promtool steps from 0 to the evaluation time: the series are moved back in time so
    # that the school's now is 10 minutes (every *_timestamp_seconds minus the same base;
    # the expressions only compare times with each other and with time()).
    t = int(at.timestamp())
    base = t - 600
    labels = {"job": "badged", "instance": "school:8790"}
    series = []
    for name, ls, value in samples(scrape):
        if name in names:
            if name.endswith("_timestamp_seconds"):
                value -= base
            body = ",".join(f'{k}="{v}"' for k, v in sorted({**ls, **labels}.items()))
            series.append({"series": f"{name}{{{body}}}", "values": f"{value:.3f}x10"})
    tests = [{
        "interval": "1m", "input_series": series,
        "promql_expr_test": [
            {"expr": f"({expr}) * 0 + 1", "eval_time": "10m",
             "exp_samples": [{"labels": "{" + ",".join(
                 f'{k}="{v}"' for k, v in sorted({**labels, "kind": kind}.items())) + "}",
                 "value": 1} for kind in sorted(firing.get(alert, set()))]}
            for alert, expr in sorted(exprs.items())]}]
    path = folder / f"alerts-{t}.test.yml"
    path.write_text(yaml.safe_dump({"rule_files": [], "tests": tests}, sort_keys=False))
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required (Debian package prometheus)"
    done = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, (f"at {at:%Y-%m-%d %H:%M}, expected {firing}:\n"
                                  f"{done.stdout}{done.stderr}")
