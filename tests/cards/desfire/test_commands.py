"""APDU framing, chaining and status mapping of DesfireCard, against a scripted card."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from badged.cards.desfire import errors
from badged.cards.desfire.aid import aid_to_wire, parse_aid
from badged.cards.desfire.commands import DesfireCard
from badged.cards.desfire.info import ACCESS_FREE, CommMode

H = bytes.fromhex


class Script:
    """A transmit that checks each APDU byte-for-byte and plays canned replies (an empty
    expected APDU takes any: a token drawn from a random number)."""

    def __init__(self, exchanges: Iterable[tuple[str, str]]) -> None:
        self.exchanges = [(H(a), H(r)) for a, r in exchanges]
        self.sent: list[bytes] = []

    def __call__(self, apdu: bytes) -> bytes:
        i = len(self.sent)
        self.sent.append(apdu)
        assert i < len(self.exchanges), f"unexpected APDU {apdu.hex()}"
        expected, reply = self.exchanges[i]
        assert not expected or apdu.hex().upper() == expected.hex().upper()
        return reply

    def done(self) -> None:
        assert len(self.sent) == len(self.exchanges)


def test_aid_byte_order() -> None:
    assert aid_to_wire("F58540") == H("4085F5")
    assert aid_to_wire(0xF58840) == H("4088F5")
    assert parse_aid("f58540") == 0xF58540
    for bad in ("F585", "F5854G", "F5854000"):
        with pytest.raises(ValueError):
            parse_aid(bad)


def test_select_application_apdu() -> None:
    script = Script([("905A0000034085F500", "9100")])
    card = DesfireCard(script)
    card.select_application("F58540")
    script.done()
    assert card.apdu_count == 1
    assert card.selected_aid == 0xF58540


def test_command_without_data_has_no_lc() -> None:
    script = Script([("906E000000", "0010009100")])
    assert DesfireCard(script).free_memory() == 0x1000
    script.done()


def test_get_uid_pcsc() -> None:
    script = Script([("FFCA000000", "041122334455669000")])
    assert DesfireCard(script).get_uid() == H("04112233445566")
    bad = Script([("FFCA000000", "6A81")])
    with pytest.raises(errors.StatusError, match=r"^GetUID: SW 6A81 \(function not supported\)$"):
        DesfireCard(bad).get_uid()


def test_get_uid_wrong_le_is_asked_again_with_the_exact_length() -> None:
    """PC/SC part 3 GET DATA: 6C xx gives the UID's length; 62 82 comes with a whole UID."""
    script = Script([("FFCA000000", "6C07"), ("FFCA000007", "041122334455669000")])
    card = DesfireCard(script)
    assert card.get_uid() == H("04112233445566")
    script.done()
    assert card.apdu_count == 2
    assert DesfireCard(Script([("FFCA000000", "084A5B6C6282")])).get_uid() == H("084A5B6C")
    twice = Script([("FFCA000000", "6C07"), ("FFCA000007", "6C04")])
    with pytest.raises(errors.StatusError,
                       match=r"^GetUID: SW 6C04 \(wrong Le: 4 bytes available\)$"):
        DesfireCard(twice).get_uid()
    with pytest.raises(errors.MalformedResponse, match="0 bytes is not a UID"):
        DesfireCard(Script([("FFCA000000", "6282")])).get_uid()


def test_get_version_three_frames() -> None:
    script = Script(
        [
            ("9060000000", "040101010018 05 91AF".replace(" ", "")),
            ("90AF000000", "04010101041805 91AF".replace(" ", "")),
            ("90AF000000", "04112233445566 BA5E1D8040 2619 9100".replace(" ", "")),
        ]
    )
    card = DesfireCard(script)
    v = card.get_version()
    script.done()
    assert card.apdu_count == 3
    assert (v.hardware.vendor_id, v.hardware.major, v.hardware.storage_size) == (4, 1, 4096)
    assert v.hardware.generation == "EV1"
    assert v.software.minor == 4
    assert v.uid == H("04112233445566")
    assert v.batch == H("BA5E1D8040")
    assert (v.production_week, v.production_year) == (0x26, 0x19)


def test_get_version_short_is_malformed() -> None:
    script = Script([("9060000000", "04010101001805 9100".replace(" ", ""))])
    with pytest.raises(errors.MalformedResponse, match=r"^GetVersion: malformed response"):
        DesfireCard(script).get_version()


def test_read_data_apdu_and_receive_chaining() -> None:
    first, second = bytes(range(59)), bytes(range(59, 100))
    script = Script(
        [
            ("90BD0000070210000064000000", first.hex() + "91AF"),
            ("90AF000000", second.hex() + "9100"),
        ]
    )
    card = DesfireCard(script)
    assert card.read_data(2, offset=0x10, length=100) == first + second
    script.done()


