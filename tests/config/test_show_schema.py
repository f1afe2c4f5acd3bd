"""`config show` resolves every reference without showing secrets; `config schema` is usable."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from badged.cli import main
from badged.config.model import KINDS

REPO = Path(__file__).resolve().parents[2]


def show(*args: str) -> dict:
    result = CliRunner().invoke(main, ["config", "show", "--tree", str(REPO / "config"), *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_show_emse_resolves_every_reference() -> None:
    data = show("--school", "emse", "--json")
    assert data["school"]["id"] == "emse"
    assert data["comue"]["id"] == "udl" and data["comue"]["name"] == "Université de Lyon"
    assert data["crous"]["mailboxes"]["monetique"] == "monetique@crous-lyon.example.org"
    assert data["crous"]["deadlines"] == {"reinscriptions": "10-30"}
    assert data["card_profile"]["id"] == "lyon-desfire"  # from the COMUE's default
    assert data["tariffs"]["default"] == {"id_company_rate": 78, "id_rate": 99}
    assert set(data["layouts"]) == {"reinscriptions", "primo_entrants", "personnels", "departs"}
    assert data["layouts"]["departs"]["id"] == "crous-default"


def test_show_never_prints_a_secret_value() -> None:
    text = json.dumps(show("--school", "imt-nantes", "--json"))
    assert "<secret: credential crous-api>" in text
    assert not re.search(r"[0-9A-Fa-f]{32}", text)
    douai = json.dumps(show("--school", "imt-douai", "--json"))
    assert "<secret: credential ulnf-uid-read>" in douai


def test_show_yaml_by_default_and_host_school(tmp_path: Path) -> None:
    host = tmp_path / "badged.yaml"
    host.write_text(f"tree: {REPO / 'config'}\nschool: emse\n")
    result = CliRunner().invoke(main, ["--host-config", str(host), "config", "show"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["school"]["id"] == "emse"


def test_show_unknown_school() -> None:
    result = CliRunner().invoke(main, ["config", "show", "--tree", str(REPO / "config"),
                                       "--school", "nope"])
    assert result.exit_code == 1
    assert "unknown school 'nope'" in result.stderr


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_schema_accepts_the_shipped_files(kind: str) -> None:
    result = CliRunner().invoke(main, ["config", "schema", "--kind", kind])
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    files = sorted((REPO / "config" / kind).glob("*.yaml"))
    assert files
    for path in files:
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)


def test_schema_rejects_unknown_keys() -> None:
    schema = json.loads(CliRunner().invoke(main, ["config", "schema", "--kind", "schools"]).stdout)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "x", "colour": "blue"}, schema)


def test_schema_bundle_has_every_kind() -> None:
    bundle = json.loads(CliRunner().invoke(main, ["config", "schema"]).stdout)
    jsonschema.Draft202012Validator.check_schema(bundle)
    assert {*KINDS, "host"} <= set(bundle["$defs"])
