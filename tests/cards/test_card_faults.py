"""Card read faults through the real private pcscd + vpcd + simulator.

Each fault gives a clear typed error naming the reader (and, for card errors, the status
word), `badged card read` exits 1 with one message and no traceback, and the next read on
the same reader succeeds.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from badged.cards.desfire.errors import (
    ApplicationNotFound,
    AuthenticationError,
    FileNotFound,
    MalformedResponse,
    ResponseCrcError,
    ResponseMacError,
    UnknownStatus,
)
from badged.cards.pcsc import CardRemoved, PcscUnavailable, TransactionFailed
from badged.cards.profile import CardReadError, ProfileReader
from badged.cards.reading import read_one
from badged.cards.simulator import SimulatedDesfire
from badged.cards.vpcd import VpcdCard
from badged.cli import main
from badged.config.errors import SecretError
from badged.config.tree import load_card_profile
from badged.demo.pcscd_sandbox import PcscdSandbox
from badged.demo.runner import DEMO_KEYS

REPO = Path(__file__).resolve().parents[2]
CARDS = REPO / "demo" / "cards"
_CROUS_CARD = yaml.safe_load((CARDS / "crous-card.yaml").read_text())
CROUS_NUMBER = _CROUS_CARD["applications"][0]["files"][0]["text"]
FULL_READ_APDUS = 7  # the demo profile on the crous card (test_card_read checks it)

Hook = Callable[[bytes, bytes], bytes]


# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Faulty profiles for the crous card, each beside the key files it names."""
    d = tmp_path_factory.mktemp("profiles")
    keys = {
        "wrong.key": ("FFEEDDCCBBAA99887766554433221100", 0o600),
        "open.key": (DEMO_KEYS["demo-crous-read"], 0o640),
    }
    for name, (value, mode) in keys.items():
        (d / name).write_text(value + "\n")
        (d / name).chmod(mode)
    crous_app = (
        '  - aid: "F58540"\n    key_type: aes\n    keys:\n      1: {KEY}\n'
        "    files:\n      - {id: 0, comm: enciphered, read_key: 1, meaning: crous_number}\n"
    )
    texts = {
        "wrong-key": crous_app.replace("KEY", "file: wrong.key"),
        "missing-key": crous_app.replace("KEY", "file: missing.key"),
        "open-key": crous_app.replace("KEY", "file: open.key"),
        "missing-app": '  - aid: "F51234"\n'
        "    files:\n      - {id: 0, comm: plain, read_key: free, meaning: raw}\n",
        "missing-file": '  - aid: "F58840"\n'
        "    files:\n      - {id: 7, comm: plain, read_key: free, meaning: raw}\n",
    }
    for name, apps in texts.items():
        (d / f"{name}.yaml").write_text(f"technology: desfire-ev1\napplications:\n{apps}")
    return d


class Faults:
    """A response hook that can be armed with a fault and disarmed, on a live card."""

    def __init__(self) -> None:
        self.fault: Hook | None = None
        self.hits = 0

    def __call__(self, apdu: bytes, response: bytes) -> bytes:
        if self.fault is None:
            return response
        changed = self.fault(apdu, response)
        self.hits += changed != response
        return changed


class LiveCard:
    """One card kept in reader 1 for the whole module (re-inserted if pcscd dropped it)."""

    def __init__(self, pcsc: PcscdSandbox, name: str) -> None:
        assert pcsc.port is not None
        self.pcsc = pcsc
        self.faults = Faults()
        engine = SimulatedDesfire.from_file(CARDS / f"{name}.yaml", response_hook=self.faults)
        self.card = VpcdCard(engine, port=pcsc.port + 1)
        self.reader = pcsc.readers[1]

    def ensure(self) -> LiveCard:
        self.faults.fault, self.faults.hits = None, 0
        if not self.card.inserted:
            self.card.insert()
            self.pcsc.wait_card(present=True, reader=1)
        return self


