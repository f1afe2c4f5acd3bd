"""Doctor: pcscd reachable (its socket, the polkit rule pcsc-lite ≥ 2.0 needs), each
configured reader present, a SAM where the school expects one."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

from ..cards.pcsc import CardConnection, PcscError, list_readers, match_readers
from ..cards.reader_service import is_contactless_atr
from ..config.model import ReaderRole, SamKey
from ..config.tree import Site
from . import Check, fail, ok, skip, warn

DEFAULT_SOCKET = Path("/run/pcscd/pcscd.comm")
POLKIT_DIRS = (Path("/etc/polkit-1/rules.d"), Path("/usr/share/polkit-1/rules.d"))
POLKIT_ACTION = "org.debian.pcsc-lite.access_pcsc"
RULE_FILE = "/etc/polkit-1/rules.d/60-badged-pcscd.rules"


def socket_path() -> Path:
    """The socket libpcsclite talks to: $PCSCLITE_CSOCK_NAME, else pcscd's default."""
    return Path(os.environ.get("PCSCLITE_CSOCK_NAME") or DEFAULT_SOCKET)


def pcscd_version() -> tuple[int, ...] | None:
    """pcscd's version from `pcscd --version`; None when pcscd is not installed here."""
    found = shutil.which("pcscd") or shutil.which("pcscd", path="/usr/sbin:/usr/local/sbin")
    if not found:
        return None
    try:
        out = subprocess.run([found, "--version"], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"version (\d+)\.(\d+)(?:\.(\d+))?", out.stdout + out.stderr)
    return tuple(int(x) for x in m.groups() if x is not None) if m else None


def checks(site: Site, user: str) -> list[Check]:
    sock = _socket(user)
    out = [sock, _polkit(user)]
    if sock.status == "fail":
        out.append(skip("readers", "pcscd is not reachable"))
        return out
    readers, error, who, not_as_user = _list_as(user)
    if error is not None:
        fix = "systemctl start pcscd.socket (and check journalctl -u pcscd)"
        if who == user and user != pwd.getpwuid(os.geteuid()).pw_name:
            fix = (f"let {user} reach {socket_path()} (the modes of its folders), then "
                   "systemctl restart pcscd.socket")
        if "polkit" in error:
            fix = f"install systemd/badged-pcscd.rules as {RULE_FILE}"
        out.append(fail("pcscd", f"not reachable as {who}: {error}", fix))
        out.append(skip("readers", "pcscd is not reachable"))
        return out
    seen = f"reachable as {who} at {socket_path()}, {len(readers)} reader(s): " + (
        ", ".join(readers) or "none")
    version = pcscd_version()
    if not_as_user is not None:
        out.append(warn("pcscd", f"{seen}; not checked as {user}: {not_as_user}",
                        f"let {user} run {sys.executable} (the service's own interpreter)"))
    elif who != user and version is not None and version >= (2, 0):
        out.append(warn("pcscd", f"{seen}; not checked as {user} (polkit may refuse it)",
                        f"run doctor as root to connect as {user}"))
    else:
        out.append(ok("pcscd", seen))
    out += _readers(site, readers)
    return out


