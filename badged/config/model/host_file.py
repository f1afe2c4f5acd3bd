"""The host file (docs/contracts.md): which tree and school this host runs, where its
state and runtime files go, and the SMTP relay.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .common import Id, Listen, Model, Name
from .references import SecretRef


class Smtp(Model):
    host: Name = Field(description="SMTP relay host name (a name its certificate carries).")
    port: Annotated[int, Field(gt=0, lt=65536)] = Field(587, description="SMTP relay port.")
    starttls: bool = Field(True, description=(
        "STARTTLS with the certificate and host name verified."))
    ca_file: str | None = Field(None, description=(
        "Extra CA certificate (PEM) to verify the relay with, relative to the host file's folder."))
    username: str | None = Field(None, description="Login (AUTH), if the relay asks for one.")
    password: SecretRef | None = Field(None, description=(
        "Password: a reference ({file: …} or {credential: smtp}), never a value."))


class HostConfig(Model):
    """What this host runs: the tree, the school, where state and runtime files go."""

    tree: Name = Field(description="The config tree (relative: from this file's folder).")
    school: Id = Field(description="The school this host runs (an id of schools/).")
    state_dir: Name = Field("/var/lib/badged", description="SQLite store, outbox and archives.")
    runtime_dir: Name = Field("/run/badged", description="Control socket folder.")
    smtp: Smtp | None = Field(None, description=(
        "The SMTP relay (absent: the school's maildir, demo only)."))
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description=(
        "Log level of the daemon."))
    metrics_listen: Listen | None = Field(None, description=(
        "Prometheus metrics address HOST:PORT; overrides the school's."))
