"""The CROUS's SAM: a reader whose card is a SAM is tracked as `badged_sam_up`, not read."""

from __future__ import annotations

SAM_READER, DESK = "Virtual PCD 00 01", "Virtual PCD 00 00"
# A contact card's ATR (T=1, historical bytes): not a PC/SC part 3 contactless ATR.
SAM_ATR = bytes.fromhex("3B9F9681B1FE451F070064051E7203003100C073F001E000")


class Sam:
    """A SAM as vpcd serves it: it answers, but badged never sends it a command."""

    atr = SAM_ATR

    def __init__(self) -> None:
        self.apdus: list[bytes] = []

    def power_on(self) -> None: ...
    def power_off(self) -> None: ...

    def process(self, apdu: bytes) -> bytes:
        self.apdus.append(apdu)
        return b"\x6d\x00"


def test_sam_presence_follows_the_slot(site, start_daemon, insert_card, pcsc) -> None:
    site.set_readers([(DESK, "enrolment"), (SAM_READER, "sam")])
    daemon = start_daemon()
    daemon.wait_metric("badged_sam_up", 0, reader=SAM_READER)
    assert daemon.metric("badged_reader_up", reader=DESK) == 1
    assert daemon.metric("badged_reader_up", reader=SAM_READER) is None
    sam = Sam()
    card = insert_card(sam, reader=1)
    daemon.wait_metric("badged_sam_up", 1, reader=SAM_READER)
    assert daemon.status()["sams"] == {SAM_READER: True}
    assert sam.apdus == []  # present means usable: nothing is read from a SAM
    assert daemon.metric("badged_card_reads_total", reader=SAM_READER) is None
    card.remove()
    daemon.wait_metric("badged_sam_up", 0, reader=SAM_READER)
