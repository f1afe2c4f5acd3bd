"""The local control socket (being split: see server.py)."""

from .server import *  # noqa: F403
