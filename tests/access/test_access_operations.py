"""What an operator asks of a host's door-system exports (badged.access.operations): which
exports a command means, what they would write, and writing them now."""

from __future__ import annotations

from pathlib import Path

import pytest
from accesskit import NOW, MakeHost

from badged.access.export import AccessError
from badged.access.operations import export_names, plan_exports, run_exports
from badged.config.tree import load_tree

REPO = Path(__file__).resolve().parents[2]


def test_the_exports_a_command_means(make_host: MakeHost) -> None:
    site = make_host().load_site()
    assert export_names(site) == ["til", "p2s"]
    assert export_names(site, "p2s") == ["p2s"]
    with pytest.raises(AccessError, match="'doors'"):
        export_names(site, "doors")
    without = load_tree(REPO / "config").site("imt-nantes")
    with pytest.raises(AccessError) as refused:
        export_names(without)
    assert str(refused.value) == "school imt-nantes has no access_exports configured"


def test_plan_writes_nothing_then_run_writes_then_nothing_changed(make_host: MakeHost) -> None:
    host = make_host()
    site = host.load_site()
    (planned,) = plan_exports(host, site, ["til"], NOW)
    assert (planned.name, planned.cards, planned.unchanged) == ("til", 6, False)
    assert not (host.state_dir / "access/til").exists()
    (done,) = run_exports(host, site, ["til"], NOW)
    assert (done.written, done.error) == (True, None)
    assert (host.state_dir / "access/til/cartes-til.csv").is_file()
    (again,) = plan_exports(host, site, ["til"], NOW)
    assert again.unchanged
    assert [r.written for r in run_exports(host, site, ["til"], NOW, full=True)] == [True]
