"""SIGKILL at every step of a `badged` command, and what must hold after each kill.

`explore` runs a command once to the end on a copy of a prepared site (the reference: its
final state, and the list of its steps, see zygote.py), then for each step K on a fresh
copy: runs the command killed at step K, checks what must hold right after a kill
(`after_kill`: the store's integrity, no half file where a reader looks…), runs the
command again without the killer and checks that the site ends exactly as the reference
(`snapshot`: the tables and files that matter, never timestamps). A kill at step K is a
kill after step K-1 and before step K, so K = 1 … N is every point of the run.

A site is a folder: `badged.yaml` (the demo school of the repo's tree, relative state and
runtime folders), `state/`, and whatever the test adds; copied whole per K.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from badged.clock import CLOCK_FILE_ENV
from badged.store.db import DB_NAME

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ZYGOTE = HERE / "zygote.py"


@dataclass(frozen=True)
class Result:
    rc: int | None
    signal: int | None
    stdout: str
    stderr: str

    @property
    def killed(self) -> bool:
        return self.signal == signal.SIGKILL

    def describe(self) -> str:
        how = f"signal {self.signal}" if self.signal is not None else f"exit {self.rc}"
        return f"{how}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


class Zygote:
    """The forking runner (zygote.py) of this test module."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        self.proc = subprocess.Popen([sys.executable, str(ZYGOTE)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)

    def run(self, site: Path, argv: Sequence[str], *, crash_at: int = 0,
            env: dict[str, str] | None = None, steps_file: Path | None = None) -> Result:
        out, err = self.scratch / "stdout", self.scratch / "stderr"
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                       "HOME": os.environ.get("HOME", "/"), "LANG": "C.UTF-8",
                       "BADGED_HOST_CONFIG": str(site / "badged.yaml"),
                       CLOCK_FILE_ENV: str(site / "clock"), **(env or {})}
        request = {"argv": list(argv), "env": environment, "cwd": str(site),
                   "stdout": str(out), "stderr": str(err), "crash_at": crash_at,
                   "steps_file": str(steps_file) if steps_file else None}
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the crash tests' zygote died"
        answer = json.loads(line)
        return Result(answer.get("rc"), answer.get("signal"),
                      out.read_text(errors="replace"), err.read_text(errors="replace"))

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


# --- a site --------------------------------------------------------------------------------


def make_site(folder: Path, *, tree: Path | None = None, extra: str = "",
              when: str = "2026-11-03T09:00:00+00:00") -> Path:
    """A site for the demo school (`tree`: a copy of the repo's, if the test edits it),
    its clock set at `when` (badged/clock.py reads it for every "now")."""
    from datetime import datetime

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "badged.yaml").write_text(
        f"tree: {tree or REPO / 'config'}\nschool: demo\nstate_dir: state\n"
        f"runtime_dir: run\n{extra}")
    (folder / "clock").write_text(f"{datetime.fromisoformat(when).timestamp():.3f}\n")
    return folder


def db(site: Path) -> Path:
    return site / "state" / DB_NAME


