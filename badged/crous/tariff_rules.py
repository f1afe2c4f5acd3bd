"""`badged crous tariffs`: the CROUS's published tariff rules against the YAML's.

The CROUS answers `GET /crous/{numeroCrous}/organization/{rne}` with rules
`{statusCode, indexMin, indexMax, idCompanyRate, idRate}`. They are compared rule by rule
(status and index range) with the school's tariffs file, and the differences printed. They
are never applied: the YAML in git stays the one source of what badged declares.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.model import Tariffs
from ..config.tree import Site
from .api import CrousClient, RequestHook

Key = tuple[str, int, int | None]  # status, index min, index max (None: no upper bound)


class TariffRulesError(Exception):
    """The rules cannot be fetched (no crous_number, refused, unreadable answer)."""


@dataclass(frozen=True)
class Difference:
    status: str
    index_min: int
    index_max: int | None
    crous: tuple[int, int] | None   # (idCompanyRate, idRate) at the CROUS, None: absent
    yaml: tuple[int, int] | None

    @property
    def what(self) -> str:
        if self.crous is None:
            return "only in the YAML"
        if self.yaml is None:
            return "only at the CROUS"
        return "rates differ"

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "index_min": self.index_min,
                "index_max": self.index_max, "what": self.what,
                "crous": list(self.crous) if self.crous else None,
                "yaml": list(self.yaml) if self.yaml else None}

    def __str__(self) -> str:
        upper = "" if self.index_max is None else str(self.index_max)
        crous = "-" if self.crous is None else f"{self.crous[0]} / {self.crous[1]}"
        yaml = "-" if self.yaml is None else f"{self.yaml[0]} / {self.yaml[1]}"
        return (f"{self.status} index {self.index_min}..{upper}: CROUS {crous}, YAML {yaml} "
                f"({self.what})")


def yaml_rules(tariffs: Tariffs) -> dict[Key, tuple[int, int]]:
    rules: dict[Key, tuple[int, int]] = {}
    for rule in tariffs.rules:
        for status in rule.status:
            rules[(status, rule.index_min, rule.index_max)] = (rule.id_company_rate,
                                                               rule.id_rate)
    return rules


def crous_rules(body: Any) -> dict[Key, tuple[int, int]]:
    if not isinstance(body, list):
        raise TariffRulesError("the CROUS's tariff rules are not a JSON list")
    rules: dict[Key, tuple[int, int]] = {}
    for item in body:
        try:
            high = item.get("indexMax")
            key = (str(item["statusCode"]).lower(), int(item.get("indexMin") or 0),
                   None if high in (None, "") else int(high))
            rules[key] = (int(item["idCompanyRate"]), int(item["idRate"]))
        except (AttributeError, KeyError, TypeError, ValueError):
            raise TariffRulesError(f"unreadable tariff rule from the CROUS: {item!r}") from None
    return rules


def compare(crous: dict[Key, tuple[int, int]],
            yaml: dict[Key, tuple[int, int]]) -> list[Difference]:
    out = []
    for key in sorted(set(crous) | set(yaml), key=lambda k: (k[0], k[1], k[2] or -1)):
        if crous.get(key) != yaml.get(key):
            out.append(Difference(*key, crous.get(key), yaml.get(key)))
    return out


def fetch_and_compare(site: Site, *, base_dir: Path | None = None,
                      on_request: RequestHook | None = None,
                      client: CrousClient | None = None) -> tuple[int, list[Difference]]:
    """(how many rules the CROUS has, the differences with the school's tariffs file)."""
    api = site.crous.api
    if api is None:
        raise TariffRulesError(f"CROUS {site.school.crous} has no api section")
    if not api.crous_number:
        raise TariffRulesError(f"CROUS {site.school.crous}: set api.crous_number (numeroCrous) "
                               "to fetch its tariff rules")
    own = client is None
    if client is None:
        client = CrousClient(api, base_dir or site.tree, on_request=on_request)
    try:
        answer = client.tariff_rules(api.crous_number, site.school.uai)
    finally:
        if own:
            client.close()
    if not answer.ok:
        raise TariffRulesError(f"the CROUS refused the tariff rules of {site.school.uai}: "
                               f"HTTP {answer.status} {answer.message}")
    rules = crous_rules(answer.body)
    return len(rules), compare(rules, yaml_rules(site.tariffs))
