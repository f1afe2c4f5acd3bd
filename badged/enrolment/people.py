"""People on a host: add or update one by hand, show one with their cards, purge the
leavers now (`badged person …`; the daemon's daily `people-purge` job calls `retention`).

Each function opens the host's store itself and returns plain data, so that the command
line and the daemon's control socket can both call it.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..config.host import Host
from ..config.tree import Site
from ..store import cards, people
from ..store.db import open_store

if TYPE_CHECKING:
    from .retention import PurgeReport


@dataclass(frozen=True)
class PersonRecord:
    """A person's fields (None when unknown) and the cards they hold."""

    person: dict[str, Any]
    cards: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {**self.person, "cards": self.cards}


def add_person(host: Host, person_id: str, *, last_name: str, first_name: str,
               category: str, email: str | None = None, ine: str | None = None,
               birth_date: str | None = None) -> bool:
    """Add a person (source `manual`), or update one: what is not given is kept (the
    registry's fields stay). True when the person existed (updated), False when added."""
    record = people.Person(
        id=person_id, last_name=last_name, first_name=first_name, category=category,
        email=email, ine=ine, birth_date=birth_date, source="manual",
    )
    with closing(open_store(host.state_dir)) as conn:
        existing = people.get(conn, person_id)
        if existing is not None:
            given = {k: v for k, v in asdict(record).items() if v is not None}
            record = people.Person(**{**asdict(existing), **given})
        people.upsert(conn, record)
    return existing is not None


def person_record(host: Host, person_id: str) -> PersonRecord | None:
    """The person and their cards, or None for an unknown id."""
    with closing(open_store(host.state_dir)) as conn:
        found = people.get(conn, person_id)
        if found is None:
            return None
        held = [asdict(c) for c in cards.for_person(conn, person_id)]
    return PersonRecord(asdict(found), held)


def purge_leavers(host: Host, site: Site, now: datetime, *,
                  dry_run: bool = False) -> PurgeReport:
    """`retention.purge` on the host's store and archive folder: the leavers past the
    school's retention erased (or only listed, `dry_run`); `busy` when another process
    holds the outbox. The outbox and exchange code is loaded here only: adding or
    showing a person needs none of it."""
    from ..crous.exchanges import archive_dir
    from .retention import purge

    with closing(open_store(host.state_dir)) as conn:
        return purge(conn, site, archive_dir(host), now, dry_run=dry_run)
