"""Doctor: the API CROUS token (when the CROUS has an `api:`)."""

from __future__ import annotations

from ..config.tree import Site
from . import Check, fail, ok


def checks(site: Site, timeout: float) -> list[Check]:
    api = site.crous.api
    if api is None:
        return [ok("API CROUS", f"not configured (crous {site.school.crous} has no api:)")]
    from ..config.errors import SecretError
    from ..crous.api import ApiError, check_token  # httpx only when an API is configured

    quick = api.model_copy(update={"connect_timeout_seconds": min(
        api.connect_timeout_seconds, timeout), "read_timeout_seconds": min(
        api.read_timeout_seconds, timeout), "max_retries": 0})
    try:
        return [ok("API CROUS token", check_token(quick, site.tree))]
    except SecretError as exc:
        return [fail("API CROUS token", str(exc), "install the client secret the CROUS "
                     "gave (a 0600 file or a systemd credential, as crous/<id>.yaml says)")]
    except ApiError as exc:
        return [fail("API CROUS token", str(exc), "check the client id and secret with "
                     "the CROUS, and that this host reaches the token URL")]
