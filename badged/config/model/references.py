"""Secrets and card keys by reference (`{file: …}`, `{credential: …}`, `{diversify: …}`,
`{sam: …}`), never by value: config/secrets.py reads what they point at.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Field, StringConstraints, Tag

from .common import Model

# --- secrets ---------------------------------------------------------------------------------

class FileSecret(Model):
    """A secret in a file (hex key, password): the file must be 0600 or stricter."""

    file: Annotated[str, StringConstraints(min_length=1)] = Field(description=(
        "Path of a file holding the secret (hex key or password), mode 0600 or stricter; relative"
        " paths are from the tree's root (the host file's folder for the host file)."))


class CredentialSecret(Model):
    """A systemd credential: `$CREDENTIALS_DIRECTORY/<credential>`."""

    credential: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.@-]+$")] = Field(
        description=(
            "Name of a systemd credential (LoadCredential=): the secret is read from "
            "$CREDENTIALS_DIRECTORY/<name>."))


def _ref_kind(value: Any) -> str | None:
    """The tag of a reference, built or raw: the discriminator of SecretRef and KeyRef."""
    if isinstance(value, FileSecret | CredentialSecret | DiversifiedKey | SamKey):
        return {FileSecret: "<file>", CredentialSecret: "<credential>",
                DiversifiedKey: "<diversify>", SamKey: "<sam>"}[type(value)]
    if isinstance(value, dict):
        for key in ("file", "credential", "diversify", "sam"):
            if key in value:
                return f"<{key}>"
    return None


_LITERAL_SECRET = (
    "a secret is a reference, never a literal value: write {file: PATH} or {credential: NAME}"
)

SecretRef = Annotated[
    Annotated[FileSecret, Tag("<file>")] | Annotated[CredentialSecret, Tag("<credential>")],
    Discriminator(_ref_kind, custom_error_type="literal_secret",
                  custom_error_message=_LITERAL_SECRET),
]


# --- card keys: a secret, or derived from one ---------------------------------------------

DiversifyPart = Annotated[
    str, StringConstraints(pattern=r"^(uid|aid|aid_msb|([0-9A-Fa-f]{2})+)$")
]


class Diversification(Model):
    """AN10922 AES-128 diversification of a master key (prefix 0x01 and padding implied)."""

    master: SecretRef = Field(description=(
        "The master key: a reference ({file: …} or {credential: …})."))
    input: list[DiversifyPart] = Field(min_length=1, description=(
        "Diversification input parts, in order: uid, aid (LSB first), aid_msb, or a hex literal "
        "(e.g. the system identifier)."))


class DiversifiedKey(Model):
    diversify: Diversification = Field(description=(
        "AN10922 AES-128 diversification of a master key."))


class SamRef(Model):
    """A key held by a SAM (e.g. the CROUS's USB SAM): not readable yet, declared only."""

    reader: str = Field(description="The reader rule name (role sam) of the SAM holding the key.")
    key_no: Annotated[int, Field(ge=0, le=255)] = Field(description="Key number in the SAM.")


class SamKey(Model):
    sam: SamRef = Field(description="The SAM and key number holding this key.")


KeyRef = Annotated[
    Annotated[FileSecret, Tag("<file>")]
    | Annotated[CredentialSecret, Tag("<credential>")]
    | Annotated[DiversifiedKey, Tag("<diversify>")]
    | Annotated[SamKey, Tag("<sam>")],
    Discriminator(_ref_kind, custom_error_type="literal_secret",
                  custom_error_message="a key is a reference, never a literal value: write "
                  "{file: PATH}, {credential: NAME} or {diversify: …}"),
]
