"""Turn a parsed document into a typed model, with pydantic errors located in the YAML."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import ValidationError

from .errors import ConfigIssue
from .load import Document
from .model import Model

M = TypeVar("M", bound=Model)

_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "missing required field",
}

# Every message is ours: the model library's wording ("Input should be …") never reaches
# a sysadmin. Our own validators' messages (value_error, custom types) pass through.
_OWN = {"value_error", "assertion_error", "literal_secret"}
_BY_TYPE = {
    **dict.fromkeys(("int_type", "int_parsing", "int_from_float", "int_parsing_size"),
                    "must be a whole number"),
    **dict.fromkeys(("float_type", "float_parsing", "decimal_type", "decimal_parsing",
                     "finite_number"), "must be a number"),
    **dict.fromkeys(("bool_type", "bool_parsing"), "must be true or false"),
    **dict.fromkeys(("string_type", "string_unicode"), "must be text"),
    **dict.fromkeys(("dict_type", "model_type", "model_attributes_type", "mapping_type"),
                    "must be a mapping of keys"),
    **dict.fromkeys(("list_type", "tuple_type", "set_type", "frozen_set_type"),
                    "must be a list"),
    **dict.fromkeys(("date_type", "date_parsing", "date_from_datetime_parsing"),
                    "must be a date (YYYY-MM-DD)"),
    **dict.fromkeys(("union_tag_invalid", "union_tag_not_found"),
                    "is none of the accepted forms"),
    "decimal_max_digits": "has too many digits",
    "decimal_max_places": "has too many decimal places",
    "decimal_whole_digits": "has too many digits before the decimal point",
}
_BOUNDS = {"greater_than_equal": ("ge", "must be at least {}"),
           "greater_than": ("gt", "must be more than {}"),
           "less_than_equal": ("le", "must be at most {}"),
           "less_than": ("lt", "must be less than {}"),
           "too_short": ("min_length", "needs at least {} item(s)"),
           "too_long": ("max_length", "takes at most {} item(s)"),
           "string_too_short": ("min_length", "must be at least {} character(s) long"),
           "string_too_long": ("max_length", "must be at most {} characters long")}
_PATTERNS = {
    r"^[a-z0-9][a-z0-9_-]*$": "must be an id: lower-case letters, digits, '-' and '_', "
                              "starting with a letter or a digit",
    r"^(uid|aid|aid_msb|([0-9A-Fa-f]{2})+)$": "must be uid, aid, aid_msb or hex bytes "
                                              "(e.g. 4E585020416275)",
    r"^[A-Za-z0-9_.@-]+$": "must be a credential name: letters, digits, '_', '.', '@', '-'",
    r"^https?://\S+$": "must be an http:// or https:// URL",
}


def _is_tag(part: Any) -> bool:
    """pydantic adds union tags and validator names to `loc`; they are not YAML keys."""
    return isinstance(part, str) and (part.startswith("<") or "[" in part)


def model_issues(doc: Document, error: ValidationError) -> list[ConfigIssue]:
    issues = []
    for e in error.errors(include_url=False):
        loc = [p for p in e["loc"] if not _is_tag(p)]
        kind = e["type"]
        message = _MESSAGES.get(kind) or _message(kind, e)
        at_key = kind == "extra_forbidden" or "[key]" in e["loc"]
        shown = None
        if kind == "missing":
            path, _ = doc.locate(loc)
            shown = (*path, loc[-1])
        issues.append(doc.issue(loc, message, at_key=at_key, shown_path=shown))
    return issues


def _message(kind: str, error: Any) -> str:
    """Our wording for one validation error of the model library."""
    ctx = error.get("ctx") or {}
    if kind in _OWN:
        return _clean(str(error["msg"]))
    if kind in ("enum", "literal_error"):
        return f"must be {ctx.get('expected', 'one of the allowed values')}"
    if kind in _BOUNDS:
        name, text = _BOUNDS[kind]
        return text.format(ctx.get(name, "the limit"))
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        return _PATTERNS.get(pattern, f"does not have the expected form ({pattern})")
    return _BY_TYPE.get(kind, "invalid value")


def _clean(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg[:1].lower() + msg[1:]


def build(model: type[M], doc: Document) -> tuple[M | None, list[ConfigIssue]]:
    """Validate one document against its kind's model; never raises for bad data."""
    if not isinstance(doc.data, dict):
        return None, [doc.issue((), f"expected a mapping of keys, got {type(doc.data).__name__}")]
    try:
        return model.model_validate(doc.data), []
    except ValidationError as exc:
        return None, model_issues(doc, exc)
