"""Doctor: each door-system export's destination, as the export uses it, writing nothing
(a folder writable; an SFTP server reachable, its host key the known one, our key
accepted, the folder present)."""

from __future__ import annotations

from ..access.destinations import DestinationError
from ..access.export import check
from ..config.host import Host
from ..config.tree import Site
from . import Check, fail, ok


def checks(host: Host, site: Site) -> list[Check]:
    out = []
    for name, export in site.school.access_exports.items():
        try:
            out.append(ok(f"access {name}", check(host, site, name)))
        except DestinationError as exc:
            sftp = export.destination.sftp is not None
            fix = ("check the server, the known_hosts line for it (ssh-keyscan), and that "
                   "its authorized_keys holds our key" if sftp else
                   "create or mount the folder, writable by the badged user (and in "
                   "ReadWritePaths= of the unit when outside /var/lib/badged)")
            out.append(fail(f"access {name}", str(exc), fix))
    return out
