"""The reader library against the simulator engine, in process (no PC/SC)."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from badged.cards.desfire import errors
from badged.cards.desfire.commands import DesfireCard
from badged.cards.desfire.crypto import an10922_aes128
from badged.cards.desfire.info import ACCESS_FREE, CommMode
from badged.cards.desfire.keys import DesfireKey, KeyType
from badged.cards.simulator import DEFAULT_ATR, SimulatedDesfire, parse_card_file

H = bytes.fromhex
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cards"

SHORT = b"249760531028417"
LONG = bytes((i * 7 + 3) & 0xFF for i in range(200))
KEYS = {
    "aes": ["000102030405060708090A0B0C0D0E0F", "F0E1D2C3B4A5968778695A4B3C2D1E0F"],
    "3k3des": [
        "00112233445566778899AABBCCDDEEFF0123456789ABCDEF",
        "FEDCBA98765432100123456789ABCDEF0F1E2D3C4B5A6978",
    ],
    "2k3des": ["00112233445566778899AABBCCDDEEFF", "0123456789ABCDEFFEDCBA9876543210"],
    "des": ["0011223344556677", "8899AABBCCDDEEFF"],
}


def seeded(seed: int = 1) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def card_yaml(key_type: str, keys: list[str] | None = None, settings: str = "0x0B") -> str:
    keys = keys or KEYS[key_type]
    files = []
    for n, (comm, data) in enumerate(
        [
            ("plain", SHORT),
            ("mac", SHORT),
            ("enciphered", SHORT),
            ("plain", LONG),
            ("mac", LONG),
            ("enciphered", LONG),
        ]
    ):
        files.append(
            f"""      - id: {n}
        comm: {comm}
        access: {{read: 1, write: 0, read_write: never, change: 0}}
        hex: "{data.hex()}"
"""
        )
    files.append(
        f"""      - {{id: 6, comm: enciphered, access: {{read: free, write: 0, read_write: never,
           change: 0}}, hex: "{SHORT.hex()}"}}
      - {{id: 7, comm: plain, access: {{read: never, write: 0, read_write: never, change: 0}},
         text: "secret"}}
      - {{id: 8, comm: mac, access: {{read: never, write: 1, read_write: 0, change: 0}},
         text: "rw"}}
"""
    )
    key_lines = "".join(f'      - "{k}"\n' for k in keys)
    return f"""name: test
