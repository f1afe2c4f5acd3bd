"""Run the daemon on the demo school: no hardware, no server.

`python -m badged.demo` (what scripts/demo.sh runs) prepares ./state/demo, writes the demo
cards' test keys and the API CROUS client secret as private credentials, loads the sample
registry exports and CROUS card CSV (the simulated card is a primo-entrant's), starts the
local API CROUS peer on loopback (badged.testing.crous_peer, 127.0.0.1:8791), a private
pcscd with a vpcd reader pair, inserts the simulated CROUS card on the lookup reader, and
runs the real daemon with demo/badged.yaml until Ctrl-C.

`--state DIR` and `--metrics-listen HOST:PORT` run a second demo beside the first (the
tests do, while a user's demo runs): its own state, pcscd, control socket and metrics port,
through a host file written in DIR, and its own local API CROUS on a free port (a copy of
the tree in DIR points its CROUS there).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
from pathlib import Path
from urllib.parse import urlsplit

from ..config.host import Host
from ..crous.cards_csv import import_cards
from ..crous.population import import_population
from ..store import cards, people
from ..store.db import open_store
from ..testing.crous_peer import DEMO_TARIFFS, CrousPeer

REPO = Path(__file__).resolve().parents[2]
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
    # The demo CROUS's API client secret (config/crous/demo.yaml), known to the local peer.
    "demo-crous-api": "demo-api-secret-not-a-real-one",
}
DEMO_API_CLIENT = "demo"
DEMO_API_LISTEN = ("127.0.0.1", 8791)
# The demo's sample link: the simulated card (demo/cards/crous-card.yaml) is Noël's.
DEMO_CARD_HOLDER = ("04112233445566", "22500102")


def write_credentials(directory: Path) -> Path:
    """The demo keys as systemd credentials would hold them: 0600 files in a 0700 folder."""
    directory.mkdir(mode=0o700, exist_ok=True)
    for name, value in DEMO_KEYS.items():
        fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")
    return directory


def own_tree(state: Path) -> Path:
    """A copy of the tree whose demo CROUS API is a free loopback port (a second demo)."""
    tree = state / "config"
    shutil.rmtree(tree, ignore_errors=True)
    shutil.copytree(REPO / "config", tree)
    with socket.socket() as s:
        s.bind((DEMO_API_LISTEN[0], 0))
        port = s.getsockname()[1]
    crous = tree / "crous" / "demo.yaml"
    default = f"http://{DEMO_API_LISTEN[0]}:{DEMO_API_LISTEN[1]}"
    crous.write_text(crous.read_text().replace(default, f"http://{DEMO_API_LISTEN[0]}:{port}"))
    return tree


def api_port(host: Host) -> int:
    """The port the demo CROUS's API is configured on (config/crous/demo.yaml, or the copy)."""
    api = host.load_site().crous.api
    assert api is not None
    return int(urlsplit(api.base_url).port or DEMO_API_LISTEN[1])


def prepare(state: Path = STATE, metrics_listen: str | None = None) -> dict[str, str]:
    """State and credentials directories, private like the service's; the env to run in.

    Another state folder or metrics address than the repo's demo: a host file of its own
    in that folder, running the same tree and school."""
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    credentials = write_credentials(state / "credentials")
    host_file = HOST_FILE
    if state.resolve() != STATE.resolve() or metrics_listen:
        host_file = state / "badged.yaml"
        listen = f'metrics_listen: "{metrics_listen}"\n' if metrics_listen else ""
        host_file.write_text(f"tree: {own_tree(state)}\nschool: demo\nstate_dir: {state}\n"
                             f"runtime_dir: {state / 'run'}\nlog_level: INFO\n{listen}")
    return {"CREDENTIALS_DIRECTORY": str(credentials), "BADGED_HOST_CONFIG": str(host_file)}


