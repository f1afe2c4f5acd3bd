"""The CROUS's reasons for cancelling a card (API CROUS `reason`, docs/crous.md)."""

from __future__ import annotations

# lost DP, stolen DV, out of order CD, anything else (expiry, destruction…) HS.
CANCEL_REASONS = {"lost": "DP", "stolen": "DV", "broken": "CD", "expired": "HS",
                  "destroyed": "HS"}


def cancel_reason(new_state: str) -> str | None:
    """The reason sent with a cancel; None when the card becomes active (a revalidation)."""
    return None if new_state == "active" else CANCEL_REASONS[new_state]
