"""systemd/badged.service and systemd/badged-pcscd.rules, checked with systemd's own tools.

`systemd-analyze` must be installed (package systemd); a missing tool is a failure, not a
skip, because CI installs it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "badged.service"
POLKIT_RULE = REPO / "systemd" / "badged-pcscd.rules"

MAX_EXPOSURE = 1.5
HOST_CONFIG = "/etc/badged/badged.yaml"
BADGED = "/opt/badged/venv/bin/badged"

# Where the host's systemd keeps its vendor units (targets the unit depends on).
SYSTEM_UNIT_DIRS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail(
            "systemd-analyze not found in PATH: install the 'systemd' package "
            "(apt-get install --no-install-recommends systemd)",
            pytrace=False,
        )
    return path


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections → [(key, value)] in order; keys may repeat (LoadCredential=, …)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"line continuations are not expected: {raw!r}"
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"directive outside a section: {raw!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a KEY=VALUE line: {raw!r}"
        current.append((key.strip(), value.strip()))
    return sections


def values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in section if k == key]


def single(section: list[tuple[str, str]], key: str) -> str:
    found = values(section, key)
    assert len(found) == 1, f"{key}= expected once, found {found}"
    return found[0]


def exec_binaries(unit: dict[str, list[tuple[str, str]]]) -> set[str]:
    """First word of every Exec*= command line, without systemd's prefixes (-@:+!)."""
    binaries = set()
    for key, value in unit["Service"]:
        if key.startswith("Exec") and value:
            binaries.add(value.split()[0].lstrip("-@:+!"))
    return binaries


def make_root(tmp_path: Path) -> Path:
    """A throwaway root for `systemd-analyze verify --root=`: the unit, the host's vendor
    units (targets), and an executable stub for every binary the unit runs, so that
    verify's "is not executable" check passes without installing badged."""
    root = tmp_path / "root"
    vendor = next((d for d in SYSTEM_UNIT_DIRS if (d / "multi-user.target").exists()), None)
    assert vendor is not None, f"no systemd vendor unit directory in {SYSTEM_UNIT_DIRS}"
    shutil.copytree(vendor, root / "usr/lib/systemd/system", symlinks=True)
    unit_dir = root / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    shutil.copy(UNIT, unit_dir / UNIT.name)
    for binary in exec_binaries(parse_unit(UNIT)):
        stub = root / binary.lstrip("/")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    return root


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def test_verify_prints_nothing(tmp_path):
    root = make_root(tmp_path)
    proc = run([systemd_analyze(), "verify", f"--root={root}", UNIT.name])
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", ""), (
        f"systemd-analyze verify must print nothing:\n{proc.stdout}{proc.stderr}"
    )


def test_verify_reports_problems(tmp_path):
    """The verify set-up is not blind: an unknown directive is reported."""
    root = make_root(tmp_path)
    broken = root / "etc/systemd/system" / UNIT.name
    broken.write_text(UNIT.read_text().replace("[Service]\n", "[Service]\nNoSuchSetting=1\n"))
    proc = run([systemd_analyze(), "verify", f"--root={root}", UNIT.name])
    assert "NoSuchSetting" in proc.stdout + proc.stderr


def test_security_exposure_at_most_1_5():
    # systemd 252: --threshold= is an integer in tenths (exposure 1.5 → 15).
    threshold = round(MAX_EXPOSURE * 10)
    proc = run(
        [
            systemd_analyze(),
            "security",
            "--offline=true",
            "--no-pager",
            f"--threshold={threshold}",
            str(UNIT),
        ]
    )
    output = proc.stdout + proc.stderr
    match = re.search(r"Overall exposure level for badged\.service: (\d+\.\d)", output)
    assert match, f"no overall exposure in systemd-analyze security output:\n{output}"
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE, f"exposure {exposure} > {MAX_EXPOSURE}:\n{output}"
    assert proc.returncode == 0, f"--threshold={threshold} rejected the unit:\n{output}"


