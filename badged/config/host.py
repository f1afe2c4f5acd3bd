"""The host file: which tree and school this host runs, and where its files go."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .load import read_yaml
from .model import HostConfig
from .tree import Site, load_tree
from .validate import build

DEFAULT_HOST_CONFIG = Path("/etc/badged/badged.yaml")
HOST_CONFIG_ENV = "BADGED_HOST_CONFIG"


def host_config_path(option: str | Path | None) -> Path:
    """`--host-config`, else `$BADGED_HOST_CONFIG`, else /etc/badged/badged.yaml."""
    if option:
        return Path(option)
    if os.environ.get(HOST_CONFIG_ENV):
        return Path(os.environ[HOST_CONFIG_ENV])
    return DEFAULT_HOST_CONFIG


@dataclass(frozen=True)
class Host:
    """A validated host file with its relative paths resolved from the file's folder."""

    file: Path
    config: HostConfig
    tree: Path
    state_dir: Path
    runtime_dir: Path

    def load_site(self) -> Site:
        site = load_tree(self.tree).site(self.config.school)
        mails = [ex.kind.value for ex in site.school.exchanges if ex.transport == "mail"]
        if mails and self.config.smtp is None and site.school.maildir is None:
            raise ConfigError.single(
                self.file, f"no smtp: section, and school {site.id} mails its CROUS files "
                f"({', '.join(mails)}) without a maildir: add the SMTP relay here")
        return site


def load_host(path: Path) -> Host:
    if not path.exists():
        raise ConfigError.single(path, f"host file not found (use --host-config or "
                                 f"${HOST_CONFIG_ENV})")
    doc = read_yaml(path)
    config, issues = build(HostConfig, doc)
    if issues:
        raise ConfigError(issues)
    assert config is not None
    base = path.resolve().parent

    def resolve(value: str) -> Path:
        return (base / value).resolve()

    return Host(file=path, config=config, tree=resolve(config.tree),
                state_dir=resolve(config.state_dir), runtime_dir=resolve(config.runtime_dir))
