"""The `badged` command line: parse, call a service, print. No logic lives here.

One module per command group (borgmatic style); this one holds the shared plumbing.

Exit codes (docs/contracts.md, CLI): 0 ok, 1 user or input error, 2 usage, 3 partial, 4 daemon
unreachable. A user error is one clear message on stderr, never a traceback.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from .. import __version__
from ..config.errors import ConfigError
from ..config.host import Host, host_config_path, load_host
from ..daemon.control import DaemonUnreachable

if TYPE_CHECKING:
    from ..crous.imports import ReportFile, RowsOutcome

EXIT_OK, EXIT_USER, EXIT_USAGE, EXIT_PARTIAL, EXIT_UNREACHABLE = 0, 1, 2, 3, 4

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")



@functools.cache
def user_error_types() -> tuple[type[Exception], ...]:
    """Errors that are the user's or the environment's to fix: one line, exit 1, no
    traceback. Imported when an error is raised, not at start-up: `badged run` must not load
    the exchange and mail code (see `_COMMANDS`)."""
    from ..access.destinations import DestinationError as AccessDestinationError
    from ..access.export import AccessError
    from ..cards.desfire.errors import DesfireError
    from ..cards.pcsc import PcscError
    from ..cards.profile import CardReadError
    from ..config.errors import SecretError
    from ..crous.exchanges import ExchangeError
    from ..crous.mail import DeliveryError
    from ..crous.textfile import TextFileError
    from ..daemon.control import ControlError, ControlSocketError
    from ..daemon.metrics_http import MetricsBindError
    from ..enrolment.errors import StoreError
    from ..enrolment.lifecycle import LifecycleError

    return (SecretError, StoreError, PcscError, CardReadError, DesfireError, MetricsBindError,
            ControlSocketError, ControlError, TextFileError, LifecycleError, ExchangeError,
            DeliveryError, AccessError, AccessDestinationError)


def progress_printer(file: object, wanted: bool) -> Callable[[int], None] | None:
    """Progress of a large import on stderr: asked for, or when stderr is a terminal."""
    if not (wanted or sys.stderr.isatty()):
        return None
    return lambda rows: click.echo(f"{file}: {rows} rows read", err=True)


def finish_import(report: RowsOutcome, report_file: ReportFile | None = None) -> NoReturn:
    """Rejected rows on stderr (the first ones, no values, then counts by reason), every
    detail in the operator's `--report` file, the summary on stdout; exit 0, 3 or 1."""
    if report_file is not None:
        report_file.write(report.details())
    shown = str(report_file.path) if report_file is not None else None
    for line in report.diagnostics(report=shown):
        click.echo(line, err=True)
    click.echo(report.summary())
    sys.exit({"ok": EXIT_OK, "partial": EXIT_PARTIAL, "refused": EXIT_USER}[report.outcome])


def report_option(func: F) -> F:
    """`--report FILE`: every rejected row of an import with its values, mode 0600."""
    return click.option(
        "--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
        metavar="FILE", help="Write every rejected row with its values to FILE (mode 0600); "
        "stderr names line, column and rule only.")(func)


def open_report(path: Path | None) -> ReportFile | None:
    """The report file, created before the import (a bad path is refused first)."""
    if path is None:
        return None
    from ..crous.imports import ReportFile

    return ReportFile(path)


def fail(message: str, code: int = EXIT_USER) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(code)


def user_errors(func: F) -> F:
    """Turn the known user-facing errors into a message and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            for issue in exc.issues:
                click.echo(str(issue), err=True)
            fail(_summary(exc), EXIT_USER)
        except DaemonUnreachable as exc:
            fail(f"error: {exc}", EXIT_UNREACHABLE)
        except user_error_types() as exc:
            fail(f"error: {exc}")

    return wrapper  # type: ignore[return-value]


def in_daemon_or_here(ctx: Context, op: str, *, here: Callable[[], T], doing: str,
                      instead: str, timeout: float, key: str = "result",
                      **params: Any) -> T:
    """The answer of the daemon's `op` when it runs; else, only when it provably does not
    (bypass_only_if_down), `here()`: the same service run from this process. `doing` says
    what is then done here ("sending"); `instead` what is not done when the daemon is up
    but silent."""
    from ..daemon.control import ControlClient, RequestError, socket_path

    try:
        answer = ControlClient(socket_path(ctx.host.runtime_dir)).request(
            op, timeout=timeout, **params)
    except DaemonUnreachable as exc:
        bypass_only_if_down(ctx, exc, instead)
        click.echo(f"badged is not running: {doing} from here", err=True)
        return here()
    except RequestError as exc:
        fail(f"error: {exc.error}")
    return answer[key]


def bypass_only_if_down(ctx: Context, exc: DaemonUnreachable, instead: str) -> None:
    """Return only when no daemon runs for this host, proven by its lock (not by a
    timeout): a daemon that is busy or slow to answer must not be doubled by a command
    doing its work at the same time. Otherwise exit 4 with `exc` and what was not done."""
    from ..daemon.pidlock import Unknown, running_pid

    try:
        pid = running_pid(ctx.host.runtime_dir)
    except Unknown as unknown:
        fail(f"error: {exc}; {unknown}; {instead}", EXIT_UNREACHABLE)
    if pid is not None:
        who = f"badged (pid {pid})" if pid else "badged"
        fail(f"error: {who} is running but did not answer: {exc}; {instead}",
             EXIT_UNREACHABLE)


def _summary(exc: ConfigError) -> str:
    files = len({i.file for i in exc.issues})
    errors = len(exc.issues)
    return f"{errors} error{'s' * (errors != 1)} in {files} file{'s' * (files != 1)}"


class Context:
    """What every command may need: the host file, loaded on first use."""

    def __init__(self, host_config: str | None) -> None:
        self.host_config_path = host_config_path(host_config)
        self._host: Host | None = None

    @property
    def host(self) -> Host:
        if self._host is None:
            self._host = load_host(self.host_config_path)
        return self._host


pass_ctx = click.make_pass_decorator(Context)


# Command (or group) name → the module of this package that defines it. A command's module
# is imported when that command runs (or for --help): `badged run` then loads the daemon,
# not the exchange, import or simulator code of the other commands.
_COMMANDS = {
    "access": "access", "card": "card", "reader": "card", "config": "config", "crous": "crous",
    "doctor": "doctor", "enrol": "enrol",
    "exchange": "exchange", "person": "person", "population": "population", "run": "run",
    "status": "status", "stock": "stock", "report": "stock",
}


class _LazyGroup(click.Group):
    """The top-level group, loading each command's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        for name in _COMMANDS:
            self._load(name)
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def _load(self, name: str) -> None:
        if name not in self.commands and name in _COMMANDS:
            importlib.import_module(f"{__name__}.{_COMMANDS[name]}")


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="badged")
@click.option("--host-config", metavar="FILE", envvar=None,
              help="Host file (default: $BADGED_HOST_CONFIG, else /etc/badged/badged.yaml).")
@click.pass_context
def main(ctx: click.Context, host_config: str | None) -> None:
    """badged: badge cards of a school, linked to their holders and to the CROUS."""
    ctx.obj = Context(host_config)
