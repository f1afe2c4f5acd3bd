"""PC/SC transport on pyscard's low-level API (being split: see readers.py)."""

from .readers import *  # noqa: F403
