"""Doctor: the API CROUS token (when the CROUS has an `api:`)."""

from __future__ import annotations

from ..config.tree import Site
from . import Check, ok, skip


def checks(site: Site, timeout: float) -> list[Check]:
    api = site.crous.api
    if api is None:
        return [ok("API CROUS", f"not configured (crous {site.school.crous} has no api:)")]
    # This version has no API CROUS client: the token cannot be asked for, so say so.
    return [skip("API CROUS token", "skipped: API client not available in this version")]