@pytest.fixture(scope="module")
def live_cards(pcsc: PcscdSandbox) -> Iterator[dict[str, LiveCard]]:
    cards: dict[str, LiveCard] = {}
    yield cards
    for live in cards.values():
        live.card.remove()
    if cards and pcsc.running:
        pcsc.wait_card(present=False, reader=1)


@pytest.fixture
def crous_card(pcsc: PcscdSandbox, live_cards: dict[str, LiveCard]) -> LiveCard:
    """The crous card in reader 1, faults disarmed."""
    return _live(pcsc, live_cards, "crous-card")


@pytest.fixture
def mac_card(pcsc: PcscdSandbox, live_cards: dict[str, LiveCard]) -> LiveCard:
    """The diversified card (its file is MACed) in reader 1, faults disarmed."""
    return _live(pcsc, live_cards, "diversified")


def _live(pcsc: PcscdSandbox, live_cards: dict[str, LiveCard], name: str) -> LiveCard:
    for other, live in list(live_cards.items()):  # one card at a time in reader 1
        if other != name and live.card.inserted:
            live.card.remove()
            pcsc.wait_card(present=False, reader=1)
    if name not in live_cards:
        live_cards[name] = LiveCard(pcsc, name)
    return live_cards[name].ensure()


def reader_for(ref: str, profiles: Path) -> ProfileReader:
    if ref == "demo":
        return ProfileReader(*load_card_profile(REPO / "config", "demo"))
    if ref == "diversified":
        return ProfileReader(*load_card_profile(None, str(REPO / "demo/profiles/diversified.yaml")))
    return ProfileReader(*load_card_profile(None, str(profiles / f"{ref}.yaml")))


def profile_arg(ref: str, profiles: Path) -> str:
    if ref == "demo":
        return "demo"
    if ref == "diversified":
        return str(REPO / "demo/profiles/diversified.yaml")
    return str(profiles / f"{ref}.yaml")


def cli(host_file: Path, credentials: Path, *args: str) -> Result:
    return CliRunner().invoke(
        main,
        ["--host-config", str(host_file), "card", "read", *args],
        env={"CREDENTIALS_DIRECTORY": str(credentials)},
    )


def assert_clean_failure(result: Result, *fragments: str) -> str:
    """Exit 1 through sys.exit (not an escaped exception), one message, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.stdout == ""
    assert "Traceback" not in result.output
    message = result.stderr.strip()
    assert message.startswith("error: "), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def assert_reads(profile: ProfileReader, reader: str) -> None:
    result = read_one(profile, reader, timeout=5)
    assert result.reader == reader
    assert result.crous_number == CROUS_NUMBER
    assert result.apdus == FULL_READ_APDUS


def ins(code: int) -> Callable[[bytes], bool]:
    return lambda apdu: apdu[:2] == bytes([0x90, code])


def on(match: Callable[[bytes], bool], change: Callable[[bytes], bytes]) -> Hook:
    return lambda apdu, response: change(response) if match(apdu) else response


def flip(index: int) -> Callable[[bytes], bytes]:
    def change(response: bytes) -> bytes:
        data = bytearray(response)
        data[index] ^= 0x01
        return bytes(data)

    return change


def is_enciphered_read(apdu: bytes) -> bool:
    """The crous card's CROUS number read (file 0 of F58540, after authentication)."""
    return apdu[:2] == b"\x90\xbd"


# --- card faults, the card staying in the reader -------------------------------------------

