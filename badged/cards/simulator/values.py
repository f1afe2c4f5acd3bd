"""The values of a card file, each checked with the message its author reads.

Every check raises `problem(...)`, a pydantic error whose message is shown as written
(`cardfile.py` turns them into `FILE:LINE:COL: path: message`); ``at`` says which mark
of the YAML it is about: the value (default), its key, or the mapping that holds it.
Hex values are quoted strings, because YAML reads unquoted digits as a number.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from badged.cards.desfire.info import ACCESS_FREE, ACCESS_NEVER
from badged.cards.desfire.keys import DesfireKey, KeyType

ERROR = "card_file"
Mark = Literal["value", "key", "parent"]
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

_HEX = re.compile(r"[0-9A-Fa-f]*")


def problem(message: str, at: Mark = "value") -> PydanticCustomError:
    # ``message`` comes last in the context: it is substituted last, so a value quoted in
    # it that looks like a placeholder ("{at}") is left as it is.
    return PydanticCustomError(ERROR, "{message}", {"at": at, "message": message})


def located(loc: tuple[str | int, ...], message: str, at: Mark = "value") -> InitErrorDetails:
    """A problem at `loc` below the value being validated."""
    return InitErrorDetails(type=problem(message, at), loc=loc, input=None)


def relocated(error: ErrorDetails, prefix: tuple[str | int, ...]) -> InitErrorDetails:
    """An error of a nested validation, raised again from its parent at `prefix`."""
    ctx = dict(error.get("ctx") or {})
    if error["type"] != ERROR:  # pydantic's own (a missing field): keep its kind
        ctx = {"message": error["msg"]}
    return InitErrorDetails(type=PydanticCustomError(error["type"], "{message}", ctx),
                            loc=(*prefix, *error["loc"]), input=error["input"])


def raise_all(title: str, errors: list[InitErrorDetails]) -> None:
    if errors:
        raise ValidationError.from_exception_data(title, errors)


def validate_items(model: type[M], items: Any, context: dict[str, Any]
                   ) -> tuple[list[M | None], list[InitErrorDetails]]:
    """Each item of a list on its own (None where invalid) and the problems of them all."""
    if not isinstance(items, list):
        raise problem("must be a list")
    valid: list[M | None] = []
    errors: list[InitErrorDetails] = []
    for i, item in enumerate(items):
        try:
            valid.append(model.model_validate(item, context=context))
        except ValidationError as exc:
            valid.append(None)
            errors += [relocated(e, (i,)) for e in exc.errors(include_url=False)]
    return valid, errors


def each(items: list[Any], check: Callable[[Any], T]) -> list[T]:
    """Every item of a list checked, the problems of them all reported at once."""
    checked: list[T] = []
    errors: list[InitErrorDetails] = []
    for i, item in enumerate(items):
        try:
            checked.append(check(item))
        except PydanticCustomError as exc:
            errors.append(InitErrorDetails(type=exc, loc=(i,), input=item))
    raise_all("items", errors)
    return checked


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# -- scalars -------------------------------------------------------------------------------


def string(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise problem("must be a string")


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise problem("must be true or false")


def integer(lo: int, hi: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise problem(f"must be an integer ({lo}..{hi})")
        if not lo <= value <= hi:
            raise problem(f"must be in {lo}..{hi}, got {value}")
        return value

    return check


def choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if isinstance(value, str) and value in choices:
            return value
        raise problem(f"must be one of: {', '.join(choices)}")

    return check


key_type_name = choice(*(k.value for k in KeyType))


def hex_bytes(sizes: tuple[int, ...] | None = None) -> Callable[[Any], bytes]:
    """A quoted hex string (spaces allowed); `sizes` lists the allowed byte counts."""

    def check(value: Any) -> bytes:
        if not isinstance(value, str):
            raise problem("must be a quoted hex string (unquoted digits are a number)")
        text = "".join(value.split())
        if not _HEX.fullmatch(text):
            raise problem(f"not hexadecimal: {value!r}")
        if len(text) % 2:
            raise problem(f"odd number of hex digits: {value!r}")
        data = bytes.fromhex(text)
        if sizes is not None and len(data) not in sizes:
            if len(sizes) > 2:
                want = f"{min(sizes)} to {max(sizes)} bytes"
            else:
                want = " or ".join(f"{n} bytes ({2 * n} hex digits)" for n in sizes)
            raise problem(f"must be {want}, got {plural(len(data), 'byte')}")
        return data

    return check


def literal_key(value: Any, key_type: KeyType) -> DesfireKey:
    """A key written out in hex, of the length its type takes."""
    sizes = (8, 16) if key_type is KeyType.DES else (key_type.key_length,)
    data = hex_bytes(sizes)(value)
    try:
        return DesfireKey(key_type, data)
    except ValueError as exc:  # a 16-byte DES key whose halves differ
        raise problem(str(exc)) from None


def key_number(value: Any, key_count: int | None) -> int:
    """An access right: a key number of the application, ``free`` or ``never``."""
    if isinstance(value, str) and value in ("free", "never"):
        return ACCESS_FREE if value == "free" else ACCESS_NEVER
    if not isinstance(value, int) or isinstance(value, bool):
        raise problem("must be a key number, free or never")
    if not 0 <= value <= 13:
        raise problem(f"key number must be 0..13, free or never, got {value}")
    if key_count is not None and value >= key_count:
        raise problem(f"key {value} does not exist (the application has "
                      f"{plural(key_count, 'key')})")
    return value


def diversification_part(value: Any) -> str | bytes:
    """``uid``, ``aid``, ``aid_msb`` (taken from the card), or literal bytes in hex."""
    if not isinstance(value, str):
        raise problem("must be uid, aid, aid_msb or a quoted hex literal")
    if value in ("uid", "aid", "aid_msb"):
        return value
    text = "".join(value.split())
    if not text or not _HEX.fullmatch(text) or len(text) % 2:
        raise problem(f"must be uid, aid, aid_msb or a hex literal, not {value!r}")
    return bytes.fromhex(text)
