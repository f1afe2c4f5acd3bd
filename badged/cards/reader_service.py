"""The reader thread: watch PC/SC, read each tap with the profile, hand it to its role.

One thread for all readers. Readers are named by the school's rules (a PC/SC name or
glob → enrolment, lookup or sam); the rule's name is the stable label metrics and alerts
use. A pulled card, a reader unplugged or pcscd restarting is an event, never the end of
the thread; `heartbeat` tells the watchdog the thread is alive.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..config.model import ReaderRole, ReaderRule
from .pcsc import (
    EventKind,
    PcscError,
    ReaderEvent,
    ReaderWatcher,
    held_card,
    match_readers,
)
from .profile import CardRead, CardReadError, ProfileReader

log = logging.getLogger(__name__)


def is_contactless_atr(atr: bytes) -> bool:
    """PC/SC part 3 ATRs of contactless cards start `3B 8n 80 01`; a SAM's ATR does not."""
    return len(atr) >= 4 and atr[0] == 0x3B and atr[1] & 0xF0 == 0x80 and atr[2:4] == b"\x80\x01"


class TapHandler(Protocol):
    """What the daemon does with the reader thread's news (called from that thread)."""

    def on_read(self, label: str, role: ReaderRole, read: CardRead) -> None: ...
    def on_read_error(self, label: str, role: ReaderRole, error: CardReadError) -> None: ...
    def on_reader(self, label: str, up: bool) -> None: ...
    def on_sam(self, label: str, up: bool) -> None: ...
    def on_pcsc(self, up: bool) -> None: ...
    def forget(self, label: str) -> None: ...


@dataclass(frozen=True)
class Binding:
    """A present reader bound to its rule: `label` is the rule's name, stable for metrics."""

    label: str
    role: ReaderRole


class ReaderService:
    """Runs the reader thread; `start()`, `stop()`, `heartbeat` (monotonic seconds)."""

    def __init__(self, profile: ProfileReader, rules: Sequence[ReaderRule],
                 handler: TapHandler, *, tick: float = 1.0) -> None:
        self.profile = profile
        self.rules = list(rules)
        self.handler = handler
        self.tick = tick
        self.heartbeat = time.monotonic()
        self._watcher = ReaderWatcher(None, retry=True)
        self._thread = threading.Thread(target=self._run, name="readers", daemon=True)
        self._stopping = threading.Event()
        self._present: dict[str, Binding | None] = {}
        self._rebind = threading.Event()
        self._reported: set[str] = set()  # rule names whose state the handler was given
        # Set once the first look at pcscd is handled (pcscd up or down, readers, cards
        # present): the daemon's READY and first STATUS= tell the truth from then on.
        self.first_poll = threading.Event()

    def start(self) -> None:
        self._reported = {rule.name for rule in self.rules}
        for rule in self.rules:  # every configured reader is down until pcscd shows it
            if rule.role is ReaderRole.SAM:
                self.handler.on_sam(rule.name, False)
            else:
                self.handler.on_reader(rule.name, False)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._watcher.close()
        self._thread.join(timeout)

    def set_profile(self, profile: ProfileReader, rules: Sequence[ReaderRule]) -> None:
        """Swap the profile and rules after a config reload (read between two taps).

        The reader thread then binds the present readers to the new rules (within one
        tick): a rule's reader_up follows, a dropped rule's series are forgotten.
        """
        self.profile, self.rules = profile, list(rules)
        self._rebind.set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    def present(self, role: ReaderRole) -> list[str]:
        """The PC/SC names of the readers present now with `role`."""
        return sorted(reader for reader, binding in list(self._present.items())
                      if binding is not None and binding.role is role)

    def bind(self, reader: str) -> Binding | None:
        """The first rule naming this reader, if any."""
        for rule in self.rules:
            if match_readers(rule.name, [reader]):
                return Binding(rule.name, rule.role)
        return None

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.heartbeat = time.monotonic()
            try:
                if self._rebind.is_set():
                    self._rebind.clear()
                    self._apply_rules()
                for event in self._watcher.poll(self.tick):
                    self._handle(event)
                self.first_poll.set()
            except Exception:  # never let the reader thread die: log and go on
                log.exception("reader thread: unexpected error, continuing")
                self.first_poll.set()
                self._stopping.wait(self.tick)

    def _apply_rules(self) -> None:
        """After a reload (reader thread): bind the present readers to the new rules."""
        before = self._reported | {b.label for b in self._present.values() if b is not None}
        self._reported = {rule.name for rule in self.rules}
        self._present = {reader: self.bind(reader) for reader in self._present}
        atrs = self._watcher.readers
        up: dict[str, bool] = {}
        for reader, binding in self._present.items():
            if binding is None:
                continue
            if binding.role is ReaderRole.SAM:
                atr = atrs.get(reader)
                up[binding.label] = up.get(binding.label, False) or (
                    atr is not None and not is_contactless_atr(atr))
            else:
                up[binding.label] = True
        for rule in self.rules:
            if rule.role is ReaderRole.SAM:
                self.handler.on_sam(rule.name, up.get(rule.name, False))
            else:
                self.handler.on_reader(rule.name, up.get(rule.name, False))
        for label in sorted(before - self._reported):
            self.handler.forget(label)

    def _handle(self, event: ReaderEvent) -> None:
        reader = event.reader
        if event.kind in (EventKind.PCSC_UP, EventKind.PCSC_DOWN):
            up = event.kind is EventKind.PCSC_UP
            log.log(logging.INFO if up else logging.WARNING, "pcscd %s%s",
                    "is up" if up else "is down",
                    f": {event.error}" if event.error and not up else "")
            self.handler.on_pcsc(up)
            return
        if reader is None:
            return
        if event.kind is EventKind.READER_ADDED:
            binding = self._present[reader] = self.bind(reader)
            log.info("reader %r added%s", reader,
                     f" as {binding.role.value} ({binding.label!r})" if binding else
                     " (no rule names it: ignored)")
            if binding and binding.role is not ReaderRole.SAM:
                self.handler.on_reader(binding.label, True)
        elif event.kind is EventKind.READER_REMOVED:
            binding = self._present.pop(reader, None)
            log.warning("reader %r removed", reader)
            if binding and binding.role is ReaderRole.SAM:
                self.handler.on_sam(binding.label, False)
            elif binding:
                self.handler.on_reader(binding.label, False)
        elif event.kind is EventKind.CARD_INSERTED:
            self._card_inserted(reader, event.atr or b"")
        elif event.kind is EventKind.CARD_REMOVED:
            binding = self._present.get(reader)
            if binding and binding.role is ReaderRole.SAM:
                self.handler.on_sam(binding.label, False)

    def _card_inserted(self, reader: str, atr: bytes) -> None:
        binding = self._present.get(reader) or self.bind(reader)
        if binding is None:
            return
        if binding.role is ReaderRole.SAM or not is_contactless_atr(atr):
            # The CROUS's SAM sits in a contact slot: present means usable, nothing to read.
            log.info("SAM present on %r (ATR %s)", reader, atr.hex().upper())
            self.handler.on_sam(binding.label, True)
            return
        try:
            with held_card(reader) as conn:
                read = self.profile.read(conn.transmit, reader=reader, atr=conn.atr)
        except CardReadError as exc:
            log.warning("%s", exc)
            self.handler.on_read_error(binding.label, binding.role, exc)
            return
        except PcscError as exc:
            log.warning("reader %r: %s", reader, exc)
            self.handler.on_read_error(binding.label, binding.role,
                                       CardReadError(reader, str(exc), reason="pcsc"))
            return
        self.handler.on_read(binding.label, binding.role, read)
