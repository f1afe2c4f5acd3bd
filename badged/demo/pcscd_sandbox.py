"""A private pcscd with one vpcd reader entry, beside (never instead of) the system pcscd.

Used by the tests and the demo. pcscd 1.9.9 hard-codes its server socket
(/run/pcscd/pcscd.comm) unless it is socket-activated, so the sandbox binds a Unix socket
of its own and hands it over as fd 3 with LISTEN_FDS=1 and LISTEN_PID=<pcscd's pid>, the way
systemd does. Clients find it through PCSCLITE_CSOCK_NAME, which libpcsclite reads once, at
a process's first PC/SC call: one sandbox per process, started before any PC/SC call.

One vpcd entry gives two readers: "<name> 00 00" (cards connect to `port`) and
"<name> 00 01" (`port + 1`).

    python -m badged.demo.pcscd_sandbox [--port 35963]   # runs one until Ctrl-C
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Self

from badged.cards import pcsc

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
RUN_DIR = Path("/run/pcscd")  # pcscd 1.9.9 writes its pid file there, even when private
READY_TIMEOUT = 10.0
PORT_FILE = "vpcd.port"  # in the sandbox's folder: its vpcd port (slot 0), while it runs

# Runs between fork and pcscd: die with the parent, move the socket to fd 3, announce it.
_SHIM = r"""
import ctypes, os, signal, sys
ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: pcscd dies with its parent
if os.getppid() != int(sys.argv[1]):
    sys.exit("pcscd sandbox: parent already gone")