def test_read_data_length_mismatch_is_malformed() -> None:
    script = Script([("90BD0000070000000005000000", "0102039100")])
    with pytest.raises(errors.MalformedResponse, match="3 data bytes, asked for 5"):
        DesfireCard(script).read_data(0, length=5)


def test_send_chaining_splits_long_command_data() -> None:
    data = bytes(range(70))
    script = Script(
        [
            ("903D000037" + data[:55].hex() + "00", "91AF"),
            ("90AF00000F" + data[55:].hex() + "00", "9100"),
        ]
    )
    card = DesfireCard(script, max_frame_data=55)
    assert card.command("WriteData", 0x3D, data) == b""
    script.done()


def test_send_chaining_error_midway() -> None:
    data = bytes(70)
    script = Script([("903D000037" + data[:55].hex() + "00", "917E")])
    with pytest.raises(errors.LengthError):
        DesfireCard(script).command("WriteData", 0x3D, data)


def test_get_file_settings_parse() -> None:
    # standard file, enciphered, read 1 / write 0 / rw E / change 0, size 32
    script = Script([("90F50000010000", "0003E0102000009100")])
    fs = DesfireCard(script).get_file_settings(0)
    assert fs.comm is CommMode.ENCIPHERED
    assert (fs.access.read, fs.access.write, fs.access.read_write, fs.access.change) == (
        1,
        0,
        ACCESS_FREE,
        0,
    )
    assert fs.size == 32


def test_get_file_settings_by_file_type() -> None:
    """Value files (17 bytes) and record files (13) parse; a wrong length is malformed."""
    value = "0201" + "E000" + "00000000" + "E8030000" + "00000000" + "00"
    record = "0400" + "E010" + "100000" + "0A0000" + "030000"
    script = Script([("90F50000010100", value + "9100"), ("90F50000010200", record + "9100")])
    card = DesfireCard(script)
    fs = card.get_file_settings(1)
    assert (fs.file_type, fs.comm, fs.access.read, fs.size) == (2, CommMode.MAC, 0, None)
    fs = card.get_file_settings(2)
    assert (fs.file_type, fs.access.read, fs.access.write, fs.size) == (4, 1, 0, 16)
    for reply, message in [
        (value[:-2], "value file settings are 17 bytes, got 16"),
        (record + "00", "cyclic record file settings are 13 bytes, got 14"),
        ("0000E01020000000", "standard file settings are 7 bytes, got 8"),
        ("0700E010", "file type 0x07 is not an EV1 file type"),
    ]:
        bad = Script([("90F50000010100", reply + "9100")])
        with pytest.raises(errors.MalformedResponse, match=f"^GetFileSettings: malformed "
                           f"response: {message}"):
            DesfireCard(bad).get_file_settings(1)


def test_get_key_settings_and_ids() -> None:
    script = Script(
        [
            ("9045000000", "0B829100"),
            ("906A000000", "4085F54088F59100"),
            ("906F000000", "00019100"),
            ("90640000010100", "109100"),
        ]
    )
    card = DesfireCard(script)
    ks = card.get_key_settings()
    assert (ks.settings, ks.key_count, ks.crypto) == (0x0B, 2, "aes")
    assert card.get_application_ids() == ["F58540", "F58840"]
    assert card.get_file_ids() == [0, 1]
    assert card.get_key_version(1) == 0x10
    script.done()


