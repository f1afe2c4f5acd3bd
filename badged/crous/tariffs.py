"""Which rate (idCompanyRate "code société", idRate "tarif") a person gets at the CROUS.

Students get the students' rate (10 / 1) — except that a rate the CROUS set itself for a
student (97 and 98: grant holders, the €1 meal) is the CROUS's and is never overwritten.
Staff get the first rule whose status and index range match, else the default (78 / 99).
"""

from __future__ import annotations

import sqlite3

from ..config.model import Rate, TariffRule, Tariffs
from ..store import people

CROUS_OWNED_STUDENT_RATES = frozenset({97, 98})
# A holder the CROUS has with this code société is a student there, whatever the school
# says: the code stays, and so do what the CROUS owns of a student (names, e-mail, idRate).
CROUS_STUDENT_COMPANY_RATE = 10


def _matches(rule: TariffRule, status: str | None, index: int | None) -> bool:
    if status not in rule.status:
        return False
    if rule.index_min == 0 and rule.index_max is None:
        return True  # no index range: any index, known or not
    if index is None:
        return False
    return rule.index_min <= index and (rule.index_max is None or index <= rule.index_max)


def rate_for(tariffs: Tariffs, category: str, status: str | None = None,
             index: int | None = None, crous_rate: int | None = None) -> Rate:
    """The rate to declare; `crous_rate` is the idRate the CROUS currently has, if known."""
    if category == "student":
        if crous_rate in CROUS_OWNED_STUDENT_RATES:
            return Rate(id_company_rate=tariffs.students.id_company_rate, id_rate=crous_rate)
        return tariffs.students
    rule = staff_rule(tariffs, status, index)
    if rule is not None:
        return Rate(id_company_rate=rule.id_company_rate, id_rate=rule.id_rate)
    return tariffs.default


def staff_rule(tariffs: Tariffs, status: str | None, index: int | None) -> TariffRule | None:
    """The first staff rule matching a status and index; None: the default rate applies."""
    for rule in tariffs.rules:
        if _matches(rule, status, index):
            return rule
    return None


def matched_rule(tariffs: Tariffs, status: str | None, index: int | None) -> bool:
    """Whether a staff member's status and index match a rule (else: the default rate)."""
    return any(_matches(rule, status, index) for rule in tariffs.rules)


def default_rate_staff(conn: sqlite3.Connection, tariffs: Tariffs,
                       source: str | None = None) -> list[tuple[str, str | None]]:
    """Present staff whose status matches no rule: they get the default rate (78 / 99),
    which is right for a status the CROUS has no convention for, and wrong for a typo in a
    status code. (person id, status code) pairs: what a warning may show (no name)."""
    return [(pid, status) for pid, status, index in people.staff_rates(conn, source)
            if not matched_rule(tariffs, status, index)]


def default_rate_warning(tariffs: Tariffs, person_id: str, status: str | None) -> str:
    return (f"staff {person_id}: status {repr(status) if status else '(none)'} matches no "
            f"tariff rule: default rate {tariffs.default.id_company_rate} / "
            f"{tariffs.default.id_rate}")
