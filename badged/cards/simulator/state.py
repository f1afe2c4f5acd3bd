"""What a simulated card remembers between two APDUs, and the rules its commands share.

The state is the selected application, the authenticated session (with its running IV)
and the continuation of a chained exchange (the second half of an authentication, the
next frame of a long answer). Any error ends the session and the chain, as on a real EV1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from badged.cards.desfire.info import CommMode
from badged.cards.desfire.keys import DesfireKey
from badged.cards.desfire.session import SecureMessaging
from badged.cards.simulator.spec import AppSpec, CardSpec

Continuation = Callable[[bytes], bytes]  # the data of the next AF frame → the response


@dataclass
class Reply:
    """A command's answer before secure messaging and framing."""

    data: bytes = b""
    comm: CommMode = CommMode.PLAIN
    status: int = 0x00
    split: tuple[int, ...] = ()  # sizes of the leading frames (GetVersion: 7, 7)


class Status(Exception):  # noqa: N818 - internal control flow, not an error type
    """A command refused with status word 91 `code`."""

    def __init__(self, code: int) -> None:
        super().__init__(f"91{code:02X}")
        self.code = code


@dataclass(eq=False)
class CardState:
    spec: CardSpec
    rng: Callable[[int], bytes]  # draws RndB
    app: AppSpec | None = None
    session: SecureMessaging | None = None
    pending: Continuation | None = None

    def reset(self) -> None:
        """Back to PICC level, no session, no chain (power cycle)."""
        self.app = None
        self.session = None
        self.pending = None

    def fail(self, code: int) -> bytes:
        """The response to an error: any error ends the session and any chained exchange."""
        self.session = None
        self.pending = None
        return bytes([0x91, code])

    def keys(self) -> tuple[DesfireKey, ...]:
        """The keys of the selected application, or the PICC master key."""
        return self.app.keys if self.app else (self.spec.picc_key,)

    def require_listing(self) -> None:
        """Listing needs key settings bit 1 (free directory) or the master key (key 0)."""
        settings = self.app.key_settings if self.app else self.spec.picc_key_settings
        if settings & 0x02:
            return
        if self.session is None or self.session.key_no != 0:
            raise Status(0xAE)

    def app_or(self, code: int) -> AppSpec:
        """The selected application, else refuse with `code`."""
        if self.app is None:
            raise Status(code)
        return self.app


def expect_length(data: bytes, n: int) -> None:
    if len(data) != n:
        raise Status(0x7E)
