"""Run the daemon on the demo school: no hardware, no server.

`python -m badged.demo` (what scripts/demo.sh runs) prepares ./state/demo, writes the demo
cards' test keys as private credentials, starts a private pcscd with a vpcd reader pair,
inserts the simulated CROUS card on the lookup reader, and runs the real daemon with
demo/badged.yaml until Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from .config.host import Host
from .crous.population import import_population
from .store.db import open_store

REPO = Path(__file__).resolve().parent.parent
HOST_FILE = REPO / "demo" / "badged.yaml"
STATE = REPO / "state" / "demo"
CARD = REPO / "demo" / "cards" / "crous-card.yaml"
REGISTRY = REPO / "demo" / "registry"
# The demo cards' keys: test data shipped in demo/cards/, never a site's real keys.
DEMO_KEYS = {
    "demo-crous-read": "00112233445566778899AABBCCDDEEFF",
    "demo-uid-read": "F0E1D2C3B4A5968778695A4B3C2D1E0F",
    "demo-diversify-master": "00112233445566778899AABBCCDDEEFF",
    "demo-legacy-read": "C0C1C2C3C4C5C6C7C8C9CACBCCCDCECF",
}


def write_credentials(directory: Path) -> Path:
    """The demo keys as systemd credentials would hold them: 0600 files in a 0700 folder."""
    directory.mkdir(mode=0o700, exist_ok=True)
    for name, value in DEMO_KEYS.items():
        fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")
    return directory


def prepare() -> dict[str, str]:
    """State and credentials directories, private like the service's; the env to run in."""
    STATE.mkdir(mode=0o700, parents=True, exist_ok=True)
    credentials = write_credentials(STATE / "credentials")
    return {"CREDENTIALS_DIRECTORY": str(credentials), "BADGED_HOST_CONFIG": str(HOST_FILE)}


def import_registry(host: Host) -> None:
    """Load the sample registry exports (demo/registry/NAME.csv), as a nightly job would."""
    site = host.load_site()
    conn = open_store(host.state_dir)
    for name, source in site.school.population.items():
        path = REGISTRY / f"{name}.csv"
        if path.exists():
            report = import_population(conn, path, name, source, tariffs=site.tariffs)
            print(report.summary(), flush=True)
    conn.close()


def main() -> int:
    os.environ.update(prepare())
    # The private pcscd must be up (PCSCLITE_CSOCK_NAME set) before any PC/SC call.
    from .cards.pcscd_sandbox import PcscdSandbox
    from .cards.simulator import SimulatedDesfire
    from .cards.vpcd import VpcdCard
    from .config.host import load_host
    from .daemon.runtime import HANDLED_SIGNALS, run
    from .logs import setup

    host = load_host(HOST_FILE)
    setup(host.config.log_level)
    import_registry(host)
    with PcscdSandbox(STATE / "pcscd") as pcscd:
        # The card's serving thread must not take the daemon's signals (see runtime.run).
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            card = VpcdCard(SimulatedDesfire.from_file(CARD), port=pcscd.port + 1).insert()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        listen = host.config.metrics_listen or host.load_site().school.metrics_listen
        env = f"BADGED_HOST_CONFIG={HOST_FILE} PCSCLITE_CSOCK_NAME={pcscd.socket_path}"
        keys = f"CREDENTIALS_DIRECTORY={os.environ['CREDENTIALS_DIRECTORY']}"
        print(f"""badged demo: school demo, state in {STATE}
  metrics      http://{listen}/metrics
  status       {env} .venv/bin/badged status
  read a card  {env} {keys} .venv/bin/badged card read --reader '{pcscd.readers[1]}'
  CROUS files  BADGED_HOST_CONFIG={HOST_FILE} .venv/bin/badged exchange plan
               (sent every 10 minutes, or now with `exchange run KIND`, to
               {STATE / 'maildir'})
  (card {CARD.name} sits on '{pcscd.readers[1]}', the lookup reader; Ctrl-C stops)""",
              flush=True)
        try:
            return run(host)
        finally:
            card.remove()


if __name__ == "__main__":
    sys.exit(main())