CARD_FAULTS = {
    # name: (card, profile, fault, cause type, message fragment)
    "wrong-key": (
        "crous_card", "wrong-key", None, AuthenticationError,
        "AuthenticateAES: SW 91AE (authentication error)",
    ),
    "bad-cmac": (
        "mac_card", "diversified", on(ins(0xBD), flip(-3)), ResponseMacError,
        "ReadData: response MAC does not verify",
    ),
    "bad-crc": (
        "crous_card", "demo",
        lambda a, r: flip(0)(r) if is_enciphered_read(a) and len(r) == 34 else r,
        ResponseCrcError, "ReadData: CRC of the deciphered response does not verify",
    ),
    "truncated-read": (
        "crous_card", "demo",
        lambda a, r: r[:5] + r[-2:] if is_enciphered_read(a) and len(r) == 34 else r,
        MalformedResponse, "ReadData: malformed response: enciphered reply of 5 bytes",
    ),
    "truncated-auth": (
        "crous_card", "demo", on(ins(0xAA), lambda r: r[:8] + r[-2:]), MalformedResponse,
        "AuthenticateAES: malformed response: E(RndB) is 8 bytes, expected 16",
    ),
    "unknown-status": (
        "crous_card", "demo", on(ins(0x5A), lambda r: r[:-2] + b"\x91\x77"), UnknownStatus,
        "SelectApplication: SW 9177 (unknown status)",
    ),
    "missing-app": (
        "crous_card", "missing-app", None, ApplicationNotFound,
        "SelectApplication: SW 91A0 (application not found)",
    ),
    "missing-file": (
        "crous_card", "missing-file", None, FileNotFound,
        "ReadData: SW 91F0 (file not found)",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CARD_FAULTS))
def test_card_fault_is_clear_and_the_next_read_succeeds(
    name: str, request, profiles: Path, credentials: Path, host_file: Path
) -> None:
    card_fixture, profile, fault, cause, fragment = CARD_FAULTS[name]
    live: LiveCard = request.getfixturevalue(card_fixture)
    reader = live.reader
    live.faults.fault = fault

    with pytest.raises(CardReadError) as err:
        read_one(reader_for(profile, profiles), reader, timeout=5)
    assert isinstance(err.value.__cause__, cause), repr(err.value.__cause__)
    assert err.value.reader == reader
    assert str(err.value).startswith(f"reader {reader!r}: {fragment}"), str(err.value)
    assert str(err.value).count(reader) == 1

    result = cli(host_file, credentials, "--profile", profile_arg(profile, profiles),
                 "--reader", reader, "--timeout", "5", "--json")  # fmt: skip
    assert_clean_failure(result, f"error: reader {reader!r}: {fragment}")
    if fault is not None:
        assert live.faults.hits == 2  # once per read: the fault really was injected

    live.faults.fault = None
    good = "diversified" if card_fixture == "mac_card" else "demo"
    after = read_one(reader_for(good, profiles), reader, timeout=5)
    assert after.reader == reader and after.crous_number is not None
    ok = cli(host_file, credentials, "--profile", profile_arg(good, profiles),
             "--reader", reader, "--timeout", "5", "--json")  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["crous_number"] == after.crous_number


def test_response_without_status_word(crous_card: LiveCard, credentials: Path) -> None:
    """A reply cut before its status word is a PC/SC-level failure, never data."""
    crous_card.faults.fault = lambda a, r: r[:1] if is_enciphered_read(a) else r
    with pytest.raises(CardReadError) as err:
        read_one(reader_for("demo", Path()), crous_card.reader, timeout=5)
    assert isinstance(err.value.__cause__, TransactionFailed)
    assert err.value.reason == "pcsc"
    assert str(err.value) == (
        f"reader {crous_card.reader!r}: response of 1 byte(s), no status word"
    )
    crous_card.faults.fault = None
    assert_reads(reader_for("demo", Path()), crous_card.reader)


# --- the card pulled between any two APDUs -------------------------------------------------


