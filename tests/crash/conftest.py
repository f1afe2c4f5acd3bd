"""The crash tests' runner: one forking zygote per test module (see zygote.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crashkit import Zygote


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    runner = Zygote(tmp_path_factory.mktemp("zygote"))
    yield runner
    runner.close()