fd = int(sys.argv[2])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.set_inheritable(3, True)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
os.execv(sys.argv[3], sys.argv[3:])
"""

_bound_socket: str | None = None  # the pcscd socket this process's libpcsclite talks to
_bind_lock = threading.Lock()


class SandboxError(RuntimeError):
    """The private pcscd cannot run here (missing package, /run/pcscd, port, start-up)."""


def find_pcscd() -> str:
    """pcscd's path: it lives in /usr/sbin, often not on a user's PATH."""
    found = shutil.which("pcscd") or shutil.which("pcscd", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise SandboxError(
            "pcscd not found (install the Debian packages pcscd and vsmartcard-vpcd)"
        )
    return found


@functools.cache
def _supports_disable_polkit(pcscd: str) -> bool:
    """pcsc-lite ≥ 2.0 checks polkit on each client unless told not to."""
    out = subprocess.run([pcscd, "--help"], capture_output=True, check=False)
    return b"disable-polkit" in out.stdout + out.stderr


def _port_pair_free(port: int) -> bool:
    """vpcd binds 0.0.0.0:port and :port+1 with SO_REUSEADDR: only a listener blocks it."""
    for p in (port, port + 1):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("0.0.0.0", p))
            except OSError:
                return False
    return True


class PcscdSandbox:
    """A private pcscd (own socket, own vpcd port pair) that can be stopped and restarted.

    The socket path and the port are kept across `stop()`/`kill()` and `start()`, so a
    process can watch "its" pcscd go away and come back.
    """

    def __init__(
        self,
        workdir: Path | str | None = None,
        *,
        name: str = "Virtual PCD",
        port: int | None = None,
        driver: Path | str = VPCD_DRIVER,
        debug: bool = False,
    ) -> None:
        self._own_dir = workdir is None
        self.dir = Path(tempfile.mkdtemp(prefix="pcscd-")) if workdir is None else Path(workdir)
        self.name = name
        self.port = port
        self.driver = Path(driver)
        self.debug = debug
        self.socket_path = self.dir / "pcscd.comm"
        if len(os.fsencode(self.socket_path)) > 100:  # AF_UNIX sun_path is 108 bytes
            self.socket_path = Path(tempfile.mkdtemp(prefix="pcscd-")) / "comm"
        self.log_path = self.dir / "pcscd.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def readers(self) -> list[str]:
        """Slot 0 (cards on `port`) and slot 1 (`port + 1`)."""
        return [f"{self.name} 00 00", f"{self.name} 00 01"]

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc else None

    def env(self) -> dict[str, str]:
        """Environment entries that point a child process's libpcsclite at this pcscd."""
        return {"PCSCLITE_CSOCK_NAME": str(self.socket_path)}

    def start(self, tries: int = 8) -> Self:
        """Start pcscd and return once it lists its two readers (retrying on port clashes)."""
        if self.running:
            raise SandboxError(f"pcscd sandbox already running (pid {self.pid})")
        pcscd = find_pcscd()
        if not self.driver.exists():
            raise SandboxError(f"vpcd driver {self.driver} missing (install vsmartcard-vpcd)")
        _ensure_run_dir()
        self._bind_process()
        (self.dir / "conf").mkdir(parents=True, exist_ok=True)
        fixed = self.port is not None
        for _ in range(1 if fixed else tries):
            port = self.port if self.port is not None else random.randrange(20000, 32000, 2)
            if not _port_pair_free(port):
                if fixed:
                    raise SandboxError(f"vpcd ports {port}-{port + 1} are in use")
                continue
            self._write_conf(port)
            self._spawn(pcscd)
            found = self._wait_ready()
            if found == self.readers:
                self.port = port
                # How `badged card simulate` finds this pcscd's vpcd (the demo's).
                (self.dir / PORT_FILE).write_text(f"{port}\n")
                return self
            self.kill()  # no readers: vpcd lost a race for the port; try another one
            if fixed:
                break
        raise SandboxError(
            f"pcscd sandbox did not come up with readers {self.readers} "
            f"(see {self.log_path}):\n{self._log_tail()}"
        )

    def wait_card(self, present: bool = True, reader: int | str = 0, timeout: float = 5.0) -> None:
        """Block until pcscd itself sees a card in (or out of) `reader` (index or name)."""
        name = self.readers[reader] if isinstance(reader, int) else reader
        try:
            if present:
                pcsc.wait_for_card(name, timeout)
            else:
                pcsc.wait_for_removal(name, timeout)
        except pcsc.CardTimeout as err:
            state = "present" if present else "gone"
            raise TimeoutError(f"{name}: card not {state} after {timeout:g} s") from err

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM pcscd and wait for it (SIGKILL after `timeout`)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def kill(self) -> None:
        """SIGKILL pcscd (a crash: no clean-up on its side) and reap it."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()

    def close(self) -> None:
        """Stop pcscd and remove the socket (and the work directory if the sandbox made it)."""
        self.stop()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.dir / PORT_FILE).unlink()
        if self.socket_path.parent != self.dir:
            shutil.rmtree(self.socket_path.parent, ignore_errors=True)
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self if self.running else self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # internals

    def _bind_process(self) -> None:
        global _bound_socket
        path = str(self.socket_path)
        with _bind_lock:
            if _bound_socket not in (None, path):
                raise SandboxError(
                    f"this process already talks to the pcscd at {_bound_socket}: libpcsclite "
                    "reads PCSCLITE_CSOCK_NAME once per process, so use one sandbox per process"
                )
            _bound_socket = path
            os.environ["PCSCLITE_CSOCK_NAME"] = path

    def _write_conf(self, port: int) -> None:
        (self.dir / "conf" / "vpcd").write_text(
            f'FRIENDLYNAME "{self.name}"\nDEVICENAME /dev/null:{port}\n'
            f"LIBPATH {self.driver}\nCHANNELID {port}\n"
        )

    def _spawn(self, pcscd: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.socket_path))
            self.socket_path.chmod(0o666)
            listener.listen(128)
            cmd = [pcscd, "--foreground", "-c", str(self.dir / "conf")]
            if _supports_disable_polkit(pcscd):
                cmd.append("--disable-polkit")
            if self.debug:
                cmd += ["--debug", "--apdu"]
            fd = listener.fileno()
            with self.log_path.open("ab") as log:
                self._proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", _SHIM, str(os.getpid()), str(fd), *cmd],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(fd,),
                    start_new_session=True,
                )
        finally:
            # Only pcscd may hold the listener: a copy here would make clients queue on a
            # dead pcscd's socket instead of getting "no service".
            listener.close()

    def _wait_ready(self) -> list[str] | None:
        """The readers pcscd lists once it answers (clients queue on the socket meanwhile)."""
        result: list[list[str] | None] = [None]

        def ask() -> None:
            with contextlib.suppress(pcsc.PcscError):
                result[0] = sorted(pcsc.list_readers())

        asker = threading.Thread(target=ask, name="pcscd-sandbox-ready", daemon=True)
        asker.start()
        asker.join(READY_TIMEOUT)
        if asker.is_alive():  # pcscd hangs: killing it unblocks the client call
            self.kill()
            asker.join()
        return result[0]

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _ensure_run_dir() -> None:
    try:
        RUN_DIR.mkdir(mode=0o755, exist_ok=True)
    except OSError as err:
        raise SandboxError(
            f"pcscd needs {RUN_DIR} (pid file) and it cannot be created ({err.strerror}); "
            f"create it once: sudo install -d -m 0755 {RUN_DIR}"
        ) from err


def main(argv: list[str] | None = None) -> None:
    """Run a sandbox until Ctrl-C or SIGTERM, for the demo."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, help="vpcd port (default: a free one)")
    parser.add_argument("--debug", action="store_true", help="pcscd debug and APDU log")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with PcscdSandbox(port=args.port, debug=args.debug) as sandbox:
        print(f"PCSCLITE_CSOCK_NAME={sandbox.socket_path}")
        print(f"vpcd port {sandbox.port}: readers {', '.join(map(repr, sandbox.readers))}")
        print(f"log: {sandbox.log_path}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