def settle(site: Path) -> None:
    """Checkpoint the template's WAL into the database file: a copy is one file."""
    with sqlite3.connect(db(site)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def query(site: Path, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
    """Rows of `sql` on the site's store, as plain tuples (read only)."""
    conn = sqlite3.connect(f"file:{db(site)}?mode=ro", uri=True)
    try:
        return [tuple(r) for r in conn.execute(sql, tuple(params))]
    finally:
        conn.close()


def integrity(site: Path) -> None:
    """The store opens and `PRAGMA integrity_check` is ok (a kill mid-transaction leaves
    a hot WAL or journal: SQLite rolls it back at the next open). A store not created
    yet (killed before) is fine: it is not created here."""
    if not db(site).exists():
        return
    conn = sqlite3.connect(db(site))
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()


def files(folder: Path, *, hidden: bool = True) -> dict[str, bytes]:
    """Every file under `folder` (relative path → bytes); `hidden=False` skips dot files."""
    if not folder.exists():
        return {}
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and (hidden or not any(
                p.startswith(".") for p in path.relative_to(folder).parts)):
            out[str(path.relative_to(folder))] = path.read_bytes()
    return out


# --- every step ------------------------------------------------------------------------------


Check = Callable[[Path], Any]


@dataclass
class Exploration:
    steps: list[str]       # the reference run's steps, in order
    tried: list[int]       # the K at which a run was killed


def explore(zygote: Zygote, template: Path, work: Path, argv: Sequence[str], *,
            snapshot: Check, after_kill: Check | None = None,
            rerun: Sequence[str] | None = None, ok: Sequence[int] = (0,),
            rerun_ok: Sequence[int] | None = None,
            env: dict[str, str] | None = None,
            select: Callable[[list[str]], list[int]] | None = None,
            before: Callable[[Path], None] | None = None,
            fresh: Callable[[], None] | None = None) -> Exploration:
    """Kill `argv` at every step (or the steps `select(steps)` picks), and after each kill
    check `after_kill(site)`, run `rerun` (default: `argv` again) to the end and check
    that `snapshot(site)` equals the reference's. `ok`: the exit codes of a whole run.
    `rerun_ok`: those of the run after a kill (default: `ok`). `before(site)` runs before
    every command; `fresh()` before the reference and before each K's killed run (e.g. to
    put a peer back in the template's state)."""
    rerun = list(rerun or argv)
    rerun_ok = ok if rerun_ok is None else rerun_ok
    reference = work / "reference"
    shutil.copytree(template, reference)
    if fresh:
        fresh()
    if before:
        before(reference)
    steps_file = work / "steps.json"
    done = zygote.run(reference, argv, env=env, steps_file=steps_file)
    assert done.rc in ok, f"{' '.join(argv)} (reference): {done.describe()}"
    steps: list[str] = json.loads(steps_file.read_text())
    assert steps, f"{' '.join(argv)}: no step seen"
    if list(rerun) != list(argv):
        if before:
            before(reference)
        again = zygote.run(reference, rerun, env=env)
        assert again.rc in ok, f"{' '.join(rerun)} (reference): {again.describe()}"
    expected = snapshot(reference)
    if after_kill:
        after_kill(reference)
    chosen = select(steps) if select else list(range(1, len(steps) + 1))
    for k in chosen:
        site = work / f"k{k}"
        shutil.copytree(template, site)
        if fresh:
            fresh()
        where = f"{' '.join(argv)} killed at step {k}/{len(steps)} ({steps[k - 1]})"
        if before:
            before(site)
        killed = zygote.run(site, argv, crash_at=k, env=env)
        assert killed.killed, f"{where}: not killed (steps differ from run to run?): " \
                              f"{killed.describe()}"
        integrity(site)
        if after_kill:
            try:
                after_kill(site)
            except AssertionError as exc:
                raise AssertionError(f"{where}, right after the kill: {exc}") from exc
        if before:
            before(site)
        again = zygote.run(site, rerun, env=env)
        assert again.rc in rerun_ok, f"{where}, then run again: {again.describe()}"
        integrity(site)
        got = snapshot(site)
        if got != expected:
            raise AssertionError(f"{where}, then run again: the site differs from an "
                                 f"uninterrupted run's:\n{_diff(expected, got)}")
        if after_kill:
            after_kill(site)
        shutil.rmtree(site)
    return Exploration(steps, chosen)


def _diff(expected: Any, got: Any) -> str:
    if isinstance(expected, dict) and isinstance(got, dict):
        lines = []
        for key in sorted(set(expected) | set(got), key=str):
            if expected.get(key) != got.get(key):
                if isinstance(expected.get(key), dict) and isinstance(got.get(key), dict):
                    lines.append(f"  {key}:\n" + _diff(expected[key], got[key]))
                else:
                    lines.append(f"  {key}:\n    expected {_short(expected.get(key))}\n"
                                 f"    got      {_short(got.get(key))}")
        return "\n".join(lines)
    return f"  expected {_short(expected)}\n  got      {_short(got)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 600 else text[:600] + "…"


def sample(steps: list[str], *, every: int, keep: Callable[[str], bool]) -> list[int]:
    """Every step `keep` says is of the writing phase, and one in `every` of the others
    (deterministic: the same K on every run)."""
    return [k for k, what in enumerate(steps, 1) if keep(what) or k % every == 0]


def store_dump(site: Path, *, volatile: dict[str, set[str]] | None = None,
               skip: Iterable[str] = ("leases",), aliases: Iterable[Path] = (),
               tokens: Iterable[str] = ()) -> dict[str, list[tuple]]:
    """Every table of the store (rows sorted), but the `volatile` columns of a table (a
    random token, a wall-clock time) and the `skip` tables. Times from badged's clock are
    kept: the site's clock file fixes them. The site's own path (and its `aliases`: the
    template it was copied from) reads `SITE`; what matches a regex of `tokens` (random
    values in text) reads `TOKEN`."""
    roots = [str(site), *map(str, aliases)]
    patterns = [re.compile(t) for t in tokens]

    def plain(value: Any) -> Any:
        if isinstance(value, str):
            for root in roots:
                value = value.replace(root, "SITE")
            for pattern in patterns:
                value = pattern.sub("TOKEN", value)
        return value

    volatile = volatile or {}
    names = [r[0] for r in query(site, "SELECT name FROM sqlite_master WHERE type = 'table' "
                                       "ORDER BY name")]
    out = {}
    for name in names:
        if name in skip:
            continue
        columns = [r[1] for r in query(site, f"PRAGMA table_info({name})")
                   if r[1] not in volatile.get(name, set())]
        rows = [tuple(plain(v) for v in r)
                for r in query(site, f"SELECT {', '.join(columns)} FROM {name}")]
        out[name] = sorted(rows, key=repr)
    return out
