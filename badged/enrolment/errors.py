"""The store's error, for the callers of the services that cannot import the store.

Every service that opens the host's store (and the daemon, at start) may raise
`StoreError`: the database cannot be opened or migrated. The command line prints it as
one line; it names it from here, so that it imports no store module (the CLI calls
services, it runs no query).
"""

from __future__ import annotations

from ..store.db import StoreError

__all__ = ["StoreError"]
