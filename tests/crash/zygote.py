"""The crash tests' runner of `badged` commands: imports badged once, then forks one child
per command, and in a child asked to crash, kills it with SIGKILL at its K-th step.

Run as a script (`python zygote.py`), it reads one JSON request per line on stdin and
answers one JSON line on stdout. A request: `argv` (badged's arguments), `env` (the whole
environment of the command), `cwd`, `stdout`/`stderr` (files for the command's output),
`crash_at` (K: the step at which to die; 0: never), `steps_file` (where a child that did
not die writes the steps it took, one JSON list). The answer: `{"rc": exit code}` or
`{"signal": n}`.

A step is what changes durable state or talks to a peer, as Python's audit hooks
(`sys.addaudithook`) and SQLite's statement trace see it: a file opened for writing, a
rename, link, unlink, mkdir, rmdir or chmod, a `shutil` copy or removal, a socket
connection, an SMTP command, and each SQLite statement that is not a plain read (the
`sqlite3.connect/handle` audit event hands over every connection the command opens; a trace
callback on it sees each statement *before* SQLite runs it). Dying at step K is dying
after step K-1 completed and before step K started: K = 1, 2, … N covers every point
between two steps. Nothing of this is in the product: the hook is installed in the child
only, after the fork.

Forking a process that already imported badged, rather than starting Python for each
run, makes a run cost a few milliseconds instead of a quarter of a second: the crash
tests run hundreds of them.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
from pathlib import Path

_connect = sqlite3.connect

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
FILE_EVENTS = {"os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.link",
               "os.symlink", "os.truncate", "os.chown", "os.utime"}
PEER_EVENTS = {"socket.connect", "socket.sendto", "smtplib.send", "http.client.send"}
READS = ("SELECT", "PRAGMA", "EXPLAIN", "VALUES")


class Steps:
    """Counts the steps of this process and dies at the `crash_at`-th."""

    def __init__(self, crash_at: int) -> None:
        self.crash_at = crash_at
        self.taken: list[str] = []
        self.on = True
        self.untraced: set[int] = set()  # connections opened around `connect`

    def step(self, what: str) -> None:
        if not self.on:
            return
        self.taken.append(what)
        if len(self.taken) == self.crash_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def audit(self, event: str, args: tuple) -> None:
        if not self.on:
            return
        if event == "open":
            path, mode, flags = args
            if isinstance(path, int) or str(path).startswith(("/dev/", "/proc/")):
                return
            writes = (any(c in mode for c in "wax+") if isinstance(mode, str)
                      else bool((flags or 0) & WRITE_FLAGS))
            if writes:
                self.step(f"open {path}")
        elif event in FILE_EVENTS:
            self.step(f"{event} {args[0]}" + (f" -> {args[1]}" if event in (
                "os.rename", "os.link") else ""))
        elif event.startswith("shutil.") and event != "shutil.unpack_archive":
            self.step(f"{event} {args[0] if args else ''}")
        elif event in PEER_EVENTS:
            self.step(f"{event} {_peer(event, args)}")
        elif event == "sqlite3.connect/handle":
            self.untraced.add(id(args[0]))

    def connect(self, *args: object, **kwargs: object) -> sqlite3.Connection:
        """`sqlite3.connect`, then every statement of the connection traced (the audit
        event comes before the connection is usable: it only tells that one was opened)."""
        conn = _connect(*args, **kwargs)
        conn.set_trace_callback(self.statement)
        self.untraced.discard(id(conn))
        return conn

    def statement(self, sql: str) -> None:
        text = sql.lstrip()
        if text.startswith("-- TRIGGER"):
            return  # a trigger's body: part of the statement that fired it
        while text.startswith("--"):  # a statement with comments before it
            text = text.partition("\n")[2].lstrip()
        if not text.upper().startswith(READS):
            self.step("sql " + " ".join(text.split())[:120])


def _peer(event: str, args: tuple) -> str:
    if event == "smtplib.send":
        data = args[1]
        first = data.split(b"\r\n", 1)[0] if isinstance(data, bytes) else str(data)
        return first[:60].decode("ascii", "replace") if isinstance(first, bytes) else first
    if event == "socket.connect":
        return str(args[1])
    return ""


def child(request: dict) -> None:
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, name in ((1, "stdout"), (2, "stderr")):
        out = os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(out, fd)
        os.close(out)
    sys.stdout = sys.__stdout__  # the server's answers went to stderr's stream
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    steps = Steps(int(request["crash_at"]))
    sys.addaudithook(steps.audit)
    sqlite3.connect = steps.connect  # type: ignore[assignment]
    code: object = 0
    try:
        from badged.cli import main
        main(args=request["argv"], prog_name="badged")
    except SystemExit as exc:
        code = exc.code
    except BaseException:  # a traceback is a failure the test reports, with stderr
        import traceback
        traceback.print_exc()
        code = 70
    steps.on = False
    if steps.untraced and code == 0:
        print("crash runner: a SQLite connection was opened without sqlite3.connect: its "
              "statements were not counted as steps", file=sys.stderr)
        code = 72
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    if request.get("steps_file"):
        Path(request["steps_file"]).write_text(json.dumps(steps.taken), encoding="utf-8")
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        sys.stderr.flush()
        code = 1
    os._exit(code)


def serve() -> None:
    # What the commands import, some lazily: once here rather than in every child.
    import httpx  # noqa: F401

    import badged.access.export
    import badged.cli
    import badged.crous.exchanges
    import badged.crous.mail.smtp
    import badged.crous.operations
    import badged.crous.sync  # noqa: F401

    answers = sys.stdout
    sys.stdout = sys.stderr  # nothing but answers on the protocol's stream
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                child(request)
            finally:
                os._exit(71)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            answer = {"signal": os.WTERMSIG(status)}
        else:
            answer = {"rc": os.WEXITSTATUS(status)}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


if __name__ == "__main__":
    serve()