def import_registry(host: Host) -> None:
    """Load the sample registry exports (demo/registry/NAME.csv), as a nightly job would,
    the CROUS card CSV, and link the simulated card to its holder (once)."""
    site = host.load_site()
    conn = open_store(host.state_dir)
    for name, source in site.school.population.items():
        path = REGISTRY / f"{name}.csv"
        if path.exists():
            report = import_population(conn, path, name, source, tariffs=site.tariffs)
            print(report.summary(), flush=True)
    print(import_cards(conn, REGISTRY / "crous-cards.csv").summary(), flush=True)
    csn, person = DEMO_CARD_HOLDER
    if cards.get(conn, csn) is None and people.get(conn, person) is not None:
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            cards.link(conn, csn, person, cards.crous_number_for(conn, csn), actor="demo")
    conn.close()


def start_crous_peer(port: int) -> CrousPeer:
    """The demo CROUS's API, on loopback, knowing the demo client's secret."""
    host = DEMO_API_LISTEN[0]
    peer = CrousPeer(clients={DEMO_API_CLIENT: DEMO_KEYS["demo-crous-api"]}, host=host,
                     port=port, tariffs=DEMO_TARIFFS)
    try:
        return peer.start()
    except OSError as exc:
        raise SystemExit(f"demo: cannot start the local API CROUS on {host}:{port}: "
                         f"{exc.strerror or exc} (another demo running? use --state)") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m badged.demo",
                                     description="Run the daemon on the demo school.")
    parser.add_argument("--state", type=Path, default=STATE, metavar="DIR",
                        help=f"state folder (default {STATE.relative_to(REPO)})")
    parser.add_argument("--metrics-listen", metavar="HOST:PORT",
                        help="metrics address (default: the demo school's)")
    args = parser.parse_args(argv)
    state = args.state.resolve()
    os.environ.update(prepare(state, args.metrics_listen))
    host_file = Path(os.environ["BADGED_HOST_CONFIG"])
    # The private pcscd must be up (PCSCLITE_CSOCK_NAME set) before any PC/SC call.
    from ..cards.simulator import SimulatedDesfire
    from ..cards.vpcd import VpcdCard
    from ..config.host import load_host
    from ..daemon.logs import setup
    from ..daemon.runtime import HANDLED_SIGNALS, run
    from .pcscd_sandbox import PcscdSandbox

    host = load_host(host_file)
    setup(host.config.log_level)
    import_registry(host)
    with PcscdSandbox(state / "pcscd") as pcscd:
        # The card's and the peer's threads must not take the daemon's signals (runtime.run).
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            peer = start_crous_peer(api_port(host))
            card = VpcdCard(SimulatedDesfire.from_file(CARD), port=pcscd.port + 1).insert()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        listen = host.config.metrics_listen or host.load_site().school.metrics_listen
        hosted = f"BADGED_HOST_CONFIG={host_file}"
        env = f"{hosted} PCSCLITE_CSOCK_NAME={pcscd.socket_path}"
        keys = f"CREDENTIALS_DIRECTORY={os.environ['CREDENTIALS_DIRECTORY']}"
        print(f"""badged demo: school demo, state in {state}
  metrics      http://{listen}/metrics
  status       {env} .venv/bin/badged status
  doctor       {env} {keys} .venv/bin/badged doctor
  read a card  {env} {keys} .venv/bin/badged card read --reader '{pcscd.readers[1]}'
  enrol a card {hosted} .venv/bin/badged enrol --person 22500101 --timeout 120
               then, in another terminal, tap the second demo card on the desk:
               {hosted} .venv/bin/badged card simulate --card demo/cards/student-card.yaml
  CROUS files  {hosted} .venv/bin/badged exchange plan --summary
               (sent every 10 minutes, or now with `exchange run personnels`, to
               {state / 'maildir'})
  API CROUS    {hosted} .venv/bin/badged crous sync --dry-run
               then `crous sync` (primo-entrants, every 10 minutes), `crous errors`;
               `{keys} … crous tariffs` (the local peer on {peer.base_url})
  (card {CARD.name} sits on '{pcscd.readers[1]}', the lookup reader; Ctrl-C stops)""",
              flush=True)
        try:
            return run(host)
        finally:
            card.remove()
            peer.close()

