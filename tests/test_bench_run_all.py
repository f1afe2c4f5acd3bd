"""`bench/run_all`: one row per figure in its table (the benches themselves are not run here)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

RUN_ALL = Path(__file__).parents[1] / "bench" / "run_all"


@pytest.fixture(scope="module")
def run_all() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("bench_run_all", str(RUN_ALL))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module  # dataclasses look their module up
    try:
        loader.exec_module(module)
    finally:
        del sys.modules[loader.name]
    return module


def test_each_bench_and_each_goal_once(run_all: ModuleType) -> None:
    names = [bench.name for bench in run_all.BENCHES]
    assert len(names) == len(set(names))
    for bench in run_all.BENCHES:
        assert (RUN_ALL.parent / f"{bench.name}.py").is_file()
        keys = [goal.key for goal in bench.goals]
        assert len(keys) == len(set(keys)), bench.name


def test_a_bench_listed_twice_is_refused(run_all: ModuleType) -> None:
    hardening = next(b for b in run_all.BENCHES if b.name == "hardening")
    with pytest.raises(ValueError, match="listed twice in BENCHES: hardening"):
        run_all.check_benches((*run_all.BENCHES, hardening))


def test_table_has_one_row_per_goal(run_all: ModuleType) -> None:
    results = []
    for bench in run_all.BENCHES:
        runs = run_all.Runs()
        runs.add("ours: 2.0 s\nbaseline: 1.0 s\nratio: 2.0\n"
                 + "".join(f"figure: {g.key} 1 MB\n" for g in bench.goals if g.key != "ratio"))
        results.append((bench, runs))
    lines, _ = run_all.table(results)
    rows = [line for line in lines[2:] if line.startswith("| ")]
    assert len(rows) == sum(len(b.goals) for b in run_all.BENCHES)
    assert len({row.split(" | ")[0] for row in rows}) == len(rows)
    assert all(row.count(" | ") == 5 for row in rows)
