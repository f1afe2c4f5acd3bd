"""The effective config of a school as plain data, secret references made explicit."""

from __future__ import annotations

from typing import Any

from .tree import Site


def _redact(value: Any) -> Any:
    """Show every secret as a reference marker, so no secret value can ever be printed."""
    if isinstance(value, dict):
        if set(value) == {"file"} or set(value) == {"credential"}:
            (kind, where), = value.items()
            return f"<secret: {kind} {where}>"
        return {str(k): _redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


def effective(site: Site) -> dict[str, Any]:
    def dump(model: Any) -> Any:
        return _redact(model.model_dump(mode="json"))

    return {
        "school": {"id": site.id, **dump(site.school)},
        "comue": {"id": site.school.comue, **dump(site.comue)},
        "crous": {"id": site.school.crous, **dump(site.crous)},
        "card_profile": {"id": site.card_profile_id, **dump(site.card_profile)},
        "tariffs": {"id": site.school.tariffs, **dump(site.tariffs)},
        "layouts": {kind.value: {"id": lid, **dump(layout)}
                    for kind, (lid, layout) in site.layouts.items()},
    }
