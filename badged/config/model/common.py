"""What every part of the config model shares: the base class and the scalar types.

A scalar type checks one value (an id, an e-mail address, a month-day, a schedule…) and
says what is wrong with it in words a site's admin can act on.
"""

from __future__ import annotations

import calendar
import codecs
import re
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from ..schedules import parse_schedule


class Model(BaseModel):
    """Base of every config object: unknown keys are errors, objects are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


# --- scalar types -------------------------------------------------------------------------

Id = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid e-mail address")
    return value


def _month_day(value: str) -> str:
    m = re.fullmatch(r"(\d\d)-(\d\d)", value)
    if not m or not 1 <= int(m[1]) <= 12:
        raise ValueError(f"{value!r} is not a month-day: write MM-DD, e.g. '10-30'")
    month, day = int(m[1]), int(m[2])
    if not 1 <= day <= calendar.monthrange(2024, month)[1]:  # 2024: leap, so 02-29 is fine
        raise ValueError(f"{value!r} is not a month-day: {calendar.month_name[month]} "
                         f"has no day {day}")
    return value


def _schedule(value: str) -> str:
    parse_schedule(value)
    return value


def _aid(value: str) -> str:
    if not re.fullmatch(r"[0-9A-Fa-f]{6}", value):
        raise ValueError(f"{value!r} is not an AID: 3 bytes as 6 hex digits, MSB first")
    return value.upper()


def _encoding(value: str) -> str:
    try:
        codecs.lookup(value)
    except LookupError:
        raise ValueError(f"unknown encoding {value!r}") from None
    return value


def _listen(value: str) -> str:
    m = re.fullmatch(r"(\[[0-9A-Fa-f:]+\]|[A-Za-z0-9.-]*):(\d{1,5})", value)
    if not m or not 0 < int(m[2]) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. '127.0.0.1:8790' or ':8790')")
    return value


def _strftime(value: str) -> str:
    if "%" not in value:
        raise ValueError(f"{value!r} has no strftime directive (e.g. '%d/%m/%Y')")
    return value


Email = Annotated[str, AfterValidator(_email)]
MonthDay = Annotated[str, AfterValidator(_month_day)]
ScheduleText = Annotated[str, AfterValidator(_schedule)]
Aid = Annotated[str, AfterValidator(_aid)]
Encoding = Annotated[str, AfterValidator(_encoding)]
Listen = Annotated[str, AfterValidator(_listen)]
DateFormat = Annotated[str, AfterValidator(_strftime)]
Euros = Annotated[Decimal, Field(ge=0, max_digits=9, decimal_places=4)]
Name = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]

# Loopback by default (a site opens it to its Prometheus on purpose), on a port outside
# 9100-9999, where the Prometheus exporters' default port allocations crowd.
DEFAULT_METRICS_LISTEN = "127.0.0.1:8790"
