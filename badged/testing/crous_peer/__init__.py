"""The strict local API CROUS peer (being split: see peer.py)."""

from .peer import DEMO_TARIFFS, CrousPeer, Fault, main  # noqa: F401
