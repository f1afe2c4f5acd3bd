"""The control socket's protocol: one JSON line each way, validated before any handler runs.

A request is one JSON object on one line (at most `MAX_LINE` bytes) with an "op" and the
op's fields; the answer is one JSON object on one line, `{"ok": true, ...}` or
`{"ok": false, "error": "message"}`. Anything malformed (not JSON, not UTF-8, a lone
surrogate, NaN, a number too long, the wrong fields) is a `BadRequestError` whose message
is the clean error answer.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

SOCKET_NAME = "control.sock"
MAX_LINE = 64 * 1024  # request line limit (bytes, newline excluded)
MAX_ANSWER = 16 * 1024 * 1024

FieldType = type | tuple[type, ...]


def socket_path(runtime_dir: str | Path) -> Path:
    """Where the control socket lives: `<runtime_dir>/control.sock` (host file runtime_dir)."""
    return Path(runtime_dir) / SOCKET_NAME


class BadRequestError(Exception):
    """A request the server answers with an error without running any handler."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadRequestError(f"the request has a number out of range: {text[:20]}")
    return value


def _no_constant(name: str) -> Any:
    raise BadRequestError(f"the request is not JSON: {name} is not a number")


def parse_request(line: bytes) -> dict[str, Any]:
    """A request line as a JSON object of valid text; BadRequestError says what is wrong."""
    try:
        request = json.loads(line.decode("utf-8"), parse_float=_finite,
                             parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise BadRequestError("the request is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise BadRequestError(f"the request is not JSON: {exc}") from None
    except RecursionError:
        raise BadRequestError("the request is nested too deeply") from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise BadRequestError(f"the request is not usable JSON: {exc}") from None
    if not isinstance(request, dict):
        raise BadRequestError("the request must be a JSON object")
    if not _valid_text(request):
        raise BadRequestError("the request is not valid Unicode text (a lone surrogate "
                               "in a string)")
    return request


def _valid_text(value: Any) -> bool:
    """No lone surrogate (JSON's "\\ud800") anywhere: handlers, logs and SQLite get text."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def shown(text: str) -> str:
    """A client's string in an error answer: quoted, and short."""
    return repr(text if len(text) <= 60 else text[:60] + "…")


def _type_ok(value: Any, expected: FieldType) -> bool:
    types = expected if isinstance(expected, tuple) else (expected,)
    for t in types:
        if t is float and isinstance(value, int | float) and not isinstance(value, bool):
            return True
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return -(1 << 63) <= value < 1 << 63  # what SQLite and the handlers can take
        if t not in (int, float) and isinstance(value, t):
            return True
    return False


def _type_name(expected: FieldType) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "a list", dict: "an object"}
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(names.get(t, t.__name__) for t in types)


def validate(op_name: str, required: Mapping[str, FieldType],
             optional: Mapping[str, FieldType], request: dict[str, Any]) -> dict[str, Any]:
    """The request with its fields checked against the op's (ints taken as floats where
    a float is expected, null optional fields dropped); BadRequestError lists what is wrong."""
    problems = []
    clean: dict[str, Any] = {"op": op_name}
    for name, value in request.items():
        if name == "op":
            continue
        expected = required.get(name, optional.get(name))
        if expected is None:
            problems.append(f"unknown field {shown(name)}")
        elif value is None and name in optional:
            continue
        elif not _type_ok(value, expected):
            problems.append(f"field {name!r} must be {_type_name(expected)}")
        else:
            clean[name] = float(value) if expected is float else value
    problems += [f"missing field {name!r}" for name in required if name not in request]
    if problems:
        raise BadRequestError(f"bad {op_name} request: {'; '.join(problems)}")
    return clean


def encode(answer: Mapping[str, Any]) -> bytes:
    """One JSON line (a request or an answer); TypeError if a value is not serialisable."""
    text = json.dumps(answer, ensure_ascii=False, default=_json_default)
    try:
        return text.encode() + b"\n"
    except UnicodeEncodeError:  # a lone surrogate from somewhere: escaped, still JSON
        return json.dumps(answer, default=_json_default).encode() + b"\n"


def _json_default(value: Any) -> Any:
    if isinstance(value, Path | os.PathLike):
        return os.fspath(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