@pytest.mark.parametrize(
    ("sw", "cls", "text"),
    [
        ("91AE", errors.AuthenticationError, "authentication error"),
        ("919D", errors.PermissionDenied, "permission denied"),
        ("91A0", errors.ApplicationNotFound, "application not found"),
        ("91F0", errors.FileNotFound, "file not found"),
        ("91BE", errors.BoundaryError, "boundary error"),
        ("911C", errors.IllegalCommand, "illegal command"),
        ("917E", errors.LengthError, "length error"),
        ("9140", errors.NoSuchKey, "no such key"),
        ("919E", errors.ParameterError, "parameter error"),
        ("91CA", errors.CommandAborted, "command aborted"),
        ("911E", errors.IntegrityError, "integrity error reported by the card"),
        ("910C", errors.NoChanges, "no changes"),
        ("91C1", errors.PiccIntegrityError, "PICC integrity error"),
        ("91CD", errors.PiccDisabled, "PICC disabled"),
        ("91EE", errors.EepromError, "EEPROM error"),
        ("91F1", errors.FileIntegrityError, "file integrity error"),
        ("9177", errors.UnknownStatus, "unknown status"),
        ("6A81", errors.StatusError, "function not supported"),
        ("6D00", errors.StatusError, "instruction not supported"),
        ("6700", errors.StatusError, "wrong length"),
        # ISO 7816-4 words by family: SW2 of 6C and 61 is a byte count
        ("6C10", errors.StatusError, "wrong Le: 16 bytes available"),
        ("6110", errors.StatusError, "16 more bytes available"),
        ("6710", errors.StatusError, "wrong length"),
        ("6A88", errors.StatusError, "wrong parameters"),
        ("6983", errors.StatusError, "command not allowed"),
        ("9000", errors.StatusError, "ISO success where a native 91xx status was expected"),
        ("1234", errors.UnknownStatus, "unknown status"),
    ],
)
def test_status_mapping(sw: str, cls: type[errors.StatusError], text: str) -> None:
    script = Script([("90BD0000070000000000000000", sw)])
    with pytest.raises(cls) as info:
        DesfireCard(script).read_data(0)
    exc = info.value
    assert type(exc) is cls
    assert isinstance(exc, errors.StatusError)
    assert exc.command == "ReadData"
    assert exc.sw == int(sw, 16)
    assert str(exc) == f"ReadData: SW {sw} ({text})"
    assert "\n" not in str(exc)


def test_native_success_words_out_of_place_are_named() -> None:
    """91 00 where the card should ask for the next frame, 91 AF where it should finish."""
    from badged.cards.desfire.keys import DesfireKey, KeyType

    key = DesfireKey(KeyType.AES, bytes(16))
    early = Script([("90AA0000010100", "00" * 16 + "9100")])
    with pytest.raises(errors.StatusError, match=r"^AuthenticateAES: SW 9100 \(native OK "
                       r"where another status was expected\)$"):
        DesfireCard(early).authenticate(1, key)
    late = Script([("90AA0000010100", "00" * 16 + "91AF"), ("", "91AF")])
    card = DesfireCard(late)
    with pytest.raises(errors.StatusError, match=r"^AuthenticateAES: SW 91AF \(additional "
                       r"frame where none was expected\)$"):
        card.authenticate(1, key)


def test_card_faults_share_a_base() -> None:
    for sw in (0x91C1, 0x91CD, 0x91EE, 0x91F1):
        assert isinstance(errors.status_error("X", sw), errors.CardFault)


@pytest.mark.parametrize("reply", ["", "91"])
def test_truncated_response_is_malformed(reply: str) -> None:
    script = Script([("9060000000", reply)])
    with pytest.raises(errors.MalformedResponse) as info:
        DesfireCard(script).get_version()
    assert (
        str(info.value)
        == f"GetVersion: malformed response: {len(reply) // 2} bytes, no status word"
    )


def test_application_ids_odd_length_is_malformed() -> None:
    script = Script([("906A000000", "4085F5409100")])
    with pytest.raises(errors.MalformedResponse, match="4 bytes is not n × 3"):
        DesfireCard(script).get_application_ids()


def test_endless_af_is_bounded() -> None:
    calls = 0

    def transmit(apdu: bytes) -> bytes:
        nonlocal calls
        calls += 1
        return H("0091AF")

    with pytest.raises(errors.MalformedResponse, match="more than 256 frames"):
        DesfireCard(transmit).get_file_ids()
    assert calls == 256


def test_authenticate_apdus_and_refusal() -> None:
    from badged.cards.desfire.keys import DesfireKey, KeyType

    script = Script([("90AA0000010100", "91AE")])
    card = DesfireCard(script)
    with pytest.raises(errors.AuthenticationError, match=r"^AuthenticateAES: SW 91AE"):
        card.authenticate(1, DesfireKey(KeyType.AES, bytes(16)))
    with pytest.raises(ValueError, match="legacy authentication cannot use a aes key"):
        card.authenticate(0, DesfireKey(KeyType.AES, bytes(16)), "legacy")
    with pytest.raises(ValueError, match="aes authentication cannot use a des key"):
        card.authenticate(0, DesfireKey(KeyType.DES, bytes(8)), "aes")


def test_authenticate_wrong_ek_length_is_malformed() -> None:
    from badged.cards.desfire.keys import DesfireKey, KeyType

    script = Script([("901A0000010000", "0011223391AF")])
    with pytest.raises(errors.MalformedResponse, match="E\\(RndB\\) is 4 bytes, expected 8"):
        DesfireCard(script).authenticate(0, DesfireKey(KeyType.TDES_2K, bytes(range(16))))
