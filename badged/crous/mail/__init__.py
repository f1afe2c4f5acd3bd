"""CROUS mail exchanges through the outbox (being split: see outbox.py)."""

from .outbox import *  # noqa: F403
from .outbox import LEASE, __all__, _login  # noqa: F401
