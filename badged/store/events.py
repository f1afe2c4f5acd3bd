"""Operational events (card taps, enrolments, errors): the store's journal for operators."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from .db import utcnow


def add(conn: sqlite3.Connection, kind: str, *, reader: str | None = None,
        csn: str | None = None, detail: dict[str, Any] | None = None) -> int:
    cur = conn.execute(
        "INSERT INTO events (at, kind, reader, csn, detail) VALUES (?, ?, ?, ?, ?)",
        (utcnow(), kind, reader, csn, json.dumps(detail, sort_keys=True) if detail else None),
    )
    return int(cur.lastrowid or 0)


def recent(conn: sqlite3.Connection, limit: int = 50) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,))
    return [{**dict(r), "detail": json.loads(r["detail"]) if r["detail"] else None}
            for r in rows]
