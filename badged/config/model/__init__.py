"""The typed config model (being split into one module per kind of file)."""

from .card_profile import *  # noqa: F403