uid: "04112233445566"
picc: {{key_type: aes, key: "00000000000000000000000000000000", key_settings: 0x0F}}
applications:
  - aid: "F58540"
    key_type: {key_type}
    key_settings: {settings}
    keys:
{key_lines}    files:
{"".join(files)}"""


def make(
    key_type: str = "aes",
    *,
    hook: Callable[[bytes, bytes], bytes] | None = None,
    keys: list[str] | None = None,
    settings: str = "0x0B",
) -> tuple[SimulatedDesfire, DesfireCard]:
    spec = parse_card_file(card_yaml(key_type, keys, settings))
    sim = SimulatedDesfire(spec, rng=seeded(), response_hook=hook)
    return sim, DesfireCard(sim.process, rng=seeded(2))


def key(key_type: str, n: int = 1) -> DesfireKey:
    return DesfireKey.from_hex(key_type, KEYS[key_type][n])


FILES = [
    (0, "plain", SHORT),
    (1, "mac", SHORT),
    (2, "enciphered", SHORT),
    (3, "plain", LONG),
    (4, "mac", LONG),
    (5, "enciphered", LONG),
]
MATRIX = [
    ("aes", "aes"),
    ("3k3des", "iso"),
    ("2k3des", "iso"),
    ("2k3des", "legacy"),
    ("des", "iso"),
    ("des", "legacy"),
]


# -- key types × auth modes × comm modes --------------------------------------------------


@pytest.mark.parametrize(("key_type", "mode"), MATRIX)
def test_reads_every_comm_mode(key_type: str, mode: str) -> None:
    sim, card = make(key_type)
    card.select_application("F58540")
    card.authenticate(1, key(key_type), mode)
    assert sim.authenticated_key == 1
    expected_scheme = "legacy" if mode == "legacy" else "ev1"
    assert card.session is not None and card.session.scheme == expected_scheme
    # several commands in one session: the running IV must stay in step
    for file_no, comm, data in FILES:
        assert card.read_data(file_no, comm=comm) == data, (file_no, comm)
        assert card.read_data(file_no, offset=3, length=9, comm=comm) == data[3:12]
        assert card.read_data(file_no, offset=5, comm=comm) == data[5:]
    assert card.get_file_settings(2).comm is CommMode.ENCIPHERED
    assert card.get_key_version(0) == key(key_type, 0).key_version
    assert card.get_file_ids() == list(range(9))
    assert card.get_version().uid == H("04112233445566")
    assert card.get_card_uid() == H("04112233445566")
    # free file: plain even though its comm setting is enciphered
    assert card.read_data(6, comm="plain") == SHORT
    assert card.session is not None


@pytest.mark.parametrize("mode", ["iso", "legacy"])
def test_single_des_2k3des_key(mode: str) -> None:
    """A 2K3DES key with K1 == K2 (parity ignored) behaves as DES, session key included."""
    twin = "00112233445566770111223344556677"
    _, card = make("2k3des", keys=[twin, twin])
    card.select_application("F58540")
    card.authenticate(1, DesfireKey.from_hex("2k3des", twin), mode)
    assert card.session is not None and card.session.key.type is KeyType.DES
    assert card.read_data(5, comm="enciphered") == LONG
    assert card.read_data(4, comm="mac") == LONG
    # the same key given as DES works too
    card.authenticate(1, DesfireKey.from_hex("des", twin[:16]), mode)
    assert card.read_data(2, comm="enciphered") == SHORT


def test_multiframe_reads_use_59_byte_frames() -> None:
    frames: list[bytes] = []

    def record(apdu: bytes, response: bytes) -> bytes:
        frames.append(response)
        return response

    _, card = make("aes", hook=record)
    card.select_application("F58540")
    card.authenticate(1, key("aes"))
    frames.clear()
    assert card.read_data(5, comm="enciphered") == LONG
    # 200 + CRC 4 → 208 bytes enciphered: 59 + 59 + 59 + 31
    assert [len(f) - 2 for f in frames] == [59, 59, 59, 31]
    assert [f[-2:] for f in frames] == [H("91AF")] * 3 + [H("9100")]


def test_typical_read_apdus_and_count() -> None:
    sent: list[str] = []

    def record(apdu: bytes, response: bytes) -> bytes:
        sent.append(apdu.hex().upper())
        return response

    _, card = make("aes", hook=record)
    card.select_application("F58540")
    card.authenticate(1, key("aes"))
    assert card.read_data(2, comm="enciphered") == SHORT
    assert card.apdu_count == 4
    assert sent[0] == "905A0000034085F500"
    assert sent[1] == "90AA0000010100"
    assert sent[2].startswith("90AF000020") and sent[2].endswith("00") and len(sent[2]) == 2 * 38
    assert sent[3] == "90BD0000070200000000000000"


# -- identity: UID, random UID, GetCardUID, GetVersion ------------------------------------


def test_pcsc_uid_and_atr() -> None:
    sim, card = make()
    assert sim.atr == DEFAULT_ATR == H("3B8180018080")
    assert card.get_uid() == H("04112233445566")
    assert sim.process(H("FFCA010000")) == H("6A81")
    # GET DATA as a reader answers an exact Le (PC/SC part 3): short → 6C xx, long → 62 82
    assert sim.process(H("FFCA000007")) == H("041122334455669000")
    assert sim.process(H("FFCA000004")) == H("6C07")
    assert sim.process(H("FFCA000010")) == H("041122334455666282")


def test_random_uid_card() -> None:
    sim = SimulatedDesfire.from_file(FIXTURES / "good-random-uid.yaml", rng=seeded(7))
    card = DesfireCard(sim.process, rng=seeded(8))
    first = card.get_uid()
    assert len(first) == 4 and first[0] == 0x08
    assert card.get_uid() == first  # stable while powered
    sim.power_off()
    sim.power_on()
    second = card.get_uid()
    assert len(second) == 4 and second[0] == 0x08 and second != first
    assert card.get_version().uid == bytes(7)
    # GetCardUID needs authentication: the card answers 91AE
    with pytest.raises(errors.AuthenticationError):
        card.command("GetCardUID", 0x51)
    card.authenticate(0, DesfireKey(KeyType.DES, bytes(8)))  # PICC master key, legacy
    assert card.get_card_uid() == H("04440F32763180")
    card.select_application("F58540")
    card.authenticate(1, DesfireKey.from_hex("2k3des", "0123456789ABCDEFFEDCBA9876543210"))
    assert card.get_card_uid() == H("04440F32763180")
    assert card.read_data(0, comm="mac") == b"hello".ljust(32, b"\x00")


def test_get_version_after_ev1_auth_has_one_cmac() -> None:
    sizes: list[int] = []

    def record(apdu: bytes, response: bytes) -> bytes:
        sizes.append(len(response) - 2)
        return response

    _, card = make("aes", hook=record)
    card.authenticate(0, DesfireKey(KeyType.AES, bytes(16)))  # PICC AES key
    sizes.clear()
    version = card.get_version()
    assert sizes == [7, 7, 14 + 8]
    assert version.hardware.storage_size == 4096 and version.software.major == 1
    assert card.get_application_ids() == ["F58540"]
    assert card.get_key_settings().crypto == "aes"


def test_crous_fixture_with_diversified_key() -> None:
    sim = SimulatedDesfire.from_file(FIXTURES / "good-crous-card.yaml", rng=seeded())
    card = DesfireCard(sim.process)
    master = H("00112233445566778899AABBCCDDEEFF")
    div = H("04112233445566") + H("4085F5") + H("4E585020416275")
    card.select_application("F58540")
    card.authenticate(1, DesfireKey(KeyType.AES, an10922_aes128(master, div)))
    assert card.read_data(0, comm="enciphered") == b"249760531028417"
    # the ESC application: free plain read without authentication
    card.select_application("F58840")
    assert card.session is None
    assert card.read_data(0) == H("0123456789ABCDEF0123456789ABCDEF")
    assert card.get_file_settings(0).access.read == ACCESS_FREE


@pytest.mark.parametrize(
    ("parts", "wire"),
    [
        ('[uid, aid, "4E585020416275"]', H("04112233445566") + H("4085F5") + H("4E585020416275")),
        ("[aid_msb, uid]", H("F58540") + H("04112233445566")),
        ('["0102"]', H("0102")),
    ],
)
def test_diversification_inputs(parts: str, wire: bytes) -> None:
    master = "F3F9377698707B688EAF84ABE39E3791"
    text = f"""uid: "04112233445566"
