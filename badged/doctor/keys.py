"""Doctor: every secret reference of this host readable, with safe modes (keys of the card
profile, diversification masters, the SMTP password, the API CROUS client secret)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

from ..cards.desfire.keys import KeyType
from ..cards.keyring import DES_LENGTHS
from ..config.errors import SecretError
from ..config.host import Host
from ..config.model import CredentialSecret, DiversifiedKey, FileSecret
from ..config.secrets import CREDENTIALS_ENV, read_hex_key, read_secret, secret_path
from ..config.tree import Site
from . import Check, fail, ok, warn

# Where systemd puts the unit's credentials (LoadCredential=) when doctor runs outside it.
SERVICE_CREDENTIALS = Path("/run/credentials/badged.service")

Ref = FileSecret | CredentialSecret


def _references(host: Host, site: Site) -> Iterator[tuple[str, Ref, Path, set[int] | None]]:
    """(what, reference, base folder, key lengths or None for a password)."""
    for app in site.card_profile.applications:
        key_type = KeyType(app.key_type.value)
        lengths = DES_LENGTHS.get(key_type, {key_type.key_length})
        for key_no, ref in sorted(app.keys.items()):
            what = f"key {app.aid}/{key_no}"
            if isinstance(ref, FileSecret | CredentialSecret):
                yield what, ref, site.tree, lengths
            elif isinstance(ref, DiversifiedKey):
                yield f"{what} (diversification master)", ref.diversify.master, site.tree, {16}
    smtp = host.config.smtp
    if smtp is not None and smtp.password is not None:
        yield "smtp password", smtp.password, host.file.resolve().parent, None
    api = site.crous.api
    if api is not None:
        yield "API CROUS client secret", api.client_secret, site.tree, None


def _resolve(ref: Ref) -> tuple[Ref | None, str | None]:
    """A credential outside the service: its file under the unit's credentials folder."""
    if isinstance(ref, FileSecret) or os.environ.get(CREDENTIALS_ENV):
        return ref, None
    if SERVICE_CREDENTIALS.is_dir() or SERVICE_CREDENTIALS.exists():
        return FileSecret(file=str(SERVICE_CREDENTIALS / ref.credential)), None
    return None, (f"credential {ref.credential!r}: ${CREDENTIALS_ENV} is not set and "
                  f"{SERVICE_CREDENTIALS} does not exist (badged is not running)")


def checks(host: Host, site: Site) -> list[Check]:
    out: list[Check] = []
    seen: set[tuple[str, str]] = set()
    for what, ref, base, lengths in _references(host, site):
        key = (repr(ref), str(base))
        if key in seen:
            continue
        seen.add(key)
        out.append(_check(what, ref, base, lengths))
    if not out:
        out.append(ok("secrets", "no secret reference in this host's config"))
    return out


def _check(what: str, ref: Ref, base: Path, lengths: set[int] | None) -> Check:
    resolved, why = _resolve(ref)
    if resolved is None:
        return warn(what, str(why), "run doctor under the unit's credentials (as root: "
                    "systemd-run -P -p LoadCredential=… ) or once badged runs")
    try:
        if lengths is None:
            read_secret(resolved, base)
        else:
            read_hex_key(resolved, base, lengths)
    except SecretError as exc:
        text = str(exc)
        if "Permission denied" in text or os.strerror(errno.EACCES) in text:
            return warn(what, f"{text}: cannot check as this user", "run doctor as root")
        if "readable by group or others" in text:
            fix = f"chmod 600 {_path(resolved, base)}"
        elif "No such file" in text:
            fix = (f"create {_path(resolved, base)} (mode 0600) or correct the reference"
                   if isinstance(ref, FileSecret) else
                   "add it to the unit's LoadCredential= (Ansible: the vault's credentials)")
        else:
            fix = "write the key as hex of the profile's key type in that file"
        return fail(what, text, fix)
    return ok(what, f"{_shown(ref)} readable, mode safe")


def _path(ref: Ref, base: Path) -> Path:
    try:
        return secret_path(ref, base)
    except SecretError:
        return Path(ref.file if isinstance(ref, FileSecret) else ref.credential)


def _shown(ref: Ref) -> str:
    return f"file {ref.file}" if isinstance(ref, FileSecret) else f"credential {ref.credential}"
