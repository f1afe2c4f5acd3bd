"""Fixtures of the enrolment tests: a host running the demo school with its own store."""

from __future__ import annotations

from pathlib import Path

import pytest

from badged.config.host import Host, load_host

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def host(tmp_path: Path) -> Host:
    """The demo school of the repo's tree, its state (and store) in tmp_path."""
    path = tmp_path / "badged.yaml"
    path.write_text(f"tree: {REPO / 'config'}\nschool: demo\nstate_dir: {tmp_path / 'state'}\n"
                    f"runtime_dir: {tmp_path / 'run'}\n", encoding="utf-8")
    return load_host(path)