applications:
  - aid: "F58540"
    key_type: aes
    keys:
      - diversify: {{master: "{master}", input: {parts}}}
"""
    spec = parse_card_file(text)
    assert spec.applications[0].keys[0].data == an10922_aes128(H(master), wire)


def test_diversified_key_with_wrong_aid_order_is_refused() -> None:
    sim = SimulatedDesfire.from_file(FIXTURES / "good-crous-card.yaml")
    card = DesfireCard(sim.process)
    master = H("00112233445566778899AABBCCDDEEFF")
    wrong = H("04112233445566") + H("F58540") + H("4E585020416275")  # AID MSB first
    card.select_application("F58540")
    with pytest.raises(errors.AuthenticationError):
        card.authenticate(1, DesfireKey(KeyType.AES, an10922_aes128(master, wrong)))


# -- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(("key_type", "mode"), MATRIX)
def test_wrong_key_then_correct_reauth(key_type: str, mode: str) -> None:
    sim, card = make(key_type)
    card.select_application("F58540")
    with pytest.raises(errors.AuthenticationError) as info:
        card.authenticate(1, key(key_type, 0), mode)
    assert info.value.sw == 0x91AE
    assert card.session is None and sim.authenticated_key is None
    card.authenticate(1, key(key_type), mode)
    assert card.read_data(2, comm="enciphered") == SHORT


def test_auth_command_must_match_key_type() -> None:
    _, card = make("aes")
    card.select_application("F58540")
    with pytest.raises(errors.AuthenticationError):
        card.authenticate(1, DesfireKey(KeyType.TDES_2K, bytes(range(16))), "iso")
    _, card = make("3k3des")
    card.select_application("F58540")
    with pytest.raises(errors.AuthenticationError):  # 0A is DES/2K3DES only
        card.authenticate(1, DesfireKey(KeyType.TDES_2K, bytes(range(16))), "legacy")


def test_no_such_key() -> None:
    _, card = make("aes")
    card.select_application("F58540")
    with pytest.raises(errors.NoSuchKey, match=r"^AuthenticateAES: SW 9140 \(no such key\)$"):
        card.authenticate(5, key("aes"))


def test_missing_application_and_file() -> None:
    _, card = make()
    with pytest.raises(errors.ApplicationNotFound, match=r"^SelectApplication: SW 91A0"):
        card.select_application("123456")
    card.select_application("F58540")
    card.authenticate(1, key("aes"))
    with pytest.raises(errors.FileNotFound, match=r"^ReadData: SW 91F0 \(file not found\)$"):
        card.read_data(9)
    assert card.session is None  # any error ends the session...
    with pytest.raises(errors.AuthenticationError):  # ...on the card too
        card.read_data(0)


def test_access_rights() -> None:
    _, card = make()
    card.select_application("F58540")
    with pytest.raises(errors.AuthenticationError):  # key 1 needed, not authenticated
        card.read_data(0)
    with pytest.raises(errors.PermissionDenied):  # never
        card.read_data(7)
    card.authenticate(0, key("aes", 0))
    assert card.read_data(8, comm="mac") == b"rw"  # the read-write key reads too
    with pytest.raises(errors.AuthenticationError):  # authenticated, but with key 0
        card.read_data(0)


def test_listing_needs_master_key_without_free_directory() -> None:
    _, card = make("aes", settings="0x09")
    card.select_application("F58540")
    with pytest.raises(errors.AuthenticationError):
        card.get_file_ids()
    card.authenticate(0, key("aes", 0))
    assert card.get_file_ids() == list(range(9))
    assert card.get_key_settings().settings == 0x09


def test_boundary_and_unknown_command() -> None:
    _, card = make()
    card.select_application("F58540")
    card.authenticate(1, key("aes"))
    with pytest.raises(errors.BoundaryError, match=r"^ReadData: SW 91BE"):
        card.read_data(0, offset=10, length=10)
    card.authenticate(1, key("aes"))
    with pytest.raises(errors.IllegalCommand, match=r"^Frobnicate: SW 911C"):
        card.command("Frobnicate", 0x77)
    assert card.session is None


def test_power_on_resets_session_and_selection() -> None:
    sim, card = make()
    card.select_application("F58540")
    card.authenticate(1, key("aes"))
    sim.power_on()
    with pytest.raises(errors.FileNotFound):  # back at PICC level: no files
        card.read_data(0)


def test_malformed_apdus() -> None:
    sim, _ = make()
    assert sim.process(H("90")) == H("6700")
    assert sim.process(H("905A000005AABB00")) == H("6700")  # Lc says 5, 2 bytes follow
    assert sim.process(H("00A4040000")) == H("6E00")
    assert sim.process(H("9060010000")) == H("6A86")
    assert sim.process(H("90AF000000")) == H("911C")  # nothing to continue


# -- fault injection ----------------------------------------------------------------------


def corrupt(ins: int, fn: Callable[[bytes], bytes]) -> Callable[[bytes, bytes], bytes]:
    def hook(apdu: bytes, response: bytes) -> bytes:
        return fn(response) if apdu[1] == ins else response

    return hook


def flip_before_sw(response: bytes) -> bytes:
    return response[:-3] + bytes([response[-3] ^ 0x01]) + response[-2:]


@pytest.mark.parametrize(("key_type", "file_no"), [("aes", 0), ("aes", 1), ("des", 1)])
def test_corrupted_mac(key_type: str, file_no: int) -> None:
    _, card = make(key_type, hook=corrupt(0xBD, flip_before_sw))
    card.select_application("F58540")
    card.authenticate(1, key(key_type))
    with pytest.raises(errors.ResponseMacError) as info:
        card.read_data(file_no, comm="mac")
    assert str(info.value) == "ReadData: response MAC does not verify"
    assert isinstance(info.value, errors.IntegrityFailure)
    assert card.session is None


@pytest.mark.parametrize(("key_type", "length"), [("aes", 0), ("aes", 15), ("2k3des", 0)])
def test_corrupted_crc(key_type: str, length: int) -> None:
    _, card = make(key_type, hook=corrupt(0xBD, flip_before_sw))
    card.select_application("F58540")
    card.authenticate(1, key(key_type))
    with pytest.raises(errors.ResponseCrcError, match=r"^ReadData: CRC"):
        card.read_data(2, length=length, comm="enciphered")


def test_corrupted_card_uid_crc() -> None:
    _, card = make("aes", hook=corrupt(0x51, flip_before_sw))
    card.select_application("F58540")
    card.authenticate(1, key("aes"))
    with pytest.raises(errors.ResponseCrcError, match=r"^GetCardUID: CRC"):
        card.get_card_uid()


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (lambda r: r[:1], "ReadData: malformed response: 1 bytes, no status word"),
        (
            lambda r: r[:5] + r[-2:],
            "ReadData: malformed response: 5 bytes cannot hold the 8-byte CMAC",
        ),
    ],
)
def test_truncated_response(cut: Callable[[bytes], bytes], message: str) -> None:
    _, card = make("aes", hook=corrupt(0xBD, cut))
    card.select_application("F58540")
    card.authenticate(1, key("aes"))
    with pytest.raises(errors.MalformedResponse) as info:
        card.read_data(0)
    assert str(info.value) == message


def test_truncated_enciphered_response() -> None:
    _, card = make("aes", hook=corrupt(0xBD, lambda r: r[:10] + r[-2:]))
    card.select_application("F58540")
    card.authenticate(1, key("aes"))
    with pytest.raises(errors.MalformedResponse, match="not a whole number of 16-byte blocks"):
        card.read_data(2, comm="enciphered")


@pytest.mark.parametrize(
    ("sw", "cls"), [("9177", errors.UnknownStatus), ("6F00", errors.StatusError)]
)
def test_unknown_status_word(sw: str, cls: type[errors.StatusError]) -> None:
    _, card = make("aes", hook=corrupt(0xBD, lambda r: H(sw)))
    card.select_application("F58540")
    card.authenticate(1, key("aes"))
    with pytest.raises(cls) as info:
        card.read_data(0)
    assert info.value.sw == int(sw, 16)
    assert str(info.value).startswith(f"ReadData: SW {sw} (")


def test_card_proof_mismatch_is_mutual_auth_failure() -> None:
    def spoil(apdu: bytes, response: bytes) -> bytes:
        if apdu[1] == 0xAF and response[-2:] == H("9100"):
            return bytes([response[0] ^ 1]) + response[1:]
        return response

    _, card = make("aes", hook=spoil)
    card.select_application("F58540")
    with pytest.raises(errors.MutualAuthFailure):
        card.authenticate(1, key("aes"))
    assert card.session is None
