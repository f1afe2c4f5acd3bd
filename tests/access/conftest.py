"""Fixtures of the access tests (helpers in accesskit.py)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from accesskit import MakeHost, make_host


@pytest.fixture(name="make_host")
def make_host_fixture(tmp_path: Path) -> MakeHost:
    """`make_host(exports=None, edit=None) -> Host`: EMSE in a copy of the tree, populated."""
    return functools.partial(make_host, tmp_path)
