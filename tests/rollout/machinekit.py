"""A fresh Debian 12 server booted with systemd as PID 1, for the rollout test.

The image: `debootstrap bookworm` (required and important packages, plus python3, sudo,
dbus and ca-certificates: what a minimal server installed from the Debian installer has),
built once from the Debian archive and kept unpacked under the cache folder
(`BADGED_ROLLOUT_CACHE`, default /var/cache/badged-rollout). A machine boots that tree
with `systemd-nspawn --boot --volatile=overlay`: the image stays read-only and every change
goes to a tmpfs that is thrown away at power-off, so each boot is a fresh server, the boot
takes seconds, and several machines can share one image. The machine shares the host's
network (the package registries, and its metrics port seen from the host on loopback).

Downloads are kept between machines, the way a caching proxy would. pip's cache
(`<cache>/pip-cache`, safe for concurrent use) is bound into each machine. apt's archive
folder has a lock that two machines must not share: each machine sees `<cache>/apt-archives`
read-only under its own writable layer (an overlay), and the `.deb` files it downloaded are
copied back into the cache at power-off.

By hand (as root): `python3 tests/rollout/machinekit.py build` builds the image;
`python3 tests/rollout/machinekit.py shell` boots a machine and opens a shell in it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

SUITE = "bookworm"
# Bump when the recipe below changes: a new folder is built, the old one can be removed.
IMAGE_VERSION = 1
INCLUDE = ("systemd", "systemd-sysv", "dbus", "python3", "sudo", "ca-certificates")
HOSTNAME = "rollout-debian12"
APT_ARCHIVES = "/var/cache/apt/archives"
PATH_IN = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY = "http://deb.debian.org/debian-security"

# Step → seconds, filled by the rollout test and printed at the end of the session.
TIMINGS: dict[str, float] = {}


class MachineError(Exception):
    """The machine could not be built, booted or reached."""


def cache_dir() -> Path:
    return Path(os.environ.get("BADGED_ROLLOUT_CACHE", "/var/cache/badged-rollout"))


def image_dir() -> Path:
    return cache_dir() / f"debian-{SUITE}-v{IMAGE_VERSION}"


def boot_impossible() -> str | None:
    """Why a machine cannot be booted here, or None. Only facts of this host count."""
    if os.geteuid() != 0:
        return "booting a machine with systemd-nspawn needs root (CI runs .ci/run as root)"
    if sys.platform != "linux":
        return "systemd-nspawn needs Linux"
    missing = [t for t in ("debootstrap", "systemd-nspawn", "nsenter") if not shutil.which(t)]
    if missing:
        return (f"{', '.join(missing)} not installed: run scripts/setup.sh test "
                "(debootstrap, systemd-container)")
    if not any(Path(p).exists() for p in ("/sys/fs/cgroup/cgroup.controllers",
                                          "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified")):
        return ("no cgroup hierarchy under /sys/fs/cgroup (a chroot, not a booted host): "
                "systemd-nspawn cannot boot a machine here")
    return None


def _log(message: str) -> None:
    print(f"[rollout-machine] {message}", file=sys.stderr, flush=True)


def _apt_proxies() -> dict[str, str]:
    """The host's apt proxy (debootstrap's wget does not read apt.conf), as environment."""
    env = {k: v for k, v in os.environ.items()
           if k.lower() in ("http_proxy", "https_proxy", "no_proxy")}
    if shutil.which("apt-config"):
        for scheme in ("http", "https"):
            out = subprocess.run(["apt-config", "shell", "P", f"Acquire::{scheme}::Proxy"],
                                 capture_output=True, text=True, check=False).stdout.strip()
            value = out.partition("=")[2].strip("'\"")
            if value and value != "DIRECT":
                env.setdefault(f"{scheme}_proxy", value)
    return env


def _host_mirror() -> str:
    """BADGED_ROLLOUT_MIRROR, else the host's first apt source for bookworm, else Debian's."""
    if os.environ.get("BADGED_ROLLOUT_MIRROR"):
        return os.environ["BADGED_ROLLOUT_MIRROR"]
    sources = Path("/etc/apt/sources.list.d")
    for file in sorted(sources.glob("*.sources")) if sources.is_dir() else []:
        for stanza in file.read_text().split("\n\n"):
            fields = {}
            for line in stanza.splitlines():
                key, _, value = line.partition(":")
                if value and not line.startswith(("#", " ")):
                    fields[key.strip().lower()] = value.split()
            if (SUITE in fields.get("suites", []) and "deb" in fields.get("types", [])
                    and fields.get("uris")):
                return fields["uris"][0]
    return DEFAULT_MIRROR


def build_image(*, rebuild: bool = False) -> Path:
    """The cached image, built if missing (once; serialised by a lock). Returns its folder."""
    target = image_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".complete").exists() and not rebuild:
            return target
        # Holding the lock, no other build runs: a *.tmp-* left is a killed build's.
        for stale in target.parent.glob("*.tmp-*"):
            _remove_tree(stale)
        work = target.parent / f"{target.name}.tmp-{os.getpid()}"
        root = work / "root"
        root.mkdir(parents=True)
        log = target.parent / "build.log"
        mirror = _host_mirror()
        _log(f"building the Debian {SUITE} image from {mirror} (once; log: {log})")
        started = time.monotonic()
        env = {**os.environ, **_apt_proxies(), "DEBIAN_FRONTEND": "noninteractive"}
        with log.open("w") as out:
            proc = subprocess.run(
                ["debootstrap", "--arch", _arch(), f"--include={','.join(INCLUDE)}",
                 "--components=main", SUITE, str(root), mirror],
                stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
        if proc.returncode != 0:
            tail = "\n".join(log.read_text().splitlines()[-20:])
            _remove_tree(work)
            raise MachineError(f"debootstrap failed (exit {proc.returncode}):\n{tail}")
        security = os.environ.get("BADGED_ROLLOUT_SECURITY_MIRROR", DEFAULT_SECURITY)
        (root / "etc/apt/sources.list").write_text(
            f"deb {mirror} {SUITE} main\n"
            f"deb {mirror} {SUITE}-updates main\n"
            f"deb {security} {SUITE}-security main\n")
        (root / "etc/hostname").write_text(f"{HOSTNAME}\n")
        (root / "etc/hosts").write_text(
            f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n")
        # A fresh server: no package lists, no downloaded packages, no machine id yet.
        for sub in ("var/lib/apt/lists", "var/cache/apt/archives"):
            for path in (root / sub).glob("*"):
                if path.is_file():
                    path.unlink()
        (root / "etc/machine-id").write_text("")
        (root / "etc/resolv.conf").unlink(missing_ok=True)
        (root / "etc/resolv.conf").write_text("")
        _remove_tree(target)
        root.rename(target)
        (target / ".complete").write_text(f"{time.time()}\n")
        _remove_tree(work)
        _log(f"image built in {time.monotonic() - started:.0f} s: {target}")
        return target


def _arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()


def _remove_tree(path: Path) -> None:
    if path.exists():
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


class Machine:
    """A booted machine: run commands in it, read and write its files, power it off."""

    def __init__(self, image: Path, name: str, log: Path) -> None:
        self.image, self.name, self.log = image, name, log
        self.nspawn: subprocess.Popen[bytes] | None = None
        self.pid1 = 0

    # --- life -------------------------------------------------------------------------

    def boot(self, timeout: float = 120.0) -> None:
        archives, pip_cache = cache_dir() / "apt-archives", cache_dir() / "pip-cache"
        (archives / "partial").mkdir(parents=True, exist_ok=True)
        pip_cache.mkdir(parents=True, exist_ok=True)
        caches = [f"--overlay={archives}::{APT_ARCHIVES}", f"--bind={pip_cache}:/root/.cache/pip"]
        with self.log.open("wb") as console:
            # setpriv: should this process die without powering the machine off, nspawn
            # gets SIGTERM, its way of powering off (no machine left behind, port held).
            self.nspawn = subprocess.Popen(
                ["setpriv", "--pdeathsig", "TERM", "systemd-nspawn", "--quiet",
                 f"--directory={self.image}", "--volatile=overlay", "--boot",
                 "--register=no", "--keep-unit",
                 f"--machine={self.name}", f"--hostname={HOSTNAME}",
                 "--resolv-conf=copy-host", "--timezone=off", "--console=read-only",
                 *caches],
                stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.pid1:
            self._alive_or_fail("before systemd started")
            self.pid1 = _descendant_named(self.nspawn.pid, "systemd") or 0
            if time.monotonic() > deadline:
                raise MachineError(f"no systemd in the machine after {timeout:.0f} s")
            time.sleep(0.1)
        while True:
            self._alive_or_fail("while booting")
            state = self.run(["systemctl", "is-system-running", "--wait"],
                             check=False, timeout=timeout).stdout.strip()
            if state in ("running", "degraded"):
                break
            if time.monotonic() > deadline:
                raise MachineError(f"the machine did not finish booting: {state}")
            time.sleep(0.2)
        self.state = state
        self._pass_registry_settings()

    def power_off(self, timeout: float = 30.0) -> None:
        if self.nspawn is None:
            return
        if self.nspawn.poll() is None:
            with contextlib.suppress(MachineError, OSError, subprocess.SubprocessError):
                self._keep_downloaded_packages()
            self.nspawn.send_signal(signal.SIGTERM)  # nspawn asks systemd to power off
            try:
                self.nspawn.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.nspawn.pid, signal.SIGKILL)
                self.nspawn.wait()
        self.nspawn = None

    def _keep_downloaded_packages(self) -> None:
        """The .deb files this machine downloaded, into the shared cache (atomic renames)."""
        cache = cache_dir() / "apt-archives"
        inside = self.run(["find", APT_ARCHIVES, "-maxdepth", "1", "-name", "*.deb",
                           "-printf", "%f\\n"]).stdout.split()
        for name in sorted(set(inside) - {p.name for p in cache.glob("*.deb")}):
            part = cache / "partial" / f"{name}.{os.getpid()}"
            with part.open("wb") as out:
                subprocess.run(self.command(["cat", f"{APT_ARCHIVES}/{name}"]), stdout=out,
                               check=True, timeout=120)
            part.rename(cache / name)

    def _alive_or_fail(self, when: str) -> None:
        assert self.nspawn is not None
        if self.nspawn.poll() is not None:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
            raise MachineError(f"systemd-nspawn exited {when} "
                               f"(exit {self.nspawn.returncode}):\n{tail}")

    def _pass_registry_settings(self) -> None:
        """How this host reaches the registries, and nothing else: its apt proxy, its local
        CA certificates (a TLS-inspecting proxy's) and pip's proxy and remote index. A
        site behind such a proxy configures its servers the same way."""
        proxies = _apt_proxies()
        lines = [f'Acquire::{s}::Proxy "{proxies[f"{s}_proxy"]}";'
                 for s in ("http", "https") if f"{s}_proxy" in proxies]
        if lines:
            self.write("/etc/apt/apt.conf.d/00proxy", "\n".join(lines) + "\n")
        pip = []
        local_cas = Path("/usr/local/share/ca-certificates")
        cas = sorted(local_cas.glob("**/*.crt")) if local_cas.is_dir() else []
        for ca in cas:
            self.write(f"/usr/local/share/ca-certificates/{ca.name}", ca.read_bytes())
        if cas:
            self.run(["update-ca-certificates"])
            # pip trusts its own bundle, not the system's, unless told.
            pip.append("cert = /etc/ssl/certs/ca-certificates.crt")
        if proxies.get("https_proxy"):
            pip.append(f"proxy = {proxies['https_proxy']}")
        index = os.environ.get("PIP_INDEX_URL", "")
        if index.startswith(("http://", "https://")):
            pip.append(f"index-url = {index}")
        if pip:
            self.write("/etc/pip.conf", "[global]\n" + "\n".join(pip) + "\n")

    # --- inside -----------------------------------------------------------------------

    def command(self, argv: Sequence[str]) -> list[str]:
        """argv run inside the machine (all its namespaces), with a login-like environment."""
        return ["nsenter", f"--target={self.pid1}", "--all", "--",
                "/usr/bin/env", "-i", f"PATH={PATH_IN}", "HOME=/root", "LANG=C.UTF-8",
                "USER=root", "LOGNAME=root", *argv]

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 120.0,
            user: str | None = None, input: str | None = None,
            ) -> subprocess.CompletedProcess[str]:
        if user:
            argv = ["runuser", "-u", user, "--", *argv]
        proc = subprocess.run(self.command(argv), capture_output=True, text=True,
                              timeout=timeout, input=input, check=False)
        if check and proc.returncode != 0:
            raise MachineError(f"{' '.join(argv)} failed in the machine "
                               f"(exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return proc

    def sh(self, script: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return self.run(["/bin/sh", "-c", script], **kwargs)  # type: ignore[arg-type]

    def read(self, path: str) -> str:
        return self.run(["cat", path]).stdout

    def write(self, path: str, content: str | bytes, mode: str = "0644") -> None:
        data = content.encode() if isinstance(content, str) else content
        proc = subprocess.run(
            self.command(["/bin/sh", "-c", 'umask 077 && cat > "$1" && chmod "$2" "$1"',
                          "write", path, mode]),
            input=data, capture_output=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise MachineError(f"cannot write {path} in the machine: {proc.stderr.decode()}")


def _descendant_named(pid: int, comm: str) -> int | None:
    """The first descendant of pid whose command name is comm (the machine's PID 1)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    for child in map(int, children):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{child}/comm").read_text().strip() == comm:
                return child
        found = _descendant_named(child, comm)
        if found:
            return found
    return None


@contextlib.contextmanager
def booted(log: Path, name: str | None = None) -> Iterator[Machine]:
    """A fresh machine from the cached image (built first if missing), powered off after."""
    machine = Machine(build_image(), name or f"badged-rollout-{os.getpid()}", log)
    try:
        machine.boot()
        yield machine
    finally:
        machine.power_off()


def main(argv: list[str]) -> int:
    reason = boot_impossible()
    if reason:
        print(f"cannot boot a machine here: {reason}", file=sys.stderr)
        return 1
    if argv[:1] == ["build"]:
        print(build_image(rebuild="--rebuild" in argv))
        return 0
    if argv[:1] == ["shell"]:
        with booted(Path("/tmp") / f"badged-rollout-{os.getpid()}.console.log") as machine:
            return subprocess.run(machine.command(["/bin/bash", "-l"]), check=False).returncode
    print("usage: machinekit.py build [--rebuild] | shell", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
