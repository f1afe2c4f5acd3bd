"""The API CROUS sync (being split: see plan.py)."""

from .plan import SyncError, SyncReport, card_body, sync  # noqa: F401