def test_unit_contract():
    unit = parse_unit(UNIT)
    service = unit["Service"]
    assert single(service, "Type") == "notify"
    assert single(service, "NotifyAccess") == "main"
    assert single(service, "WatchdogSec") == "30"
    assert single(service, "Restart") == "on-failure"
    assert single(service, "User") == "badged"
    assert single(service, "Group") == "badged"
    assert "DynamicUser" not in dict(service)
    validate = f"{BADGED} --host-config {HOST_CONFIG} config validate"
    assert single(service, "ExecStartPre") == validate
    assert single(service, "ExecStart") == f"{BADGED} --host-config {HOST_CONFIG} run"
    assert single(service, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert single(service, "UMask") == "0077"
    assert single(service, "StateDirectory") == "badged"
    assert single(service, "StateDirectoryMode") == "0700"
    assert single(service, "RuntimeDirectory") == "badged"
    assert single(service, "RuntimeDirectoryMode") == "0750"
    assert single(service, "ConfigurationDirectory") == "badged"
    assert single(service, "LogsDirectory") == "badged"
    credentials = dict(v.split(":", 1) for v in values(service, "LoadCredential"))
    assert credentials["smtp"] == "/etc/badged/credentials/smtp"
    assert credentials["crous-api"] == "/etc/badged/credentials/crous-api"
    assert credentials["keys"] == "/etc/badged/credentials/keys"
    for key, expected in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "PrivateUsers": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "MemoryDenyWriteExecute": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "SystemCallArchitectures": "native",
        "ProtectProc": "invisible",
        "ProcSubset": "pid",
        "DevicePolicy": "closed",
    }.items():
        assert single(service, key) == expected, key
    assert values(service, "SystemCallFilter") == ["@system-service", "~@privileged @resources"]
    assert single(unit["Install"], "WantedBy") == "multi-user.target"


def test_relaxed_directives_are_explained():
    """The directives that stay below the maximum hardening carry a comment just above."""
    lines = UNIT.read_text().splitlines()
    for key in ("RestrictAddressFamilies", "PrivateUsers", "ProcSubset", "PrivateDevices"):
        index = next(i for i, line in enumerate(lines) if line.startswith(f"{key}="))
        assert lines[index - 1].startswith("#"), f"{key}= has no comment saying why"


# --- polkit rule (JavaScript, evaluated by polkitd; checked structurally, no JS engine) ---


def strip_js(source: str) -> tuple[str, list[str]]:
    """Remove comments and string literals; return the code skeleton and the strings."""
    code, strings = [], []
    i = 0
    while i < len(source):
        if source.startswith("//", i):
            i = source.find("\n", i) if "\n" in source[i:] else len(source)
        elif source.startswith("/*", i):
            end = source.find("*/", i + 2)
            assert end >= 0, "unterminated /* comment"
            i = end + 2
        elif source[i] in "\"'":
            quote, j = source[i], i + 1
            while j < len(source) and source[j] != quote:
                assert source[j] != "\n", "newline in a string literal"
                j += 2 if source[j] == "\\" else 1
            assert j < len(source), "unterminated string literal"
            strings.append(source[i + 1 : j])
            code.append('""')
            i = j + 1
        else:
            code.append(source[i])
            i += 1
    return "".join(code), strings


def test_polkit_rule_structure():
    code, strings = strip_js(POLKIT_RULE.read_text())
    stack = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for char in code:
        if char in "([{":
            stack.append(char)
        elif char in pairs:
            assert stack and stack.pop() == pairs[char], f"unbalanced {char!r}"
    assert not stack, f"unclosed {stack}"
    compact = re.sub(r"\s+", " ", code).strip()
    assert compact.startswith("polkit.addRule(function (action, subject) {")
    assert compact.endswith("});")
    assert compact.count("polkit.addRule(") == 1
    assert "return polkit.Result.YES;" in compact
    assert "subject.user ===" in compact
    assert sorted(strings) == [
        "badged",
        "org.debian.pcsc-lite.access_card",
        "org.debian.pcsc-lite.access_pcsc",
    ]
