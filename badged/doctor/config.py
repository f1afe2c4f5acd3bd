"""Doctor: the host file and tree, the state and runtime folders, the store's schema."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import sqlite3
import stat
from pathlib import Path

from ..config.errors import ConfigError
from ..config.host import Host, load_host
from ..config.tree import Site
from ..store.db import DB_NAME, latest_migration
from . import Check, fail, ok, warn

SERVICE_USER = "badged"


def load(path: Path, found: list[Check]) -> tuple[Host | None, Site | None]:
    """The host file and its school's tree; a fail line (with every located error) if not."""
    try:
        host = load_host(path)
    except ConfigError as exc:
        found.append(fail("host file", _first(exc), f"fix {path} (badged config validate "
                          "shows every error)"))
        return None, None
    found.append(ok("host file", f"{path} (school {host.config.school}, tree {host.tree})"))
    try:
        site = host.load_site()
    except ConfigError as exc:
        found.append(fail("config tree", _first(exc),
                          f"badged --host-config {path} config validate, then fix the tree"))
        return host, None
    found.append(ok("config tree", f"{host.tree} valid, school {site.id} ({site.school.name})"))
    return host, site


def _first(exc: ConfigError) -> str:
    more = len(exc.issues) - 1
    return str(exc.issues[0]) + (f" (and {more} more)" if more > 0 else "")


def service_owner(daemon_pid: int | None = None) -> tuple[str, str]:
    """The user and group the daemon runs as: the running daemon's, else `badged` where
    that user exists (a rollout), else the user running this command (the demo)."""
    if daemon_pid:
        with contextlib.suppress(OSError, KeyError):
            entry = pwd.getpwuid(Path(f"/proc/{daemon_pid}").stat().st_uid)
            return entry.pw_name, grp.getgrgid(entry.pw_gid).gr_name
    try:
        entry = pwd.getpwnam(SERVICE_USER)
        return entry.pw_name, grp.getgrgid(entry.pw_gid).gr_name
    except KeyError:
        entry = pwd.getpwuid(os.getuid())
        try:
            return entry.pw_name, grp.getgrgid(entry.pw_gid).gr_name
        except KeyError:
            return entry.pw_name, str(entry.pw_gid)


def _names(st: os.stat_result) -> tuple[str, str]:
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return user, group


def directories(host: Host, owner: tuple[str, str]) -> list[Check]:
    user, group = owner
    return [_folder("state dir", host.state_dir, user, group, group_mask=0o077, mode=0o700,
                    creator="StateDirectory="),
            _folder("runtime dir", host.runtime_dir, user, group, group_mask=0o027,
                    mode=0o750, creator="RuntimeDirectory=")]


def _folder(name: str, path: Path, user: str, group: str, *, group_mask: int, mode: int,
            creator: str) -> Check:
    """Owned by the service user; nothing for others, and for the group only `group_mask`
    allows (the runtime folder lets group badged reach the control socket)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return warn(name, f"{path} does not exist yet",
                    f"start badged: systemd makes it ({creator} of the unit)")
    except OSError as exc:
        return fail(name, f"{path}: {exc.strerror}", f"run doctor as root or as {user}")
    if not stat.S_ISDIR(st.st_mode):
        return fail(name, f"{path} is not a folder", "remove it; badged needs a folder there")
    have = stat.S_IMODE(st.st_mode)
    owner, owner_group = _names(st)
    seen = f"{path} {have:04o} {owner}:{owner_group}"
    if owner != user:
        return fail(name, f"{seen}: not owned by {user}", f"chown -R {user}:{group} {path}")
    if have & 0o007 or have & group_mask & 0o070:
        return fail(name, f"{seen}: open to others", f"chmod {mode:04o} {path}")
    return ok(name, seen)


def store(host: Host) -> list[Check]:
    """The store opens (read-only: doctor never migrates) and its schema is current."""
    path = host.state_dir / DB_NAME
    latest = latest_migration()
    if not path.exists():
        return [warn("store", f"{path} does not exist yet",
                     "badged creates it at its first start")]
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o037:
        return [fail("store", f"{path} mode {mode:04o}: readable by others",
                     f"chmod 600 {path}")]
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                                timeout=5)) as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        return [fail("store", f"{path} does not open: {exc}",
                     "check its owner and mode (run doctor as the service user), or "
                     "restore it from a backup")]
    if version > latest:
        return [fail("store", f"{path}: schema {version} is newer than this badged "
                     f"({latest})", "upgrade badged to the version that wrote it")]
    if version < latest:
        return [warn("store", f"{path}: schema {version}, this badged has {latest}",
                     "restart badged: it applies the migrations at start")]
    return [ok("store", f"{path} opens, schema {version} current")]
