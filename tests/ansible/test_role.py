"""The Ansible role badged, for real: ansible-lint, and the role run on localhost.

The role runs into a temporary root (`badged_root`) with `badged_manage_services: false`
(no package, user or systemd action on the CI machine) and `badged_install: false` (the
tree is validated by this repository's own `badged`), with dummy secrets from a vars file
written here. ansible-core and ansible-lint must be installed in the venv (scripts/setup.sh
does it): a missing one is a failure, not a skip.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from badged.config.host import load_host
from badged.config.model import CredentialSecret

# A playbook run takes ~20 s here (about 40 module runs of ~0.4 s each).
pytestmark = pytest.mark.timeout(600)

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
ROLE = ANSIBLE / "roles" / "badged"
VENV_BIN = Path(sys.executable).parent
SCHOOLS = ("emse", "imt-nantes", "imt-douai")

SMTP_PASSWORD = "dummy-smtp-password"
CROUS_API_SECRET = "dummy-crous-api-secret"
SITE_TOKEN = "dummy-site-token"
CROUS_READ_KEY = "00112233445566778899AABBCCDDEEFF"


def tool(name: str) -> str:
    """An Ansible executable of the venv (or PATH), else a clear failure."""
    for candidate in (VENV_BIN / name, shutil.which(name)):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.fail(
        f"{name} not found (neither in {VENV_BIN} nor in PATH): install ansible-core and "
        "ansible-lint in the venv (scripts/setup.sh test does it)",
        pytrace=False,
    )


def ansible_env(home: Path) -> dict[str, str]:
    """Offline, colourless, every Ansible and ansible-lint file under `home`."""
    env = dict(os.environ)
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        ANSIBLE_CONFIG=str(ANSIBLE / "ansible.cfg"),
        ANSIBLE_HOME=str(home / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(home / "ansible-local"),
        ANSIBLE_REMOTE_TEMP=str(home / "ansible-remote"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_LINT_SKIP_SCHEMA_UPDATE="1",
        NO_COLOR="1",
        XDG_CACHE_HOME=str(home / "cache"),
        TMPDIR=str(home / "tmp"),
    )
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    return env


@dataclass
class Run:
    rc: int
    output: str

    @property
    def changed(self) -> int:
        match = re.search(r"^localhost\s*:.*\bchanged=(\d+)", self.output, re.M)
        assert match, f"no PLAY RECAP in the output:\n{self.output}"
        return int(match.group(1))


class Site:
    """A temporary install root, the vars file of dummy secrets and the test playbook."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.root.mkdir()
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.group = grp.getgrgid(os.getgid()).gr_name
        # Test-only stand-ins of the vault variables, and a secret given as a file.
        self.vault = base / "vault-dummy.yml"
        self.vault.write_text(yaml.safe_dump({
            "vault_badged_smtp_password": SMTP_PASSWORD,
            "vault_badged_site_token": SITE_TOKEN,
            "vault_badged_key_crous_read": CROUS_READ_KEY,
        }))
        self.crous_api_file = base / "crous-api.secret"
        self.crous_api_file.write_text(CROUS_API_SECRET)
        self.playbook = base / "playbook.yml"
        self.write_playbook(vault=self.vault)

    def write_playbook(self, vault: Path) -> None:
        play = {
            "name": "Install badged into a temporary root",
            "hosts": "all",
            "gather_facts": False,
            "vars_files": [str(vault)],
            "vars": {
                "ansible_python_interpreter": sys.executable,
                "badged_root": str(self.root),
                "badged_manage_services": False,
                "badged_install": False,
                "badged_cli": str(VENV_BIN / "badged"),
                "badged_school": "emse",
                "badged_config_src": str(REPO / "config"),
                "badged_metrics_listen": "127.0.0.1:8790",
                "badged_smtp": {"host": "smtp.emse.example.org", "port": 587,
                                "starttls": True, "username": "badged"},
                "badged_credentials": {
                    "smtp": {"content": "{{ vault_badged_smtp_password }}"},
                    "crous-api": {"src": str(self.crous_api_file)},
                    "site-token": {"content": "{{ vault_badged_site_token }}"},
                },
                "badged_keys": {"crous-read": {"content": "{{ vault_badged_key_crous_read }}"}},
                "badged_prometheus_labels": {"site": "test"},
                "badged_owner": self.user,
                "badged_owner_group": self.group,
                "badged_group": self.group,
            },
            "roles": [{"role": str(ROLE)}],
        }
        self.playbook.write_text(yaml.safe_dump([play], sort_keys=False))

    def run(self, *extra: str) -> Run:
        proc = subprocess.run(
            [tool("ansible-playbook"), "-i", "localhost,", "-c", "local",
             str(self.playbook), *extra],
            env=ansible_env(self.base), capture_output=True, text=True, timeout=500,
            check=False,
        )
        return Run(proc.returncode, proc.stdout + proc.stderr)

    def etc(self, *parts: str) -> Path:
        return self.root.joinpath("etc", "badged", *parts)


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every path under root → (mode, content): what a failed run must leave as it was."""
    return {
        str(p.relative_to(root)): (p.lstat().st_mode, p.read_bytes() if p.is_file() else b"")
        for p in sorted(root.rglob("*"))
    }


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Site, Run, Run]:
    """The role run twice into a fresh root: (site, first run, second run)."""
    tool("ansible-playbook")
    site = Site(tmp_path_factory.mktemp("ansible"))
    first = site.run()
    assert first.rc == 0, f"first run failed:\n{first.output}"
    second = site.run()
    assert second.rc == 0, f"second run failed:\n{second.output}"
    return site, first, second


def test_check_diff_after_an_unchanged_run_predicts_nothing(
    site: tuple[Site, Run, Run],
) -> None:
    s, _, _ = site
    before = snapshot(s.root)

    dry = s.run("--check", "--diff")

    assert dry.rc == 0, dry.output
    assert dry.changed == 0, f"--check --diff predicted a change:\n{dry.output}"
    assert not re.search(r"^[-+]{3} (before|after)", dry.output, re.M), dry.output
    assert snapshot(s.root) == before


def test_ansible_lint_production_profile(tmp_path: Path) -> None:
    proc = subprocess.run(
        [tool("ansible-lint"), "--profile", "production", "--offline", "--nocolor",
         "ansible/"],
        cwd=REPO, env=ansible_env(tmp_path), capture_output=True, text=True, timeout=300,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert proc.stdout.strip() == "", f"ansible-lint reported violations:\n{output}"
    assert "0 failure(s), 0 warning(s)" in proc.stderr, output


def test_argument_specs_type_and_document_every_variable() -> None:
    """meta/argument_specs.yml covers exactly the role's variables (defaults/main.yml)."""
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    options = spec["argument_specs"]["main"]["options"]
    assert set(options) == set(defaults)
    for name, option in options.items():
        assert option.get("type"), name
        assert option.get("description"), name
        if "default" in option:
            assert option["default"] == defaults[name], name