def _list_as(user: str) -> tuple[list[str], str | None, str, str | None]:
    """The readers pcscd lists, asked as the service user when we are root (runuser),
    else as ourselves: (readers, error or None, who asked, why not as `user` or None).

    When the probe cannot run as `user` (its interpreter or badged unreadable to it, no
    runuser), we ask as ourselves and say why, so the line never passes for the user's."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() != 0 or user == me:
        return (*_list_here(), me, None)
    runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
    if not runuser:
        return (*_list_here(), me, "runuser not found")
    try:
        out = subprocess.run([runuser, "-u", user, "--", sys.executable, "-m",
                              "badged.doctor.pcsc_probe"], capture_output=True, text=True,
                             timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        why = f"the probe could not run as {user}: {exc}"
    else:
        try:
            answer = json.loads(out.stdout.strip().splitlines()[-1])
            return answer.get("readers", []), answer.get("error"), user, None
        except (ValueError, IndexError, AttributeError):
            last = (out.stderr.strip().splitlines() or ["no answer"])[-1][:200]
            why = f"the probe could not run as {user}: {last}"
    return (*_list_here(), me, why)


def _list_here() -> tuple[list[str], str | None]:
    try:
        return list_readers(), None
    except PcscError as exc:
        return [], str(exc)


def _socket(user: str) -> Check:
    path = socket_path()
    try:
        st = path.stat()
    except FileNotFoundError:
        return fail("pcscd socket", f"{path} does not exist: pcscd is not running",
                    "apt-get install pcscd; systemctl enable --now pcscd.socket")
    except OSError as exc:
        return fail("pcscd socket", f"{path}: {exc.strerror}",
                    f"let {user} reach {path.parent} (pcscd's folder is 0755 by default)")
    if not stat.S_ISSOCK(st.st_mode):
        return fail("pcscd socket", f"{path} is not a socket", "systemctl restart pcscd.socket")
    if not os.access(path, os.R_OK | os.W_OK):
        return fail("pcscd socket", f"{path} mode {stat.S_IMODE(st.st_mode):04o}: not "
                    "writable by this user", "restore pcscd's socket mode (0777): "
                    "systemctl restart pcscd.socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(5)
        try:
            probe.connect(str(path))
        except OSError as exc:
            return fail("pcscd socket", f"nothing answers on {path} ({exc.strerror}): pcscd "
                        "is not running", "systemctl restart pcscd.socket (journalctl -u "
                        "pcscd says why it stopped)")
    return ok("pcscd socket", f"{path} accepts connections")


def _polkit(user: str) -> Check:
    version = pcscd_version()
    if version is None:
        return warn("pcscd polkit", "pcscd is not installed on this host (or says no "
                    "version): cannot tell whether polkit applies", "apt-get install pcscd")
    shown = ".".join(map(str, version))
    if version < (2, 0):
        return ok("pcscd polkit", f"pcsc-lite {shown}: no polkit check (rule not needed)")
    unreadable = []
    for folder in POLKIT_DIRS:
        try:
            files = sorted(folder.glob("*.rules"))
        except OSError:
            unreadable.append(str(folder))
            continue
        for rule in files:
            try:
                text = rule.read_text(errors="replace")
            except OSError:
                unreadable.append(str(rule))
                continue
            if POLKIT_ACTION in text and f'"{user}"' in text:
                return ok("pcscd polkit", f"pcsc-lite {shown}: {rule} lets {user} in")
    if unreadable:
        return warn("pcscd polkit", f"pcsc-lite {shown}: cannot read {', '.join(unreadable)}"
                    f" to find a rule for {user}", "run doctor as root")
    return fail("pcscd polkit", f"pcsc-lite {shown} asks polkit for every client and no "
                f"rule lets {user} in", f"install systemd/badged-pcscd.rules as {RULE_FILE}")


def _readers(site: Site, present: list[str]) -> list[Check]:
    out: list[Check] = []
    known = ", ".join(repr(r) for r in present) or "none"
    rules = site.school.readers
    for rule in rules:
        found = match_readers(rule.name, present)
        name = f"reader {rule.name}"
        if rule.role is ReaderRole.SAM:
            out.append(_sam(name, found, known))
        elif found:
            out.append(ok(name, f"{rule.role.value}: {', '.join(found)}"))
        else:
            out.append(fail(name, f"{rule.role.value}: no reader matches (readers: {known})",
                            "plug the reader in, or correct the rule's name in the school "
                            "file (badged reader list shows the names)"))
    if _profile_uses_sam(site) and not any(r.role is ReaderRole.SAM for r in rules):
        out.append(fail("SAM", "the card profile holds keys in a SAM but the school "
                        "names no reader with role sam",
                        "add {name: <the SAM reader>, role: sam} to the school's readers"))
    if not rules:
        out.append(warn("readers", "the school names no reader",
                        "add readers: rules to the school file"))
    return out


def _sam(name: str, found: list[str], known: str) -> Check:
    if not found:
        return fail(name, f"sam: no reader matches (readers: {known})",
                    "plug the CROUS SAM's reader in, or correct the rule's name")
    for reader in found:
        try:
            with CardConnection(reader) as conn:
                atr = conn.atr
        except PcscError:
            continue
        if not is_contactless_atr(atr):
            return ok(name, f"sam: SAM present in {reader} (ATR {atr.hex().upper()})")
    return fail(name, f"sam: {', '.join(found)} has no SAM inserted",
                "insert the CROUS SAM in its slot (contact side down)")


def _profile_uses_sam(site: Site) -> bool:
    return any(isinstance(ref, SamKey) for app in site.card_profile.applications
               for ref in app.keys.values())
