"""What the API accepts, as strictly as the real service: the path prefix, each body's
fields with their types (an unknown or missing field, or a wrong type, is a 400), the date
forms, the cancel reasons; and the refusal the peer answers with (status, CROUS code)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

PREFIX = "/beforeizly/v1"
API_DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SIMPLE_DATE = re.compile(r"^\d{4}-\d\d-\d\d$")

HOLDER_FIELDS: dict[str, tuple[type | tuple[type, ...], bool]] = {
    # name: (types, required)
    "identifier": (str, True), "firstName": (str, True), "lastName": (str, True),
    "email": ((str, type(None)), False), "dueDate": (str, True),
    "idCompanyRate": (int, True), "idRate": (int, True),
    "simpleBirthDate": ((str, type(None)), False), "ine": ((str, type(None)), False),
    "rneOrgCode": (str, True),
}
RENAME_FIELDS = {"currentIdentifier": (str, True), "email": ((str, type(None)), False),
                 "newIdentifier": (str, True)}
CARD_FIELDS = {"idTransmitter": (int, True), "idMapping": (int, True), "idZdc": (int, True),
               "zdcCreationDate": (str, True), "pixSs": (str, True), "pixNn": (str, True),
               "appl": (str, True), "uid": (str, True), "rid": (str, True)}
CARD_PATCH_FIELDS = {"revalidationDate": (str, True), "cancelDate": (str, True),
                     "reason": (str, True)}
REASONS = {"DP", "DV", "CD", "HS"}
CSN = re.compile(r"^(?:[0-9A-F]{2})+$")   # uid, rid and the PATCH `uid` header: upper case
CLOSED = {"CLOTURE", "CLOTURE_EN_COURS"}   # accountStatus of a closed (or closing) account


class RefusedError(Exception):
    """A request the peer refuses: answered `status` with the CROUS error body."""

    def __init__(self, status: int, code: str | None, message: str,
                 field_name: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field_name


def checked_date(value: str, field_name: str, *, simple: bool = False) -> datetime:
    """A date in the API's form (`simple`: YYYY-MM-DD) that exists, else a 400."""
    form, fmt = (SIMPLE_DATE, "%Y-%m-%d") if simple else (API_DATE, "%Y-%m-%dT%H:%M:%S.%fZ")
    if form.match(value):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            pass
    raise RefusedError(400, None, "bad date format", field_name)


def checked_fields(body: Any, spec: dict[str, tuple[Any, bool]]) -> dict[str, Any]:
    """The body if it has exactly the fields of `spec` with their types, else a 400."""
    if not isinstance(body, dict):
        raise RefusedError(400, None, "a JSON object is expected")
    for name in body:
        if name not in spec:
            raise RefusedError(400, None, f"unknown field {name}", name)
    for name, (types, required) in spec.items():
        if name not in body:
            if required:
                raise RefusedError(400, None, f"missing field {name}", name)
            continue
        value = body[name]
        if isinstance(value, bool) or not isinstance(value, types):
            raise RefusedError(400, None, f"bad type for {name}", name)
    return dict(body)