def test_files_and_modes(site: tuple[Site, Run, Run]) -> None:
    s, _, _ = site
    config = s.etc("config")
    source = {str(p.relative_to(REPO / "config")) for p in (REPO / "config").rglob("*")}
    installed = {str(p.relative_to(config)) for p in config.rglob("*")}
    assert installed == source
    for path in [config, *config.rglob("*")]:
        assert mode(path) == (0o750 if path.is_dir() else 0o640), path
        assert (path.stat().st_uid, path.stat().st_gid) == (os.getuid(), os.getgid()), path
    for rel in installed:
        if (config / rel).is_file():
            assert (config / rel).read_bytes() == (REPO / "config" / rel).read_bytes(), rel

    assert mode(s.etc()) == 0o755
    assert mode(s.etc("badged.yaml")) == 0o640

    creds = s.etc("credentials")
    assert mode(creds) == 0o700
    assert mode(creds / "keys") == 0o700
    expected_creds = {
        "smtp": SMTP_PASSWORD, "crous-api": CROUS_API_SECRET, "site-token": SITE_TOKEN,
        "keys/crous-read": CROUS_READ_KEY,
    }
    found = {str(p.relative_to(creds)) for p in creds.rglob("*") if p.is_file()}
    assert found == set(expected_creds)
    for rel, content in expected_creds.items():
        assert mode(creds / rel) == 0o600, rel
        assert (creds / rel).read_text() == content, rel

    unit = s.root / "etc/systemd/system/badged.service"
    assert unit.read_bytes() == (REPO / "systemd/badged.service").read_bytes()
    assert mode(unit) == 0o644
    dropin = s.root / "etc/systemd/system/badged.service.d/50-ansible-credentials.conf"
    assert mode(dropin) == 0o644
    loads = [line for line in dropin.read_text().splitlines() if line.startswith("Load")]
    assert loads == ["LoadCredential=site-token:/etc/badged/credentials/site-token"]
    rule = s.root / "etc/polkit-1/rules.d/60-badged-pcscd.rules"
    assert rule.read_bytes() == (REPO / "systemd/badged-pcscd.rules").read_bytes()
    assert mode(rule) == 0o644

    # badged on the operators' PATH: a link to the venv's entry point, by its final path.
    link = s.root / "usr/local/bin/badged"
    assert link.is_symlink()
    assert str(link.readlink()) == "/opt/badged/venv/bin/badged"

    # Everything under badged_root, nothing else written there, no scratch folder left.
    top = {p.name for p in s.root.iterdir()}
    assert top == {"etc", "usr"}
    assert sorted((s.base / "tmp").iterdir()) == []


