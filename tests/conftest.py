"""Shared fixtures: one private pcscd per test process, virtual cards on its vpcd reader.

PC/SC tests run through a real pcscd (see badged.demo.pcscd_sandbox). They never skip:
CI installs pcscd and vsmartcard-vpcd, so a missing one is a failure with a clear message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from badged.cards.vpcd import CardEngine, VpcdCard
from badged.demo.pcscd_sandbox import PcscdSandbox, SandboxError
from badged.demo.runner import write_credentials

InsertCard = Callable[..., VpcdCard]


@pytest.fixture(scope="session")
def pcsc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PcscdSandbox]:
    """The private pcscd of this test process (readers `pcsc.readers`, vpcd `pcsc.port`).

    libpcsclite reads PCSCLITE_CSOCK_NAME once per process: one sandbox per process (per
    xdist worker), started before any PC/SC call. Tests that stop or kill it use
    `pcscd_restart`, which starts it again on the same socket and port.
    """
    sandbox = PcscdSandbox(Path(tmp_path_factory.mktemp("pcscd")))
    try:
        sandbox.start()
    except SandboxError as err:
        pytest.fail(f"private pcscd for the PC/SC tests: {err}", pytrace=False)
    yield sandbox
    sandbox.close()


@pytest.fixture
def pcscd_restart(pcsc: PcscdSandbox) -> Iterator[PcscdSandbox]:
    """The sandbox, for a test that stops or kills it: running again after the test."""
    yield pcsc
    if not pcsc.running:
        pcsc.start()


@pytest.fixture
def insert_card(pcsc: PcscdSandbox) -> Iterator[InsertCard]:
    """`insert_card(engine, reader=0) -> VpcdCard`: the card is in once pcscd sees it.

    Cards are removed at teardown, waiting for pcscd to see the slot empty, so the next
    test starts clean. Each insertion or removal costs one pcscd poll (≤ 400 ms): a test
    that needs a card only once should insert it only once.
    """
    cards: list[tuple[VpcdCard, int]] = []

    def insert(engine: CardEngine, reader: int = 0) -> VpcdCard:
        assert pcsc.port is not None
        card = VpcdCard(engine, port=pcsc.port + reader)
        cards.append((card, reader))
        card.insert()
        pcsc.wait_card(present=True, reader=reader)
        return card

    yield insert
    for card, _ in cards:
        card.remove()
    if pcsc.running:
        for reader in sorted({reader for _, reader in cards}):
            pcsc.wait_card(present=False, reader=reader)


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The demo keys as systemd credentials (0600 files), `$CREDENTIALS_DIRECTORY` set."""
    directory = write_credentials(tmp_path_factory.mktemp("credentials") / "creds")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CREDENTIALS_DIRECTORY", str(directory))
        yield directory


@pytest.fixture(scope="module")
def host_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A host file running the demo school of the repo's config tree."""
    base = tmp_path_factory.mktemp("host")
    path = base / "badged.yaml"
    path.write_text(
        f"tree: {REPO / 'config'}\nschool: demo\n"
        f"state_dir: {base / 'state'}\nruntime_dir: {base / 'run'}\n"
    )
    return path


# Fuzz tests (hypothesis): bounded runs so CI keeps its time, no per-example deadline on a
# loaded machine, no example database written into the checkout, the same examples on
# every run (a failure in CI is a failure on the developer's machine).
settings.register_profile("ci", max_examples=50, deadline=None, database=None,
                          derandomize=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")
