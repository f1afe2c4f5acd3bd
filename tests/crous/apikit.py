"""A school whose CROUS is the strict local peer: tree, host file, store, people and cards.

    with CrousPeer(clients={CLIENT_ID: SECRET}) as peer:
        school = ApiSchool(tmp_path, peer)
        school.student("E1"); school.card("E1", "04A1B2C3D4E5F6", 36000001)
        report = school.sync()
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from badged.config.host import load_host
from badged.crous.deadlines import academic_year_start
from badged.crous.sync import SyncReport, sync
from badged.store import cards, people
from badged.store.db import open_store, utcnow

REPO = Path(__file__).resolve().parents[2]
CLIENT_ID = "demo-school"
SECRET = "s3cret-Zq9-never-shown"
KINDS = ("reinscriptions", "primo_entrants", "personnels", "departs")


class ApiSchool:
    def __init__(self, root: Path, peer: Any, *, kinds: tuple[str, ...] = KINDS,
                 **api: Any) -> None:
        self.root = root
        self.peer = peer
        self.tree = root / "tree"
        shutil.copytree(REPO / "config", self.tree)
        secret = self.tree / "crous-api.secret"
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(SECRET + "\n")
        crous_file = self.tree / "crous" / "demo.yaml"
        crous = yaml.safe_load(crous_file.read_text())
        crous["api"] = {"base_url": peer.base_url, "token_url": peer.token_url,
                        "client_id": CLIENT_ID, "client_secret": {"file": "crous-api.secret"},
                        "crous_number": "99", "connect_timeout_seconds": 1.0,
                        "read_timeout_seconds": 0.5, "backoff_seconds": 0.0,
                        "max_retries": 2, **api}
        crous_file.write_text(yaml.safe_dump(crous, allow_unicode=True))
        school_file = self.tree / "schools" / "demo.yaml"
        school = yaml.safe_load(school_file.read_text())
        school["exchanges"] = [
            {"kind": k, "schedule": "every 10 minutes",
             **({"transport": "api"} if k in kinds else {"recipients": ["monetique"]})}
            for k in KINDS]
        school_file.write_text(yaml.safe_dump(school, allow_unicode=True))
        self.host_file = root / "badged.yaml"
        self.host_file.write_text(f"tree: {self.tree}\nschool: demo\nstate_dir: "
                                  f"{root / 'state'}\nruntime_dir: {root / 'run'}\n")
        self.host = load_host(self.host_file)
        self.site = self.host.load_site()
        self.conn = open_store(self.host.state_dir)
        self.now = datetime.now(UTC)
        self.year = academic_year_start(self.now, self.site.school.academic_year_start).year

    # --- people and cards ---------------------------------------------------------------

    def student(self, pid: str, *, first_year: int | None = None, **kw: Any) -> None:
        values: dict[str, Any] = {
            "id": pid, "last_name": f"Nom{pid}", "first_name": f"Prénom{pid}",
            "category": "student", "email": f"{pid.lower()}@example.org",
            "ine": f"INE{pid}", "birth_date": "2005-03-14", "academic_year": self.year,
            "first_enrolment_year": self.year if first_year is None else first_year,
            "source": "students"}
        values.update(kw)
        people.upsert(self.conn, people.Person(**values))

    def staff(self, pid: str, **kw: Any) -> None:
        values: dict[str, Any] = {
            "id": pid, "last_name": f"Nom{pid}", "first_name": f"Prénom{pid}",
            "category": "staff", "email": f"{pid.lower()}@example.org",
            "birth_date": "1980-01-02", "status_code": "prs", "staff_index": 512,
            "source": "staff"}
        values.update(kw)
        people.upsert(self.conn, people.Person(**values))

    def card(self, pid: str, csn: str, number: int, *, in_csv: bool = True) -> None:
        if in_csv:
            self.conn.execute(
                "INSERT INTO crous_cards (csn, rid, num_carte, pix_ss, pix_nn, appl, nfo, "
                "cnous, crous, emetteur, mapping, date_creation, imported_at, source_file) "
                "VALUES (?, ?, ?, '03', '0000', 'D1', '0', '0', '0691', 65, 1, '2026-09-01', "
                "?, 'test.csv')", (csn, csn, number, utcnow()))
        cards.link(self.conn, csn, pid, number)

    def set_state(self, csn: str, state: str) -> None:
        from badged.enrolment.lifecycle import change_state
        change_state(self.conn, csn, state, who="test")

    def leave(self, pid: str, days_ago: int = 40) -> None:
        """Rights ended `days_ago` days ago (a leaver)."""
        ended = (date.today() - timedelta(days=days_ago)).isoformat()
        self.conn.execute("UPDATE people SET end_of_rights = ? WHERE id = ?", (ended, pid))

    # --- runs ---------------------------------------------------------------------------

    def sync(self, **kw: Any) -> SyncReport:
        kw.setdefault("now", datetime.now(UTC))
        now = kw.pop("now")
        return sync(self.conn, self.site, now, **kw)

    def calls(self) -> list[tuple[str, str, int]]:
        """The peer's answered API requests (tokens excluded), then forgotten."""
        with self.peer.lock:
            done = [r for r in self.peer.requests if r[1].startswith("/beforeizly")]
            self.peer.requests.clear()
        return done

    def errors(self) -> dict[str, Any]:
        from badged.store import crous_api
        return {e.key: e for e in crous_api.errors(self.conn)}