def test_prometheus_file_sd_target(site: tuple[Site, Run, Run], tmp_path: Path) -> None:
    """One file per school, the school as a label, read by Prometheus' own checker."""
    s, _, _ = site
    target = s.root / "etc/prometheus/file_sd/badged-emse.yml"
    assert mode(target) == 0o644
    assert yaml.safe_load(target.read_text()) == [
        {"targets": ["127.0.0.1:8790"], "labels": {"school": "emse", "site": "test"}}]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"scrape_configs": [{
        "job_name": "badged", "file_sd_configs": [{"files": [str(target)]}]}]}))
    proc = subprocess.run([tool("promtool"), "check", "config", str(config)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_file_sd_on_another_host_refuses_a_loopback_address(tmp_path: Path) -> None:
    """Prometheus elsewhere cannot scrape 127.0.0.1: refused before anything is written."""
    s = Site(tmp_path)

    run = s.run("-e", json.dumps({"badged_prometheus_host": "prometheus.example.org"}))

    assert run.rc != 0, run.output
    assert ("the metrics listen on 127.0.0.1:8790 (loopback), which the Prometheus host "
            "prometheus.example.org cannot scrape") in " ".join(run.output.split()), run.output
    assert sorted(s.root.iterdir()) == []


def test_host_file_is_loaded_by_badged(site: tuple[Site, Run, Run]) -> None:
    s, _, _ = site
    host = load_host(s.etc("badged.yaml"))
    assert host.config.school == "emse"
    # The contents name the final paths, not the install root.
    assert host.tree == Path("/etc/badged/config")
    assert host.state_dir == Path("/var/lib/badged")
    assert host.runtime_dir == Path("/run/badged")
    assert host.config.log_level == "INFO"
    assert host.config.smtp is not None
    assert host.config.smtp.host == "smtp.emse.example.org"
    assert host.config.smtp.username == "badged"
    assert isinstance(host.config.smtp.password, CredentialSecret)
    assert host.config.smtp.password.credential == "smtp"
    assert host.config.metrics_listen == "127.0.0.1:8790"
    assert SMTP_PASSWORD not in s.etc("badged.yaml").read_text()


def test_first_run_installs_second_run_changes_nothing(site: tuple[Site, Run, Run]) -> None:
    _, first, second = site
    assert first.changed > 0, first.output
    assert second.changed == 0, f"second run changed something:\n{second.output}"
    # Secrets never reach the output.
    for secret in (SMTP_PASSWORD, CROUS_API_SECRET, SITE_TOKEN, CROUS_READ_KEY):
        assert secret not in first.output
        assert secret not in second.output


def test_bad_tree_fails_and_leaves_the_installed_tree(
    site: tuple[Site, Run, Run], tmp_path: Path,
) -> None:
    s, _, _ = site
    bad = tmp_path / "bad-tree"
    shutil.copytree(REPO / "config", bad)
    school = bad / "schools" / "emse.yaml"
    line = len(school.read_text().splitlines()) + 1
    with school.open("a") as f:
        f.write("bogus_key: 1\n")
    before = snapshot(s.root)

    run = s.run("-e", json.dumps({"badged_config_src": str(bad)}))

    assert run.rc != 0, run.output
    assert f"{school}:{line}:1: bogus_key" in run.output, run.output
    assert "nothing was installed" in run.output
    assert snapshot(s.root) == before
    assert sorted((s.base / "tmp").iterdir()) == []


def test_missing_vault_variable_is_named(tmp_path: Path) -> None:
    """The role's argument check (first task) names the undefined vault variable."""
    s = Site(tmp_path)
    partial = tmp_path / "vault-partial.yml"
    partial.write_text(yaml.safe_dump({"vault_badged_site_token": SITE_TOKEN,
                                       "vault_badged_key_crous_read": CROUS_READ_KEY}))
    s.write_playbook(vault=partial)

    run = s.run()

    assert run.rc != 0, run.output
    assert "'vault_badged_smtp_password' is undefined" in run.output, run.output
    assert sorted(s.root.iterdir()) == []


def test_secret_without_value_is_named(tmp_path: Path) -> None:
    s = Site(tmp_path)

    run = s.run("-e", json.dumps({"badged_keys": {"crous-read": {"contents": "typo"}}}))

    assert run.rc != 0, run.output
    assert "no value for the secret(s) keys/crous-read" in run.output, run.output
    assert "ansible-vault" in run.output
    assert sorted(s.root.iterdir()) == []


def test_argument_specs_refuse_a_bad_value(tmp_path: Path) -> None:
    s = Site(tmp_path)

    run = s.run("-e", json.dumps({"badged_log_level": "VERBOSE", "badged_install": "maybe"}))

    assert run.rc != 0, run.output
    assert "badged_log_level must be one of: DEBUG, INFO, WARNING, ERROR" in run.output, \
        run.output
    assert "badged_install" in run.output and "bool" in run.output, run.output
    assert sorted(s.root.iterdir()) == []


@pytest.mark.parametrize("school", SCHOOLS)
def test_example_inventory(school: str, tmp_path: Path) -> None:
    """Each example school: its host, its school id, secrets only as vault variables."""
    inventory = ANSIBLE / "inventories" / school
    proc = subprocess.run(
        [tool("ansible-inventory"), "-i", str(inventory), "--host",
         f"badges.{school}.example.org"],
        env=ansible_env(tmp_path), capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    host_vars = json.loads(proc.stdout)
    assert host_vars["badged_school"] == school
    assert (REPO / "config" / "schools" / f"{school}.yaml").is_file()
    secrets = [*host_vars.get("badged_credentials", {}).values(),
               *host_vars.get("badged_keys", {}).values()]
    assert secrets, "an example school without any secret"
    for secret in secrets:
        assert re.fullmatch(r"\{\{ vault_badged_\w+ \}\}", secret["content"]), secret
    assert not any(key.startswith("vault_") for key in host_vars)