@pytest.mark.parametrize("n", range(1, FULL_READ_APDUS))
def test_card_pulled_after_n_apdus(
    n: int, pcsc, insert_card, credentials: Path, host_file: Path
) -> None:
    reader = pcsc.readers[0]
    profile = reader_for("demo", Path())
    card = insert_card(SimulatedDesfire.from_file(CARDS / "crous-card.yaml"))

    def pulled_again() -> None:
        pcsc.wait_card(present=False)
        card.insert()
        pcsc.wait_card(present=True)

    before = card.apdu_count
    card.pull_after(n)
    with pytest.raises(CardReadError) as err:
        read_one(profile, reader, timeout=5)
    assert card.apdu_count - before == n and card.last_exit == "pulled"
    assert isinstance(err.value.__cause__, CardRemoved), repr(err.value.__cause__)
    assert err.value.reason == "pcsc"
    assert str(err.value).startswith(f"reader {reader!r}: card removed")
    assert str(err.value).count(reader) == 1
    pulled_again()

    card.pull_after(n)
    result = cli(host_file, credentials, "--profile", "demo", "--reader", reader,
                 "--timeout", "5", "--json")  # fmt: skip
    assert_clean_failure(result, f"error: reader {reader!r}: card removed")
    pulled_again()

    assert_reads(profile, reader)


# --- key files: refused before any card is waited for --------------------------------------


@pytest.mark.parametrize(
    ("profile", "fragment"),
    [
        ("missing-key", "missing.key: No such file or directory"),
        ("open-key", "open.key is readable by group or others (mode 0640): chmod 600 it"),
    ],
)
def test_bad_key_file_is_refused_before_waiting(
    profile: str, fragment: str, pcsc, profiles: Path, credentials: Path, host_file: Path
) -> None:
    path = profiles / profile.replace("-key", ".key")
    with pytest.raises(SecretError) as err:
        reader_for(profile, profiles)
    assert str(path) in str(err.value) and fragment in str(err.value)

    start = time.monotonic()
    result = cli(host_file, credentials, "--profile", profile_arg(profile, profiles),
                 "--reader", pcsc.readers[0], "--timeout", "30")  # fmt: skip
    assert time.monotonic() - start < 5  # no card was waited for (there is none)
    assert_clean_failure(result, str(path), fragment)


# --- pcscd away -----------------------------------------------------------------------------


def test_pcscd_not_running(pcscd_restart, insert_card, credentials: Path, host_file: Path) -> None:
    sandbox = pcscd_restart
    reader = sandbox.readers[0]
    profile = reader_for("demo", Path())
    sandbox.stop()

    with pytest.raises(PcscUnavailable) as err:
        read_one(profile, reader, timeout=5)
    assert str(err.value).startswith(f"reader {reader!r}: ")
    assert "pcscd is not running" in str(err.value)
    result = cli(host_file, credentials, "--profile", "demo", "--reader", reader,
                 "--timeout", "5")  # fmt: skip
    assert_clean_failure(result, f"reader {reader!r}", "pcscd is not running",
                         "SCARD_E_NO_SERVICE")  # fmt: skip

    sandbox.start()
    insert_card(SimulatedDesfire.from_file(CARDS / "crous-card.yaml"))
    assert_reads(profile, reader)


def _kill_soon(sandbox: PcscdSandbox, delay: float = 0.4) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(delay), sandbox.kill()))
    thread.start()
    return thread


def test_pcscd_killed_while_waiting_for_a_card(
    pcscd_restart, insert_card, credentials: Path, host_file: Path
) -> None:
    """The watcher sees pcscd (and with it the reader) go away: a clear error, not a hang."""
    sandbox = pcscd_restart
    reader = sandbox.readers[0]
    profile = reader_for("demo", Path())

    killer = _kill_soon(sandbox)
    start = time.monotonic()
    with pytest.raises(PcscUnavailable) as err:
        read_one(profile, reader, timeout=10)
    killer.join()
    assert time.monotonic() - start < 5
    assert str(err.value).startswith(f"reader {reader!r}: ")
    assert "pcscd is not running or went away" in str(err.value)
    sandbox.start()

    killer = _kill_soon(sandbox)
    start = time.monotonic()
    result = cli(host_file, credentials, "--profile", "demo", "--reader", reader,
                 "--timeout", "10", "--json")  # fmt: skip
    killer.join()
    assert time.monotonic() - start < 5
    assert_clean_failure(result, f"reader {reader!r}", "pcscd is not running or went away")
    sandbox.start()

    insert_card(SimulatedDesfire.from_file(CARDS / "crous-card.yaml"))
    assert_reads(profile, reader)
