"""Domain rules and references between files, each pointing at the offending YAML node.

The model checks shapes; these check meaning: a school's references resolve, an imposed
visual is not overridden, a card profile's files name keys it has, tariff rules do not
overlap, a file-name pattern uses known placeholders.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import ConfigIssue
from .load import Document
from .model import (
    ACCESS_LAYOUT_FIELDS,
    ACCESS_ONLY_FIELDS,
    ALLOWED_AUTH,
    PICC_AID,
    AccessFormat,
    CardProfile,
    CommMode,
    Comue,
    Crous,
    CsnSource,
    DiversifiedKey,
    KeyType,
    Layout,
    LayoutField,
    PersonField,
    SamKey,
    School,
    Tariffs,
    TokenFlow,
)

FILE_NAME_FIELDS = {"school", "kind", "date", "uai", "crous"}
_DATE_FIELDS = {LayoutField.BIRTH_DATE, LayoutField.DUE_DATE, LayoutField.VALID_FROM,
                LayoutField.VALID_UNTIL}


@dataclass
class Known:
    """Ids present in the tree (even when their file is invalid: no false 'unknown id')."""

    comues: dict[str, Comue | None]
    crous: dict[str, Crous | None]
    card_profiles: dict[str, CardProfile | None]
    layouts: dict[str, Layout | None]
    tariffs: dict[str, Tariffs | None]


def _unknown(doc: Document, loc: tuple, what: str, value: str, known: dict) -> ConfigIssue:
    choices = ", ".join(sorted(known)) or "none defined"
    return doc.issue(loc, f"unknown {what} {value!r} (known: {choices})")


def school_rules(doc: Document, school: School, known: Known) -> Iterator[ConfigIssue]:
    for field, what, table in (("comue", "COMUE", known.comues), ("crous", "CROUS", known.crous),
                               ("tariffs", "tariffs", known.tariffs)):
        value = getattr(school, field)
        if value not in table:
            yield _unknown(doc, (field,), what, value, table)
    comue = known.comues.get(school.comue)
    if school.card_profile is not None and school.card_profile not in known.card_profiles:
        yield _unknown(doc, ("card_profile",), "card profile", school.card_profile,
                       known.card_profiles)
    elif school.card_profile is None and comue is not None and comue.card_profile is None:
        yield doc.issue((), "no card profile: set card_profile here or in the COMUE",
                        shown_path=("card_profile",))
    if comue is not None and comue.visual.imposed and school.visual is not None:
        yield doc.issue(("visual",), f"the COMUE contract ({school.comue}) imposes the card "
                        "visual: a school cannot set its own", at_key=True)
    crous = known.crous.get(school.crous)
    seen_kinds: set[str] = set()
    for i, ex in enumerate(school.exchanges):
        if ex.kind in seen_kinds:
            yield doc.issue(("exchanges", i, "kind"), f"exchange {ex.kind.value!r} is "
                            "defined twice")
        seen_kinds.add(ex.kind)
        if ex.layout is not None and ex.layout not in known.layouts:
            yield _unknown(doc, ("exchanges", i, "layout"), "layout", ex.layout, known.layouts)
        if ex.transport == "mail" and not ex.recipients:
            yield doc.issue(("exchanges", i), "a mail exchange needs recipients (CROUS "
                            "mailbox names)", shown_path=("exchanges", i, "recipients"))
        if crous is None:
            continue
        for j, name in enumerate(ex.recipients):
            if name not in crous.mailboxes:
                yield _unknown(doc, ("exchanges", i, "recipients", j),
                               f"mailbox of CROUS {school.crous!r}", name, crous.mailboxes)
        if ex.transport == "api" and crous.api is None:
            yield doc.issue(("exchanges", i, "transport"), f"CROUS {school.crous!r} has no api "
                            "section: use transport mail or configure its API")
    for ex in school.exchanges:
        layout_id = ex.layout or (crous.layout if crous is not None else None)
        layout = known.layouts.get(layout_id) if layout_id else None
        used = {c.field for c in layout.columns} & ACCESS_ONLY_FIELDS if layout else set()
        if used:
            where = ("exchanges", school.exchanges.index(ex), "layout")
            yield doc.issue(where, f"layout {layout_id!r} shows {', '.join(sorted(used))}: "
                            "fields of door-system exports, not of CROUS files")
    yield from access_rules(doc, school, known)
    seen_readers: set[str] = set()
    for i, reader in enumerate(school.readers):
        if reader.name in seen_readers:
            yield doc.issue(("readers", i, "name"), f"reader {reader.name!r} is listed twice")
        seen_readers.add(reader.name)
    for name, source in school.population.items():
        if PersonField.INSTITUTIONAL_ID not in source.columns:
            yield doc.issue(("population", name, "columns"), "the institutional_id column is "
                            "required: people are matched by it")


def access_rules(doc: Document, school: School, known: Known) -> Iterator[ConfigIssue]:
    """Each door-system export: one destination, options that fit its format."""
    names: dict[str, str] = {}
    for name, export in school.access_exports.items():
        here = ("access_exports", name)
        dest = export.destination
        if (dest.directory is None) == (dest.sftp is None):
            yield doc.issue((*here, "destination"), "give exactly one destination: "
                            "directory: {path: …} or sftp: {host: …}")
        generic = export.format is AccessFormat.GENERIC
        if generic and export.layout is None:
            yield doc.issue(here, "a generic export needs a layout (an id of layouts/)",
                            shown_path=(*here, "layout"))
        elif not generic and export.layout is not None:
            yield doc.issue((*here, "layout"), f"format {export.format.value} has its own "
                            "columns: a layout is for the generic format only", at_key=True)
        elif generic and export.layout not in known.layouts:
            yield _unknown(doc, (*here, "layout"), "layout", export.layout or "",
                           known.layouts)
        elif generic and (layout := known.layouts[export.layout or ""]) is not None:
            other = sorted({c.field for c in layout.columns} - ACCESS_LAYOUT_FIELDS)
            if other:
                yield doc.issue((*here, "layout"), f"layout {export.layout!r} shows "
                                f"{', '.join(other)}, which a door-system export does not "
                                f"have (it can show: "
                                f"{', '.join(sorted(ACCESS_LAYOUT_FIELDS))})")
        if export.max_lines is not None and export.format is not AccessFormat.P2S:
            yield doc.issue((*here, "max_lines"), "max_lines splits P2S files only",
                            at_key=True)
        file_name = export.file_name or f"{name}.csv"
        target = (dest.directory.path if dest.directory else
                  f"sftp://{dest.sftp.host}:{dest.sftp.port}/{dest.sftp.path}"
                  if dest.sftp else "")
        key = f"{target.rstrip('/')}/{file_name}"
        if key in names:
            yield doc.issue((*here, "file_name") if export.file_name else here,
                            f"writes the same file as export {names[key]!r}: give it "
                            "another file_name or destination")
        names[key] = name


def comue_rules(doc: Document, comue: Comue, known: Known) -> Iterator[ConfigIssue]:
    if comue.card_profile is not None and comue.card_profile not in known.card_profiles:
        yield _unknown(doc, ("card_profile",), "card profile", comue.card_profile,
                       known.card_profiles)
    if comue.visual.imposed and not comue.visual.template:
        yield doc.issue(("visual",), "an imposed visual needs its template",
                        shown_path=("visual", "template"))


def crous_rules(doc: Document, crous: Crous, known: Known) -> Iterator[ConfigIssue]:
    if crous.layout not in known.layouts:
        where = ("layout",) if "layout" in doc.data else ()
        yield _unknown(doc, where, "layout", crous.layout, known.layouts)
    api = crous.api
    if api is not None and api.token_flow is TokenFlow.OAUTH2 and api.token_url is None:
        yield doc.issue(("api",), "the oauth2 token flow needs token_url (or set "
                        "token_flow: legacy)", shown_path=("api", "token_url"))


def profile_rules(doc: Document, profile: CardProfile) -> Iterator[ConfigIssue]:
    aids: dict[str, int] = {}
    for a, app in enumerate(profile.applications):
        here = ("applications", a)
        if app.aid in aids:
            yield doc.issue((*here, "aid"), f"application {app.aid} is listed twice")
        aids[app.aid] = a
        if app.effective_auth not in ALLOWED_AUTH[app.key_type]:
            yield doc.issue((*here, "auth"), f"auth {app.effective_auth.value!r} cannot be "
                            f"used with {app.key_type.value} keys")
        for key_no, ref in app.keys.items():
            if isinstance(ref, SamKey):
                yield doc.issue((*here, "keys", key_no), "reading through a SAM is not "
                                "supported yet")
            if isinstance(ref, DiversifiedKey) and app.key_type is not KeyType.AES:
                yield doc.issue((*here, "keys", key_no), "AN10922 diversification is "
                                "AES-128 only: key_type must be aes")
            if isinstance(ref, DiversifiedKey):
                yield from _diversify_length(doc, (*here, "keys", key_no), ref)
        ids: set[int] = set()
        for f, file in enumerate(app.files):
            at = (*here, "files", f)
            if file.id in ids:
                yield doc.issue((*at, "id"), f"file {file.id} is listed twice")
            ids.add(file.id)
            if file.read_key == "free":
                if file.comm is not CommMode.PLAIN:
                    yield doc.issue((*at, "comm"), f"{file.comm.value} communication needs "
                                    "a read key, not free access")
            elif file.read_key not in app.keys:
                yield doc.issue((*at, "read_key"), f"key {file.read_key} has no reference "
                                "in this application's keys")
    yield from _picc_rules(doc, profile)
    csn = profile.csn
    if csn.source is CsnSource.CARD_UID:
        if csn.card_uid_auth is None:
            yield doc.issue(("csn",), "source card_uid needs card_uid_auth {aid, key_no}",
                            shown_path=("csn", "card_uid_auth"))
        elif csn.card_uid_auth.aid == PICC_AID:
            key_no = csn.card_uid_auth.key_no
            if profile.picc is None:
                yield doc.issue(("csn", "card_uid_auth", "aid"), f"aid {PICC_AID} is the "
                                "card itself (PICC): add picc: {key_type, keys: {0: "
                                "{file: …}}} with its master key")
            elif key_no not in profile.picc.keys:
                yield doc.issue(("csn", "card_uid_auth", "key_no"), f"key {key_no} has no "
                                "reference in picc.keys")
            else:
                yield from _uid_key_rules(doc, key_no, profile.picc.keys[key_no])
        elif csn.card_uid_auth.aid not in aids:
            yield doc.issue(("csn", "card_uid_auth", "aid"), f"application "
                            f"{csn.card_uid_auth.aid} is not in this profile (or "
                            f"\"{PICC_AID}\" for the PICC master key)")
        else:
            key_no = csn.card_uid_auth.key_no
            ref = profile.applications[aids[csn.card_uid_auth.aid]].keys.get(key_no)
            if ref is None:
                yield doc.issue(("csn", "card_uid_auth", "key_no"), f"key {key_no} has no "
                                f"reference in application {csn.card_uid_auth.aid}")
            else:
                yield from _uid_key_rules(doc, key_no, ref)
    elif csn.card_uid_auth is not None:
        yield doc.issue(("csn", "card_uid_auth"), "only used with source card_uid",
                        at_key=True)


# AN10922 takes 1 to 31 input bytes; `uid` counts its longest (10 bytes), `aid` 3.
_PART_LENGTH = {"uid": 10, "aid": 3, "aid_msb": 3}


def _diversify_length(doc: Document, where: tuple, ref: DiversifiedKey
                      ) -> Iterator[ConfigIssue]:
    size = sum(_PART_LENGTH.get(p, len(p) // 2) for p in ref.diversify.input)
    if size > 31:
        yield doc.issue((*where, "diversify", "input"), f"AN10922 input of up to {size} "
                        "bytes: it takes at most 31 (uid counts 10, aid 3)")


def _uid_key_rules(doc: Document, key_no: int, ref: object) -> Iterator[ConfigIssue]:
    if isinstance(ref, DiversifiedKey) and "uid" in ref.diversify.input:
        yield doc.issue(("csn", "card_uid_auth", "key_no"), f"key {key_no} is "
                        "diversified with the UID, which is what it must reveal: "
                        "use a key that does not depend on the UID")


def _picc_rules(doc: Document, profile: CardProfile) -> Iterator[ConfigIssue]:
    picc = profile.picc
    if picc is None:
        return
    if picc.effective_auth not in ALLOWED_AUTH[picc.key_type]:
        yield doc.issue(("picc", "auth"), f"auth {picc.effective_auth.value!r} cannot be "
                        f"used with {picc.key_type.value} keys")
    for key_no, ref in picc.keys.items():
        if key_no != 0:
            yield doc.issue(("picc", "keys", key_no), "the PICC has one key: number 0",
                            at_key=True)
        if isinstance(ref, SamKey):
            yield doc.issue(("picc", "keys", key_no), "reading through a SAM is not "
                            "supported yet")
        if isinstance(ref, DiversifiedKey) and picc.key_type is not KeyType.AES:
            yield doc.issue(("picc", "keys", key_no), "AN10922 diversification is "
                            "AES-128 only: key_type must be aes")
        if isinstance(ref, DiversifiedKey):
            yield from _diversify_length(doc, ("picc", "keys", key_no), ref)
    uid_auth = profile.csn.card_uid_auth
    if uid_auth is None or uid_auth.aid != PICC_AID:
        yield doc.issue(("picc",), "picc keys are only used to read the real UID: set "
                        'csn: {source: card_uid, card_uid_auth: {aid: "000000", key_no: 0}}',
                        at_key=True)


def layout_rules(doc: Document, layout: Layout) -> Iterator[ConfigIssue]:
    headers: set[str] = set()
    for i, col in enumerate(layout.columns):
        if col.header in headers:
            yield doc.issue(("columns", i, "header"), f"column {col.header!r} is listed twice")
        headers.add(col.header)
        if col.format is not None and col.field not in _DATE_FIELDS:
            yield doc.issue(("columns", i, "format"), f"format applies to dates only, not "
                            f"{col.field.value}")
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(layout.file_name) if name}
    except ValueError as exc:
        yield doc.issue(("file_name",), f"bad pattern: {exc}")
        return
    for name in sorted(names - FILE_NAME_FIELDS):
        yield doc.issue(("file_name",), f"unknown placeholder {{{name}}} (known: "
                        f"{', '.join(sorted(FILE_NAME_FIELDS))})")
    if layout.separator in ('"', "\r", "\n"):
        yield doc.issue(("separator",), "the separator cannot be a quote or a line break")


def tariffs_rules(doc: Document, tariffs: Tariffs) -> Iterator[ConfigIssue]:
    for i, rule in enumerate(tariffs.rules):
        if rule.index_max is not None and rule.index_max < rule.index_min:
            yield doc.issue(("rules", i, "index_max"), f"index_max {rule.index_max} is below "
                            f"index_min {rule.index_min}")
            continue
        for j, other in enumerate(tariffs.rules[:i]):
            if other.index_max is not None and other.index_max < other.index_min:
                continue  # already reported: an empty range overlaps nothing
            shared = sorted(set(rule.status) & set(other.status))
            hi, other_hi = rule.index_max, other.index_max
            overlaps = ((hi is None or other.index_min <= hi)
                        and (other_hi is None or rule.index_min <= other_hi))
            if shared and overlaps:
                yield doc.issue(("rules", i), f"overlaps rule {j} for status "
                                f"{', '.join(shared)}: which rate applies would be ambiguous")


# References by file kind: where in the data ("*": every item of a list or value of a
# mapping), what, which ids.
_REFERENCES: dict[str, tuple[tuple[tuple[str, ...], str, str], ...]] = {
    "schools": ((("comue",), "COMUE", "comues"), (("crous",), "CROUS", "crous"),
                (("tariffs",), "tariffs", "tariffs"),
                (("card_profile",), "card profile", "card_profiles"),
                (("exchanges", "*", "layout"), "layout", "layouts"),
                (("access_exports", "*", "layout"), "layout", "layouts")),
    "comues": ((("card_profile",), "card profile", "card_profiles"),),
    "crous": ((("layout",), "layout", "layouts"),),
}


def raw_reference_rules(kind: str, doc: Document, known: Known) -> Iterator[ConfigIssue]:
    """The references of a file that failed its schema, checked on its raw data.

    The typed rules above need a valid object; without these, a dangling reference in an
    invalid file would only show once its other errors are fixed.
    """
    for path, what, table_name in _REFERENCES.get(kind, ()):
        table = getattr(known, table_name)
        for loc, value in _walk(doc.data, (), path):
            if isinstance(value, str) and value not in table:
                yield _unknown(doc, loc, what, value, table)
    crous_id = doc.data.get("crous") if kind == "schools" and isinstance(doc.data, dict) else None
    crous = known.crous.get(crous_id) if isinstance(crous_id, str) else None
    if crous is not None:
        for loc, name in _walk(doc.data, (), ("exchanges", "*", "recipients", "*")):
            if isinstance(name, str) and name not in crous.mailboxes:
                yield _unknown(doc, loc, f"mailbox of CROUS {crous_id!r}", name,
                               crous.mailboxes)


def _walk(data: object, loc: tuple, path: tuple[str, ...]) -> Iterator[tuple[tuple, object]]:
    if not path:
        yield loc, data
    elif path[0] == "*" and isinstance(data, list):
        for i, item in enumerate(data):
            yield from _walk(item, (*loc, i), path[1:])
    elif path[0] == "*" and isinstance(data, dict):
        for key, item in data.items():
            yield from _walk(item, (*loc, key), path[1:])
    elif isinstance(data, dict) and path[0] in data:
        yield from _walk(data[path[0]], (*loc, path[0]), path[1:])
