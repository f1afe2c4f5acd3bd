"""`badged enrol --csv`: link cards to people from a file of `person_id;csn` lines.

Same rules as a tap at the desk (the CROUS number then comes from the CROUS CSV), same
report as the imports (crous/imports.py): each refused line as `FILE:LINE: reason`, without
the CSN or the person (personal data: in the `--report` file only); good lines linked in
one transaction; with `strict`, nothing is linked if any line is refused.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from ..crous.imports import Problem, Rejection, RowsOutcome, rejection
from ..crous.textfile import read_lines
from .desk import EnrolmentError, Policy, enrol_in_transaction
from .lifecycle import actor

_CSN = re.compile(r"(?:[0-9A-Fa-f]{2}){4,10}")
_HEADER = ("person_id", "csn")


@dataclass
class BatchReport(RowsOutcome):
    file: str
    read: int = 0
    linked: int = 0
    unchanged: int = 0
    strict: bool = False
    rejections: list[Rejection] = field(default_factory=list)  # type: ignore[assignment]

    def summary(self) -> str:
        text = (f"{self.file}: {self.read} read, {self.linked} linked, {self.unchanged} "
                f"unchanged, {len(self.rejections)} rejected")
        return text + ("; strict: nothing linked" if self.strict and self.rejections else "")


def enrol_file(conn: sqlite3.Connection, path: Path, policy: Policy, *,
               strict: bool = False) -> BatchReport:
    report = BatchReport(str(path), strict=strict)
    lines = read_lines(path)
    who = actor()
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        for number, line in enumerate(lines, start=1):
            fields = [f.strip() for f in line.split(";")]
            if fields == [""] or (number == 1 and tuple(f.lower() for f in fields) == _HEADER):
                continue
            report.read += 1
            if len(fields) != 2 or not fields[0]:
                report.rejections.append(rejection(number, Problem(
                    "expected 'person_id;csn'", detail=f"got {len(fields)} field(s)")))
                continue
            person_id, csn = fields
            if not _CSN.fullmatch(csn):
                report.rejections.append(rejection(number, Problem(
                    "CSN is not 4 to 10 bytes of hex", csn)))
                continue
            conn.execute("SAVEPOINT row")
            try:
                done = enrol_in_transaction(conn, person_id, csn, policy, who=who)
            except EnrolmentError as exc:
                conn.execute("ROLLBACK TO row")
                report.rejections.append(rejection(number, Problem(exc.rule, str(exc))))
            else:
                if done.new_card:
                    report.linked += 1
                else:
                    report.unchanged += 1
            conn.execute("RELEASE row")
        if strict and report.rejections:
            conn.rollback()
            report.linked = 0
    return report
