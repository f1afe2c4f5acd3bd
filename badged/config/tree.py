"""Load a whole config tree (one object per file, id = file name) and resolve a school.

Every file is parsed and validated even after an error elsewhere, so `config validate`
reports everything at once; references are checked against the ids that exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from . import rules
from .errors import ConfigError, ConfigIssue
from .load import Document, read_yaml
from .model import (
    KINDS,
    CardProfile,
    Comue,
    Crous,
    ExchangeKind,
    Layout,
    Model,
    School,
    Tariffs,
)
from .validate import build

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_SUFFIXES = (".yaml", ".yml")


@dataclass
class Tree:
    """A validated tree: the objects of each kind by id, and the documents they came from."""

    root: Path
    comues: dict[str, Comue] = field(default_factory=dict)
    crous: dict[str, Crous] = field(default_factory=dict)
    card_profiles: dict[str, CardProfile] = field(default_factory=dict)
    layouts: dict[str, Layout] = field(default_factory=dict)
    tariffs: dict[str, Tariffs] = field(default_factory=dict)
    schools: dict[str, School] = field(default_factory=dict)
    documents: dict[tuple[str, str], Document] = field(default_factory=dict)

    def site(self, school_id: str) -> Site:
        """The effective config of one school, every reference resolved."""
        if school_id not in self.schools:
            known = ", ".join(sorted(self.schools)) or "none"
            raise ConfigError.single(self.root / "schools", f"unknown school {school_id!r} "
                                     f"(known: {known})")
        school = self.schools[school_id]
        comue = self.comues[school.comue]
        crous = self.crous[school.crous]
        profile_id = school.card_profile or comue.card_profile
        assert profile_id is not None  # enforced by rules.school_rules
        layout_ids = {ex.kind: ex.layout or crous.layout for ex in school.exchanges}
        return Site(
            id=school_id, tree=self.root, school=school, comue=comue, crous=crous,
            card_profile_id=profile_id, card_profile=self.card_profiles[profile_id],
            tariffs=self.tariffs[school.tariffs],
            layouts={kind: (lid, self.layouts[lid]) for kind, lid in layout_ids.items()},
            access_layouts={ex.layout: self.layouts[ex.layout]
                            for ex in school.access_exports.values() if ex.layout},
        )


@dataclass(frozen=True)
class Site:
    """One school with its COMUE, CROUS, card profile, tariffs and layouts resolved."""

    id: str
    tree: Path
    school: School
    comue: Comue
    crous: Crous
    card_profile_id: str
    card_profile: CardProfile
    tariffs: Tariffs
    layouts: dict[ExchangeKind, tuple[str, Layout]]
    access_layouts: dict[str, Layout] = field(default_factory=dict)  # generic exports'


_ATTR = {"comues": "comues", "crous": "crous", "card-profiles": "card_profiles",
         "layouts": "layouts", "tariffs": "tariffs", "schools": "schools"}


def _files(root: Path, kind: str, issues: list[ConfigIssue]) -> list[tuple[str, Path]]:
    folder = root / kind
    if not folder.is_dir():
        return []
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix not in _SUFFIXES:
            continue
        ident = path.stem
        if not _ID.fullmatch(ident):
            issues.append(ConfigIssue(str(path), 1, 1, "", f"bad id {ident!r}: file names are "
                                      "ids, use lower-case letters, digits, - and _"))
        elif ident in found:
            issues.append(ConfigIssue(str(path), 1, 1, "", f"duplicate id {ident!r}: also "
                                      f"defined by {found[ident]}"))
        else:
            found[ident] = path
    return sorted(found.items())


def load_tree(root: Path | str) -> Tree:
    """Load and validate a tree; raise ConfigError with every issue found."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError.single(root, "not a directory: expected a config tree")
    issues: list[ConfigIssue] = []
    tree = Tree(root=root)
    present: dict[str, dict[str, Model | None]] = {kind: {} for kind in KINDS}
    invalid: list[tuple[str, Document]] = []  # failed their schema: references checked raw
    for kind, model in KINDS.items():
        for ident, path in _files(root, kind, issues):
            try:
                doc = read_yaml(path)
            except ConfigError as exc:
                issues.extend(exc.issues)
                present[kind][ident] = None
                continue
            obj, found = build(model, doc)
            issues.extend(found)
            present[kind][ident] = obj
            tree.documents[(kind, ident)] = doc
            if obj is not None:
                getattr(tree, _ATTR[kind])[ident] = obj
            else:
                invalid.append((kind, doc))
    if not present["schools"]:
        issues.append(ConfigIssue(str(root / "schools"), 1, 1, "", "no school defined"))
    known = rules.Known(
        comues=present["comues"], crous=present["crous"],  # type: ignore[arg-type]
        card_profiles=present["card-profiles"], layouts=present["layouts"],  # type: ignore[arg-type]
        tariffs=present["tariffs"],  # type: ignore[arg-type]
    )
    for kind, doc in invalid:
        issues.extend(rules.raw_reference_rules(kind, doc, known))
    for ident, school in tree.schools.items():
        issues.extend(rules.school_rules(tree.documents[("schools", ident)], school, known))
    for ident, comue in tree.comues.items():
        issues.extend(rules.comue_rules(tree.documents[("comues", ident)], comue, known))
    for ident, crous in tree.crous.items():
        issues.extend(rules.crous_rules(tree.documents[("crous", ident)], crous, known))
    for ident, profile in tree.card_profiles.items():
        issues.extend(rules.profile_rules(tree.documents[("card-profiles", ident)], profile))
    for ident, layout in tree.layouts.items():
        issues.extend(rules.layout_rules(tree.documents[("layouts", ident)], layout))
    for ident, tariffs in tree.tariffs.items():
        issues.extend(rules.tariffs_rules(tree.documents[("tariffs", ident)], tariffs))
    if issues:
        raise ConfigError(issues)
    return tree


def load_card_profile(tree_root: Path | None, ref: str) -> tuple[CardProfile, Path]:
    """A card profile by id of the tree or by path to a profile file.

    Returns the profile and the folder that relative key paths are resolved from.
    """
    path = Path(ref)
    if path.suffix in _SUFFIXES or "/" in ref:
        doc = read_yaml(path)
        profile, issues = build(CardProfile, doc)
        issues += list(rules.profile_rules(doc, profile)) if profile else []
        if issues:
            raise ConfigError(issues)
        assert profile is not None
        return profile, path.resolve().parent
    if tree_root is None:
        raise ConfigError.single(ref, "no config tree to look this card profile up in")
    tree = load_tree(tree_root)
    if ref not in tree.card_profiles:
        known = ", ".join(sorted(tree.card_profiles)) or "none"
        raise ConfigError.single(tree_root / "card-profiles", f"unknown card profile {ref!r} "
                                 f"(known: {known})")
    return tree.card_profiles[ref], tree_root.resolve()
