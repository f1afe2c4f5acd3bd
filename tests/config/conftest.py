"""Build config trees for tests from tests/fixtures/config (one file per bad-input case)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent.parent / "fixtures" / "config"
REPO = Path(__file__).parent.parent.parent


def case_target(case: Path) -> str:
    first = case.read_bytes().split(b"\n", 1)[0].decode("utf-8")  # the rest may not be
    assert first.startswith("# replaces: "), f"{case}: first line must say what it replaces"
    return first.removeprefix("# replaces: ")


@pytest.fixture
def make_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A copy of the valid base tree at ./tree (cwd = tmp_path), with a case applied."""
    monkeypatch.chdir(tmp_path)

    def make(case: str | None = None) -> Path:
        tree = tmp_path / "tree"
        shutil.copytree(FIXTURES / "base", tree)
        if case is None:
            return tree
        source = FIXTURES / case
        if not source.is_dir():
            source = source.with_suffix(".yaml")
        if source.is_dir():
            shutil.copytree(source, tree, dirs_exist_ok=True)
        else:
            shutil.copy(source, tree / case_target(source))
        return tree

    return make
