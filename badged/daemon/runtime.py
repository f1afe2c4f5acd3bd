"""The daemon's main loop (`badged run`)."""

from __future__ import annotations

import logging
import signal
import threading

from ..config.host import Host
from ..store.db import open_store

log = logging.getLogger(__name__)


def run(host: Host) -> int:
    """Validate the config, open the store, then wait for SIGTERM.

    The reader service, scheduler, control socket and metrics come with the daemon issue;
    this keeps the README's demo command true meanwhile.
    """
    site = host.load_site()
    conn = open_store(host.state_dir)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("school %s (%s) ready: store %s", site.id, site.school.name, host.state_dir)
    stop.wait()
    conn.close()
    log.info("stopped")
    return 0
