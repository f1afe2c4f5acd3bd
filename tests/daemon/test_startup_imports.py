"""What `badged run` imports before the daemon is up: only what reading cards needs.

Memory is a goal of the daemon (bench/daemon.py): the exchange and mail code, the import
services, the card simulator, the HTTP and SSH clients and test-only libraries are loaded
by the command or job that uses them, never at start-up. Checked in a fresh interpreter,
as the daemon starts: the `run` command resolved through the CLI, then the runtime.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from badged.cli import _COMMANDS, main

# Never loaded by `badged run` before the first card is read.
NOT_AT_START = (
    "badged.crous.exchanges", "badged.crous.mail", "badged.crous.population",
    "badged.crous.cards_csv", "badged.crous.changes", "badged.crous.layouts",
    "badged.cards.simulator", "badged.cards.vpcd", "badged.demo.pcscd_sandbox",
    "badged.demo", "badged.enrolment.batch", "badged.config.schema", "badged.config.show",
    "badged.cli.exchange", "badged.cli.population", "badged.cli.crous", "badged.cli.card",
    "badged.doctor", "badged.cli.doctor", "badged.access", "badged.cli.access",
    "badged.crous.api", "badged.crous.sync", "badged.crous.tariff_rules", "badged.testing",
    "smtplib", "mailbox", "httpx", "paramiko", "hypothesis", "ansible", "jsonschema",
    "aiosmtpd",
)

START = """
import json, sys
import click
from badged.cli import main
ctx = click.Context(main)
command = main.get_command(ctx, "run")   # what `badged run` resolves
from badged.daemon.runtime import Daemon, run  # what the run command imports
print(json.dumps(sorted(sys.modules)))
"""


@pytest.fixture(scope="module")
def started() -> set[str]:
    out = subprocess.run([sys.executable, "-c", START], capture_output=True, text=True,
                         check=True, timeout=60)
    return set(json.loads(out.stdout))


def test_the_daemon_loads_what_it_runs(started: set[str]) -> None:
    # The check means something only if the daemon's own modules are there.
    assert {"badged.daemon.runtime", "badged.cards.profile", "badged.cli.run"} <= started


@pytest.mark.parametrize("module", NOT_AT_START)
def test_not_imported_at_start(started: set[str], module: str) -> None:
    loaded = sorted(m for m in started if m == module or m.startswith(module + "."))
    assert not loaded, f"`badged run` imports {loaded} at start-up: import it where used"


def test_every_command_is_known_to_the_lazy_group() -> None:
    """A command added to a module must be listed in `_COMMANDS`, or the CLI loses it."""
    ctx = click.Context(main)
    names = set(main.list_commands(ctx))  # imports every command module
    assert names == set(_COMMANDS)
    for name in names:
        assert main.get_command(ctx, name) is not None



def test_every_command_module_is_listed() -> None:
    import badged.cli

    folder = Path(badged.cli.__file__).parent
    modules = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
    assert modules == set(_COMMANDS.values())
