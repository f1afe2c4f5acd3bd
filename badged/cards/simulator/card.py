"""A virtual MIFARE DESFire EV1 card: the card side, one APDU in, one response out.

No sockets here: a connector (vpcd) feeds :meth:`SimulatedDesfire.process`. The card
keeps real state (`state.py`: selected application, authenticated key, running IV,
pending AF frames), answers the native commands of `commands.py`, and reuses the
library's secure messaging in card mode, so what the reader library accepts is what a
real EV1 sends. Its content comes from a card file (`cardfile.py`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from badged.cards.simulator.cardfile import load_card_file
from badged.cards.simulator.commands import COMMANDS, SESSION_ENDERS
from badged.cards.simulator.spec import CardSpec
from badged.cards.simulator.state import CardState, Reply, Status

MAX_FRAME = 59  # data bytes per response frame, as a real EV1 sends them
ResponseHook = Callable[[bytes, bytes], bytes]

SW_OK = b"\x90\x00"
SW_END_OF_DATA = b"\x62\x82"
SW_WRONG_LENGTH = b"\x67\x00"
SW_NOT_SUPPORTED = b"\x6a\x81"
SW_WRONG_P1P2 = b"\x6a\x86"
SW_INS_NOT_SUPPORTED = b"\x6d\x00"
SW_CLA_NOT_SUPPORTED = b"\x6e\x00"


def _apdu_data(body: bytes) -> bytes | None:
    """Data of a short APDU body (cases 1-4), or None when Lc/Le do not add up."""
    if len(body) <= 1:
        return b""
    lc = body[0]
    if lc == 0 or len(body) not in (1 + lc, 2 + lc):
        return None
    return body[1 : 1 + lc]


class SimulatedDesfire:
    """A DESFire EV1 card in memory.

    ``rng`` draws RndB and random ids (inject for reproducible tests);
    ``response_hook(apdu, response)`` may rewrite what is sent back (fault injection).
    """

    def __init__(
        self,
        spec: CardSpec,
        *,
        rng: Callable[[int], bytes] = os.urandom,
        response_hook: ResponseHook | None = None,
    ) -> None:
        self.spec = spec
        self.atr = spec.atr
        self.response_hook = response_hook
        self._rng = rng
        self._state = CardState(spec, rng)
        self.random_id: bytes | None = None
        self.powered = False
        self.power_on()

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        rng: Callable[[int], bytes] = os.urandom,
        response_hook: ResponseHook | None = None,
    ) -> SimulatedDesfire:
        return cls(load_card_file(Path(path)), rng=rng, response_hook=response_hook)

    # -- field -------------------------------------------------------------------------

    def power_on(self) -> None:
        """Card enters the field: PICC level, no session; random-UID cards draw a new id."""
        self._state.reset()
        if self.spec.random_uid:
            self.random_id = b"\x08" + self._rng(3)
        self.powered = True

    def power_off(self) -> None:
        self._state.reset()
        self.powered = False

    @property
    def pcsc_uid(self) -> bytes:
        """What ``FF CA 00 00 00`` returns: the UID, or the random id."""
        return self.random_id if self.spec.random_uid and self.random_id else self.spec.uid

    @property
    def authenticated_key(self) -> int | None:
        session = self._state.session
        return session.key_no if session else None

    # -- APDU level --------------------------------------------------------------------

    def process(self, apdu: bytes) -> bytes:
        """One command APDU in, response data + SW out (through ``response_hook``)."""
        apdu = bytes(apdu)
        response = self._process(apdu)
        if self.response_hook is not None:
            response = self.response_hook(apdu, response)
        return response

    def _process(self, apdu: bytes) -> bytes:
        if len(apdu) < 4:
            return SW_WRONG_LENGTH
        cla, ins, p1, p2 = apdu[:4]
        data = _apdu_data(apdu[4:])
        if data is None:
            return SW_WRONG_LENGTH
        if cla == 0xFF:
            if ins != 0xCA:
                return SW_INS_NOT_SUPPORTED
            if (p1, p2) != (0, 0):
                return SW_NOT_SUPPORTED
            return self._get_data_uid(apdu[4] if len(apdu) == 5 else 0)
        if cla != 0x90:
            return SW_CLA_NOT_SUPPORTED
        if p1 or p2:
            return SW_WRONG_P1P2
        return self._native(ins, data)

    def _get_data_uid(self, le: int) -> bytes:
        """PC/SC GET DATA as a reader answers it: Le 00 is the whole UID; a shorter Le
        gets ``6C xx`` (the exact length), a longer one the UID with ``62 82``."""
        uid = self.pcsc_uid
        if le == 0 or le == len(uid):
            return uid + SW_OK
        if le < len(uid):
            return bytes([0x6C, len(uid)])
        return uid + SW_END_OF_DATA

    def _native(self, ins: int, data: bytes) -> bytes:
        state = self._state
        if ins == 0xAF:
            pending, state.pending = state.pending, None
            return pending(data) if pending is not None else state.fail(0x1C)
        state.pending = None
        command = COMMANDS.get(ins)
        if command is None:
            return state.fail(0x1C)
        if state.session is not None and ins not in SESSION_ENDERS:
            state.session.on_command(bytes([ins]) + data)
        try:
            reply = command(state, data)
        except Status as st:
            return state.fail(st.code)
        return self._send(reply)

    def _send(self, reply: Reply) -> bytes:
        if reply.status:
            return reply.data + bytes([0x91, reply.status])
        data = reply.data
        if self._state.session is not None:
            data = self._state.session.wrap(data, reply.comm)
        frames: list[bytes] = []
        for size in reply.split:
            frames.append(data[:size])
            data = data[size:]
        frames += [data[i : i + MAX_FRAME] for i in range(0, len(data), MAX_FRAME)] or [b""]
        return self._frames(frames)

    def _frames(self, frames: list[bytes]) -> bytes:
        first, rest = frames[0], frames[1:]
        if not rest:
            return first + b"\x91\x00"

        def more(data: bytes) -> bytes:
            if data:
                return self._state.fail(0x7E)
            return self._frames(rest)

        self._state.pending = more
        return first + b"\x91\xaf"
