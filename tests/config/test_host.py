"""The host file: how commands find it, and its relative paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from badged.config.errors import ConfigError
from badged.config.host import DEFAULT_HOST_CONFIG, host_config_path, load_host


def test_lookup_order(monkeypatch) -> None:
    monkeypatch.delenv("BADGED_HOST_CONFIG", raising=False)
    assert host_config_path(None) == DEFAULT_HOST_CONFIG == Path("/etc/badged/badged.yaml")
    monkeypatch.setenv("BADGED_HOST_CONFIG", "/srv/h.yaml")
    assert host_config_path(None) == Path("/srv/h.yaml")
    assert host_config_path("x.yaml") == Path("x.yaml")


def test_relative_paths_are_from_the_host_file(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    host_file = tmp_path / "etc" / "badged.yaml"
    host_file.write_text("tree: config\nschool: emse\nstate_dir: ../state\n")
    host = load_host(host_file)
    assert host.tree == tmp_path / "etc" / "config"
    assert host.state_dir == tmp_path / "state"
    assert host.runtime_dir == Path("/run/badged")


def test_host_file_errors_are_located(tmp_path: Path) -> None:
    host_file = tmp_path / "badged.yaml"
    host_file.write_text("tree: config\nschool: emse\nsmtp:\n  host: relay\n  password: hunter2\n")
    with pytest.raises(ConfigError) as exc:
        load_host(host_file)
    assert [str(i) for i in exc.value.issues] == [
        f"{host_file}:5:13: smtp.password: a secret is a reference, never a literal value: "
        "write {file: PATH} or {credential: NAME}"]


def test_repo_demo_host_file() -> None:
    repo = Path(__file__).resolve().parents[2]
    host = load_host(repo / "demo" / "badged.yaml")
    assert host.config.school == "demo"
    site = host.load_site()
    assert site.card_profile_id == "demo"


def test_a_school_that_mails_needs_a_relay(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    host_file = tmp_path / "badged.yaml"
    host_file.write_text(f"tree: {repo / 'config'}\nschool: emse\n")
    with pytest.raises(ConfigError, match="no smtp: section, and school emse mails its CROUS "
                       "files \\(reinscriptions, primo_entrants, personnels, departs\\)"):
        load_host(host_file).load_site()
    host_file.write_text(f"tree: {repo / 'config'}\nschool: emse\nsmtp: {{host: relay}}\n")
    assert load_host(host_file).load_site().id == "emse"
