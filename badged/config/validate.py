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


def _is_tag(part: Any) -> bool:
    """pydantic adds union tags and validator names to `loc`; they are not YAML keys."""
    return isinstance(part, str) and (part.startswith("<") or "[" in part)


def model_issues(doc: Document, error: ValidationError) -> list[ConfigIssue]:
    issues = []
    for e in error.errors(include_url=False):
        loc = [p for p in e["loc"] if not _is_tag(p)]
        kind = e["type"]
        message = _MESSAGES.get(kind) or _clean(e["msg"])
        at_key = kind == "extra_forbidden" or "[key]" in e["loc"]
        shown = None
        if kind == "missing":
            path, _ = doc.locate(loc)
            shown = (*path, loc[-1])
        issues.append(doc.issue(loc, message, at_key=at_key, shown_path=shown))
    return issues


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
