"""Enrolment done by this process rather than by the daemon: the next card tapped on the
enrolment reader (only when no daemon runs: it owns the readers), or a batch file of
`person_id;csn` lines (`badged enrol --person`, `badged enrol --csv`).

Each function opens the host's store itself and returns the service's own result.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

from ..cards.profile import ProfileReader
from ..cards.reading import read_one
from ..config.host import Host
from ..config.model import ReaderRole
from ..config.tree import Site
from ..store import people
from ..store.db import open_store
from .batch import BatchReport, enrol_file
from .desk import Enrolled, EnrolmentError, Policy, enrol


def enrol_next_tap(host: Host, site: Site, person_id: str, reader: str | None,
                   timeout: float) -> Enrolled:
    """Wait for a card on the enrolment reader (`reader`, a name or glob; default the
    school's first enrolment reader) and link it to `person_id`.

    An unknown person is refused before the wait (`EnrolmentError`, as every refusal);
    a reader or card failure raises the card stack's error (`PcscError`, `CardReadError`).
    """
    profile = ProfileReader(site.card_profile, site.tree)
    if reader is None:
        desks = [r.name for r in site.school.readers if r.role is ReaderRole.ENROLMENT]
        reader = desks[0] if desks else None
    with closing(open_store(host.state_dir)) as conn:
        if people.get(conn, person_id) is None:
            raise EnrolmentError(f"unknown person {person_id!r} (add them with badged "
                                 "person add, or import the registry)", "unknown person")
        read = read_one(profile, reader, timeout)
        return enrol(conn, person_id, read.csn, Policy.of(site.school.enrolment, site.comue),
                     crous_number_on_card=read.crous_number)


def enrol_batch(host: Host, site: Site, path: Path, *, strict: bool = False) -> BatchReport:
    """Link the cards of a `person_id;csn` file (`batch.enrol_file`), with the school's
    enrolment rules."""
    with closing(open_store(host.state_dir)) as conn:
        return enrol_file(conn, path, Policy.of(site.school.enrolment, site.comue),
                          strict=strict)
