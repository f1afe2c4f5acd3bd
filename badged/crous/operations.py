"""What an operator asks of the CROUS side of a host: import a CROUS card CSV or a
registry export, sync with the API CROUS now, list what the API CROUS refused
(`badged crous …`, `badged population import`).

Each function opens the host's store itself and returns the service's own result, so
that the command line and the daemon's control socket can both call it. The API modules
(and httpx) are imported by the sync only: a mail-only school never loads them.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..config.host import Host
from ..config.tree import Site
from ..store import crous_api
from ..store.db import open_store
from .cards_csv import ImportReport, import_cards
from .population import PopulationReport, find_source, import_population

if TYPE_CHECKING:
    from .sync import SyncReport

Progress = Callable[[int], None]


def import_card_file(host: Host, path: Path, *, inverse_csn: bool = False,
                     strict: bool = False, progress: Progress | None = None) -> ImportReport:
    """Import a CROUS card CSV (CSN ↔ CROUS card number); `CardsFileError` for a file
    unusable as a whole (nothing imported)."""
    with closing(open_store(host.state_dir)) as conn:
        return import_cards(conn, path, inverse_csn=inverse_csn, strict=strict,
                            progress=progress)


def import_registry(host: Host, site: Site, path: Path, source_name: str, *,
                    strict: bool = False, today: date, progress: Progress | None = None
                    ) -> PopulationReport:
    """Import a registry export of the school's population source `source_name`;
    `PopulationError` for an unknown source, `TextFileError` or `PopulationError` for a
    file unusable as a whole (nothing imported)."""
    source = find_source(site.school.population, source_name, site.id)
    with closing(open_store(host.state_dir)) as conn:
        return import_population(conn, path, source_name, source, strict=strict,
                                 today=today, progress=progress, tariffs=site.tariffs)


def sync_now(host: Host, site: Site, now: datetime, *, dry_run: bool = False) -> SyncReport:
    """Tell the API CROUS what changed (or, `dry_run`, only plan the calls); `SyncError`
    or `ApiError` (crous.api) when the run cannot start."""
    from .sync import sync

    with closing(open_store(host.state_dir)) as conn:
        return sync(conn, site, now, dry_run=dry_run)


def api_errors(host: Host) -> list[crous_api.ApiError]:
    """What the API CROUS refused, per person and card (operation, code, tries, blocking)."""
    with closing(open_store(host.state_dir)) as conn:
        return crous_api.errors(conn)
