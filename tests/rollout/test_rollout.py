"""The rollout, for real: `ansible-playbook site.yml` on a fresh Debian 12 booted with systemd.

A machine boots from the cached debootstrap image (machinekit.py; built the first time),
the controller is this venv's ansible-playbook on the host, reaching the machine through
nsenter (connection_plugins/machine_nsenter.py). The playbook rolls out the demo school
with `badged_manage_services: true` and a wheel built from this checkout, as a site
would. Then, in order: the service (Type=notify, READY, watchdog pinged), /metrics, the
file_sd target, `badged` on an operator's PATH (status, doctor) as a member of group
badged, a second run with changed=0, `--check --diff` predicting nothing, a tree change
reloaded without a restart, a broken tree refused with the old tree and service untouched,
and `systemctl kill -s KILL` restarted by systemd.

Needs root (systemd-nspawn), debootstrap and systemd-container (scripts/setup.sh test),
the Debian archive and PyPI. Skipped, with the reason, only where a machine cannot be
booted at all (not root, tools missing); CI runs `.ci/run` as root, where it runs. The
timings of each step are printed at the end of the session.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from machinekit import TIMINGS, Machine, boot_impossible, booted, build_image, image_dir

from badged.demo.runner import DEMO_KEYS

REASON = boot_impossible()
pytestmark = [
    pytest.mark.skipif(REASON is not None, reason=f"rollout test: {REASON}"),
    # First boot of the cache: image ~1.5 min; then packages and pip on a fresh machine.
    pytest.mark.timeout(1500),
]

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
VENV_BIN = Path(sys.executable).parent
HOST = "rollout-debian12"
WHEEL_DIR = "/root/dist"
OPERATOR, VISITOR = "alice", "mallory"  # ("operator" is a Debian system group)


@dataclass
class Run:
    rc: int
    output: str

    @property
    def changed(self) -> int:
        match = re.search(rf"^{HOST}\s*:.*\bchanged=(\d+)", self.output, re.M)
        assert match, f"no PLAY RECAP in the output:\n{self.output}"
        return int(match.group(1))


@dataclass
class Rollout:
    machine: Machine
    base: Path
    tree: Path
    inventory: Path
    vault: Path
    port: int
    runs: dict[str, Run] = field(default_factory=dict)

    def play(self, step: str, *extra: str) -> Run:
        env = dict(os.environ)
        env.update(
            PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            ANSIBLE_CONFIG=str(ANSIBLE / "ansible.cfg"),
            ANSIBLE_CONNECTION_PLUGINS=str(Path(__file__).parent / "connection_plugins"),
            ANSIBLE_HOME=str(self.base / "ansible-home"),
            ANSIBLE_LOCAL_TEMP=str(self.base / "ansible-local"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            NO_COLOR="1",
            # One process per task instead of a copy then a run: the same modules, faster.
            ANSIBLE_PIPELINING="1",
        )
        started = time.monotonic()
        proc = subprocess.run(
            [str(VENV_BIN / "ansible-playbook"), "-i", str(self.inventory), "-e",
             f"@{self.vault}", "site.yml", *extra],
            cwd=ANSIBLE, env=env, capture_output=True, text=True, timeout=900, check=False)
        TIMINGS[f"ansible-playbook: {step}"] = time.monotonic() - started
        run = Run(proc.returncode, proc.stdout + proc.stderr)
        self.runs[step] = run
        return run

    def show(self) -> dict[str, str]:
        props = ("ActiveState", "SubState", "Type", "NotifyAccess", "WatchdogUSec", "MainPID",
                 "NRestarts", "ExecMainStartTimestampMonotonic",
                 "WatchdogTimestampMonotonic", "Result")
        out = self.machine.run(["systemctl", "show", "badged.service",
                                *(f"--property={p}" for p in props)]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self) -> str:
        return self.machine.run(["journalctl", "--unit=badged.service", "--no-pager",
                                 "--output=cat"]).stdout

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            assert r.status == 200
            return r.read().decode()

    def metrics_or_nothing(self) -> str:
        """/metrics, or "" while the daemon is not listening (during a restart)."""
        try:
            return self.metrics()
        except OSError:
            return ""

    def tree_digest(self) -> str:
        """Paths, modes, owners and contents of /etc/badged and the unit: what a refused run
        must leave as it was."""
        return self.machine.sh(
            "cd /etc && find badged systemd/system/badged.service* -printf '%p %m %u:%g %l\\n'"
            " | sort && find badged systemd/system/badged.service* -type f -print0 | sort -z"
            " | xargs -0 sha256sum").stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_wheel(dest: Path) -> Path:
    """A wheel of this checkout, built from a copy (no build/ or egg-info left here)."""
    src = dest / "src"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "badged", src / "badged",
                    ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--wheel-dir", str(dest / "dist"), str(src)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = (dest / "dist").glob("badged-*.whl")
    return wheel


def wait_for(what: str, predicate, timeout: float = 60.0, every: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def edit_school(tree: Path, old: str, new: str) -> None:
    school = tree / "schools" / "demo.yaml"
    text = school.read_text()
    assert old in text, f"{old!r} not in {school}"
    school.write_text(text.replace(old, new, 1))


@pytest.fixture(scope="module")
def rollout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rollout]:
    """A booted machine with the demo school rolled out (first run), then run again."""
    base = tmp_path_factory.mktemp("rollout")
    began = time.monotonic()
    cached = (image_dir() / ".complete").exists()
    build_image()
    TIMINGS["image (cached)" if cached else "image (built now)"] = time.monotonic() - began

    started = time.monotonic()
    wheel = build_wheel(base / "wheel")
    TIMINGS["wheel of this checkout"] = time.monotonic() - started

    tree = base / "config"
    shutil.copytree(REPO / "config", tree)
    port = free_port()
    # Test-only stand-in of a site's vault file, given as `-e @file`.
    vault = base / "vault-dummy.yml"
    vault.write_text(yaml.safe_dump({
        "vault_badged_demo_crous_read": DEMO_KEYS["demo-crous-read"]}))
    inventory = base / "inventory.yml"

    started = time.monotonic()
    with booted(base / "console.log") as machine:
        TIMINGS["boot (systemd running)"] = time.monotonic() - started
        machine.run(["mkdir", "-p", WHEEL_DIR])
        machine.write(f"{WHEEL_DIR}/{wheel.name}", wheel.read_bytes())
        inventory.write_text(yaml.safe_dump({"badged": {
            "hosts": {HOST: {
                "ansible_host": str(machine.pid1),
                "ansible_connection": "machine_nsenter",
                "ansible_python_interpreter": "/usr/bin/python3",
            }},
            "vars": {
                "badged_school": "demo",
                "badged_config_src": str(tree),
                "badged_pip_spec": f"{WHEEL_DIR}/{wheel.name}",
                "badged_manage_services": True,
                "badged_metrics_listen": f"127.0.0.1:{port}",
                # The demo card profile's key (test data), as a site would give a secret.
                "badged_credentials": {
                    "demo-crous-read": {"content": "{{ vault_badged_demo_crous_read }}"}},
            },
        }}))
        r = Rollout(machine, base, tree, inventory, vault, port)
        r.play("first run")
        assert r.runs["first run"].rc == 0, f"first run failed:\n{r.runs['first run'].output}"
        r.play("second run")
        r.play("--check --diff", "--check", "--diff")
        yield r
        started = time.monotonic()
    TIMINGS["power off"] = time.monotonic() - started
    TIMINGS["whole rollout test"] = time.monotonic() - began


def test_service_runs_notify_with_its_watchdog(rollout: Rollout) -> None:
    first = rollout.runs["first run"]
    assert first.changed > 0, first.output
    show = rollout.show()
    assert (show["ActiveState"], show["SubState"]) == ("active", "running"), show
    assert show["Type"] == "notify", show
    assert show["NotifyAccess"] == "main", show
    assert show["WatchdogUSec"] == "30s", show
    # The daemon pings the watchdog from its first loop on: systemd records the last ping.
    started = int(show["ExecMainStartTimestampMonotonic"])
    wait_for("a watchdog ping", lambda: int(rollout.show()["WatchdogTimestampMonotonic"])
             >= started, timeout=30)
    # READY=1 reached systemd (a Type=notify unit is "Started" only then) after the
    # daemon's own ready line.
    journal = rollout.journal()
    assert re.search(r"^Started badged\.service|^Started badged ", journal, re.M), journal
    assert re.search(r"school demo .* ready, metrics on 127\.0\.0\.1:\d+", journal), journal
    assert "Traceback" not in journal, journal


def test_metrics_answer_and_the_file_sd_target_names_them(rollout: Rollout) -> None:
    metrics = rollout.metrics()
    assert re.search(r'^badged_build_info\{version="[^"]+"\} 1\.0$', metrics, re.M), metrics
    target = yaml.safe_load(rollout.machine.read("/etc/prometheus/file_sd/badged-demo.yml"))
    assert target == [{"targets": [f"127.0.0.1:{rollout.port}"],
                       "labels": {"school": "demo"}}]


def test_badged_on_path_for_members_of_group_badged(rollout: Rollout) -> None:
    m = rollout.machine
    m.run(["useradd", "--groups", "badged", "--shell", "/bin/bash", OPERATOR])
    m.run(["useradd", "--shell", "/bin/bash", VISITOR])
    assert m.run(["readlink", "/usr/local/bin/badged"]).stdout.strip() == \
        "/opt/badged/venv/bin/badged"

    # A login shell's PATH, the default host file: what an operator types.
    status = m.run(["runuser", "-l", OPERATOR, "-c", "badged status --json"], check=False)
    assert "Traceback" not in status.stderr, status.stderr
    state = json.loads(status.stdout)
    assert state["pid"] == int(rollout.show()["MainPID"])
    # Degraded (exit 1): pcscd answers the sandboxed service, but the machine has no reader.
    assert status.returncode == 1, status.stdout + status.stderr
    assert "reader Virtual PCD 00 00 missing" in state["problems"], state["problems"]
    assert "pcscd down" not in state["problems"], state["problems"]

    refused = m.run(["runuser", "-l", VISITOR, "-c", "badged status"], check=False)
    assert refused.returncode != 0, refused.stdout
    assert "Traceback" not in refused.stderr, refused.stderr

    doctor = m.run(["runuser", "-l", OPERATOR, "-c", "badged doctor --json"], check=False)
    assert doctor.returncode in (0, 1), doctor.stdout + doctor.stderr
    verdicts = {c["check"]: c for c in json.loads(doctor.stdout)["checks"]}
    # Up and answering; a warning only because it is degraded (no reader, as status says).
    daemon = verdicts["daemon"]
    assert daemon["status"] in ("ok", "warn"), daemon
    assert daemon["detail"].startswith(f"pid {state['pid']},"), daemon
    assert verdicts["pcscd socket"]["status"] == "ok", verdicts["pcscd socket"]
    # The machine has pcscd but no reader: each of the school's readers fails, with a fix.
    readers = [c for c in verdicts.values() if "no reader matches" in c["detail"]]
    assert readers, verdicts
    assert all(c["status"] == "fail" and c["fix"] for c in readers), readers
    assert doctor.returncode == 1
    # The role ran it at the end of the first run and showed its lines.
    first = rollout.runs["first run"].output
    assert "TASK [badged : Run badged doctor]" in first, first
    assert re.search(r"(ok|warn)\s+daemon: pid \d+", first), first


def test_second_run_changes_nothing(rollout: Rollout) -> None:
    second = rollout.runs["second run"]
    assert second.rc == 0, second.output
    assert second.changed == 0, f"second run changed something:\n{second.output}"


def test_check_diff_after_an_unchanged_run_predicts_nothing(rollout: Rollout) -> None:
    dry = rollout.runs["--check --diff"]
    assert dry.rc == 0, dry.output
    assert dry.changed == 0, f"--check --diff predicted a change:\n{dry.output}"
    assert not re.search(r"^[-+]{3} (before|after)", dry.output, re.M), dry.output
    assert "RUNNING HANDLER" not in dry.output, dry.output


def test_tree_change_reloads_without_restart(rollout: Rollout) -> None:
    before = rollout.show()
    edit_school(rollout.tree, "low_threshold: 10", "low_threshold: 12")

    run = rollout.play("tree change")

    assert run.rc == 0, run.output
    assert run.changed > 0, run.output
    assert "RUNNING HANDLER [badged : Reload badged]" in run.output, run.output
    assert "RUNNING HANDLER [badged : Restart badged]" not in run.output, run.output
    wait_for("the reloaded threshold in /metrics", lambda: re.search(
        r"^badged_card_stock_low_threshold 12\.0$", rollout.metrics_or_nothing(), re.M),
        timeout=30)
    after = rollout.show()
    assert after["MainPID"] == before["MainPID"], (before, after)
    assert after["NRestarts"] == before["NRestarts"], (before, after)
    assert after["ActiveState"] == "active", after
    assert re.search(r"^badged_config_last_reload_successful 1\.0$", rollout.metrics(), re.M)
    assert "config reloaded: school demo" in rollout.journal()


def test_broken_tree_stops_the_play_and_touches_nothing(rollout: Rollout) -> None:
    school = rollout.tree / "schools" / "demo.yaml"
    line = len(school.read_text().splitlines()) + 1
    original = school.read_text()
    school.write_text(original + "bogus_key: 1\n")
    before, digest = rollout.show(), rollout.tree_digest()
    try:
        run = rollout.play("broken tree")
    finally:
        school.write_text(original)

    assert run.rc != 0, run.output
    assert f"{school}:{line}:1: bogus_key" in run.output, run.output
    assert "nothing was installed" in run.output
    assert "RUNNING HANDLER" not in run.output, run.output
    assert rollout.tree_digest() == digest
    after = rollout.show()
    assert (after["MainPID"], after["NRestarts"]) == (before["MainPID"], before["NRestarts"])
    assert after["ActiveState"] == "active", after
    assert re.search(r"^badged_card_stock_low_threshold 12\.0$", rollout.metrics(), re.M)


def test_sigkill_is_restarted_by_systemd(rollout: Rollout) -> None:
    before = rollout.show()
    started = time.monotonic()

    # The main process itself, as the kernel's OOM killer or an operator would: `systemctl
    # kill` goes through systemd's cgroup walk, which failed once under load with EIO.
    rollout.machine.run(["/bin/sh", "-c", 'kill -KILL "$1"', "sh", before["MainPID"]])

    def restarted() -> dict[str, str] | None:
        now = rollout.show()
        up = now["MainPID"] not in ("0", before["MainPID"]) and now["SubState"] == "running"
        return now if up else None

    after = wait_for("systemd to restart badged (RestartSec=10s)", restarted, timeout=90)
    TIMINGS["SIGKILL → running again"] = time.monotonic() - started
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1, (before, after)
    wait_for("/metrics after the restart",
             lambda: "badged_build_info" in rollout.metrics_or_nothing(), timeout=30)
    assert "Main process exited, code=killed, status=9/KILL" in rollout.journal()
