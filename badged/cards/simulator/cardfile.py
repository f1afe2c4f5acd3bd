"""The simulator's card file (docs/contracts.md): a pydantic model read by the one loader.

The YAML goes through `badged/config/load.py` like every file badged reads (its limits,
the mark of every key and value); the model below checks it, and every problem is
reported at once as ``FILE:LINE:COL: path.to.field: message``. What can only be checked
with a sibling's value (a key's length and its application's key type, an access right
and the application's keys, a duplicate AID) is checked where both are known, so one bad
value does not hide the problems of the others.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic import PlainValidator as Check
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from badged.cards.desfire.aid import PICC_AID, format_aid
from badged.cards.desfire.crypto import an10922_aes128
from badged.cards.desfire.info import AccessRights, CommMode
from badged.cards.desfire.keys import DesfireKey, KeyType
from badged.cards.simulator import values as v
from badged.cards.simulator.spec import (
    DEFAULT_ATR,
    MAX_FILE_SIZE,
    AppSpec,
    CardSpec,
    FileSpec,
    VersionSpec,
)
from badged.config.errors import ConfigError, ConfigIssue
from badged.config.load import Document, build_document, compose_yaml, read_text

MAX_DIVERSIFICATION_INPUT = 31  # AN10922: the input and its 01 prefix fit two AES blocks


class CardFileError(Exception):
    """A bad card file; ``problems`` holds one ``FILE:LINE:COL: path: message`` per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


# -- the model -----------------------------------------------------------------------------


class _Section(BaseModel):
    """A mapping of the card file; its unknown keys are reported with its other problems."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    @model_validator(mode="wrap")
    @classmethod
    def _known_keys(cls, data: Any, handler: Any) -> Any:
        if not isinstance(data, dict):
            raise v.problem("must be a mapping")
        allowed = ", ".join(cls.model_fields)
        problems = [v.located((k,), f"unknown key (allowed: {allowed})", "key")
                    for k in data if k not in cls.model_fields]
        data, across = cls._across(data)
        try:
            result = handler(data)
        except ValidationError as exc:
            problems += [v.relocated(e, ()) for e in exc.errors(include_url=False)]
            result = None
        v.raise_all(cls.__name__, problems + across)
        return result

    @classmethod
    def _across(cls, data: dict[str, Any]) -> tuple[dict[str, Any], list[InitErrorDetails]]:
        """Rules across fields, checked on the mapping as written even when a field is bad:
        the data to check field by field, and the problems found."""
        return data, []


class _Picc(_Section):
    key_type: Annotated[str, Check(v.key_type_name)]
    key: DesfireKey
    key_settings: Annotated[int, Check(v.integer(0, 0xFF))] = 0x0F

    @field_validator("key", mode="plain")
    @classmethod
    def _key(cls, value: Any, info: ValidationInfo) -> DesfireKey | None:
        key_type = info.data.get("key_type")  # absent: already reported
        return v.literal_key(value, KeyType(key_type)) if key_type else None


class _Version(_Section):
    hardware: Annotated[bytes, Check(v.hex_bytes((7,)))] = VersionSpec.hardware
    software: Annotated[bytes, Check(v.hex_bytes((7,)))] = VersionSpec.software
    batch: Annotated[bytes, Check(v.hex_bytes((5,)))] = VersionSpec.batch
    production: Annotated[bytes, Check(v.hex_bytes((2,)))] = VersionSpec.production


class _Access(_Section):
    """Who may do what with a file; key numbers must exist in the application."""

    read: int
    write: int
    read_write: int
    change: int

    @field_validator("read", "write", "read_write", "change", mode="plain")
    @classmethod
    def _key_no(cls, value: Any, info: ValidationInfo) -> int:
        return v.key_number(value, (info.context or {}).get("key_count"))


_text, _hex, _size = v.string, v.hex_bytes(), v.integer(1, MAX_FILE_SIZE)


class _File(_Section):
    id: Annotated[int, Check(v.integer(0, 31))]
    comm: Annotated[str, Check(v.choice("plain", "mac", "enciphered"))]
    access: _Access
    text: Annotated[str | None, Check(_text)] = None
    hex: Annotated[bytes | None, Check(_hex)] = None
    size: Annotated[int | None, Check(_size)] = None

    @classmethod
    def _across(cls, data: dict[str, Any]) -> tuple[dict[str, Any], list[InitErrorDetails]]:
        """The content is text or hex, and a size holds it (padded with 00)."""
        if "text" in data and "hex" in data:
            rest = {k: value for k, value in data.items() if k not in ("text", "hex")}
            return rest, [v.located(("hex",), "give text or hex, not both")]
        try:
            size = _size(data["size"]) if "size" in data else None
        except PydanticCustomError:  # reported by the field
            size = None
        try:
            content = (_text(data["text"]).encode("utf-8") if "text" in data
                       else _hex(data["hex"]) if "hex" in data else b"")
        except PydanticCustomError:  # reported by the field
            return data, []
        if size is not None and size < len(content):
            message = f"{size} is smaller than the {len(content)}-byte content"
            return data, [v.located(("size",), message)]
        if size is None and not content:
            return data, [v.located((), "an empty file needs a size")]
        if size is None and len(content) > MAX_FILE_SIZE:
            return data, [v.located((), f"content is {len(content)} bytes, at most "
                                    f"{MAX_FILE_SIZE}")]
        return data, []

    def spec(self) -> FileSpec:
        content = self.text.encode("utf-8") if self.text is not None else self.hex or b""
        data = content.ljust(self.size, b"\x00") if self.size is not None else content
        return FileSpec(self.id, CommMode.parse(self.comm), AccessRights(
            self.access.read, self.access.write, self.access.read_write, self.access.change),
            data)


class _Diversify(_Section):
    master: Annotated[bytes, Check(v.hex_bytes((16,)))]
    input: tuple[str | bytes, ...]

    @field_validator("input", mode="plain")
    @classmethod
    def _input(cls, value: Any) -> tuple[str | bytes, ...]:
        if not isinstance(value, list):
            raise v.problem("must be a list")
        if not value:
            raise v.problem("needs at least one part")
        return tuple(v.each(value, v.diversification_part))

    def key(self, uid: bytes, aid: int) -> DesfireKey:
        """The card's AN10922 AES-128 key, from the parts of this card."""
        wire = {"uid": uid, "aid": aid.to_bytes(3, "little"), "aid_msb": aid.to_bytes(3, "big")}
        data = b"".join(wire[p] if isinstance(p, str) else p for p in self.input)
        if len(data) > MAX_DIVERSIFICATION_INPUT:
            v.raise_all("diversify", [v.located(("diversify", "input"), f"input is {len(data)} "
                                                f"bytes, at most {MAX_DIVERSIFICATION_INPUT}")])
        return DesfireKey(KeyType.AES, an10922_aes128(self.master, data))


class _DiversifiedKey(_Section):
    diversify: _Diversify


class _Application(_Section):
    aid: int
    key_type: Annotated[str, Check(v.key_type_name)]
    key_settings: Annotated[int, Check(v.integer(0, 0xFF))] = 0x0F
    keys: tuple[DesfireKey, ...]
    files: tuple[_File, ...] = ()

    @field_validator("aid", mode="plain")
    @classmethod
    def _aid(cls, value: Any) -> int:
        aid = int.from_bytes(v.hex_bytes((3,))(value), "big")
        if aid == PICC_AID:
            raise v.problem("000000 is the PICC, not an application")
        return aid

    @field_validator("keys", mode="plain")
    @classmethod
    def _keys(cls, value: Any, info: ValidationInfo) -> tuple[DesfireKey, ...] | None:
        """Key number = list index; each written out, or diversified from the card's own
        UID and AID (from the context and the sibling field; absent: already reported)."""
        if "key_type" not in info.data:
            return None
        key_type = KeyType(info.data["key_type"])
        if not isinstance(value, list):
            raise v.problem("must be a list")
        if not 1 <= len(value) <= 14:
            raise v.problem(f"an application has 1 to 14 keys, got {len(value)}")
        uid, aid = (info.context or {}).get("uid"), info.data.get("aid")
        keys: list[DesfireKey | None] = []
        errors = []
        for i, item in enumerate(value):
            try:
                if not isinstance(item, dict):
                    keys.append(v.literal_key(item, key_type))
                    continue
                if key_type is not KeyType.AES and "diversify" in item:
                    errors.append(v.located((i, "diversify"), "AN10922 diversification is "
                                            f"AES-128 only, not {key_type.value}", "parent"))
                div = _DiversifiedKey.model_validate(item).diversify
                keys.append(div.key(uid, aid) if uid is not None and aid is not None
                            else None)
            except ValidationError as exc:
                errors += [v.relocated(e, (i,)) for e in exc.errors(include_url=False)]
            except PydanticCustomError as exc:  # a literal key
                errors.append(v.located((i,), exc.message()))
        v.raise_all("keys", errors)
        if None in keys:  # diversified from a bad UID or AID, already reported
            return None
        return tuple(k for k in keys if k is not None)

    @field_validator("files", mode="plain")
    @classmethod
    def _files(cls, value: Any, info: ValidationInfo) -> tuple[_File, ...]:
        keys = info.data.get("keys")
        files, errors = v.validate_items(
            _File, value, {"key_count": len(keys) if keys is not None else None})
        seen: set[int] = set()
        for i, f in enumerate(files):
            if f is not None:
                if f.id in seen:
                    errors.append(v.located((i, "id"), f"duplicate file id {f.id}", "parent"))
                seen.add(f.id)
        v.raise_all("files", errors)
        return tuple(f for f in files if f is not None)

    def spec(self) -> AppSpec:
        return AppSpec(self.aid, KeyType(self.key_type), self.key_settings, self.keys,
                       tuple(f.spec() for f in self.files))


class CardFile(_Section):
    """A card file as written: every field of docs/contracts.md, checked."""

    name: Annotated[str | None, Check(v.string)] = None
    uid: Annotated[bytes, Check(v.hex_bytes((7,)))]
    random_uid: Annotated[bool, Check(v.boolean)] = False
    picc: _Picc | None = None
    applications: tuple[_Application, ...] = ()
    atr: Annotated[bytes | None, Check(v.hex_bytes(tuple(range(2, 34))))] = None
    version: _Version = Field(default_factory=_Version)
    free_memory: Annotated[int | None, Check(v.integer(0, 0xFFFFFF))] = None

    @field_validator("picc", mode="before")
    @classmethod
    def _picc(cls, value: Any) -> Any:
        if value is None:  # written `picc:` with nothing: not a mapping
            raise v.problem("must be a mapping")
        return value

    @field_validator("applications", mode="plain")
    @classmethod
    def _applications(cls, value: Any, info: ValidationInfo) -> tuple[_Application, ...]:
        apps, errors = v.validate_items(_Application, value, {"uid": info.data.get("uid")})
        seen: set[int] = set()
        for i, app in enumerate(apps):
            if app is not None:
                if app.aid in seen:
                    errors.append(v.located((i, "aid"), f"duplicate AID {format_aid(app.aid)}",
                                            "parent"))
                seen.add(app.aid)
        v.raise_all("applications", errors)
        return tuple(a for a in apps if a is not None)

    def spec(self, default_name: str) -> CardSpec:
        version = self.version
        return CardSpec(
            name=self.name if self.name is not None else default_name,
            uid=self.uid,
            random_uid=self.random_uid,
            picc_key=self.picc.key if self.picc else DesfireKey(KeyType.DES, bytes(8)),
            picc_key_settings=self.picc.key_settings if self.picc else 0x0F,
            applications=tuple(a.spec() for a in self.applications),
            atr=self.atr or DEFAULT_ATR,
            version=VersionSpec(version.hardware, version.software, version.batch,
                                version.production),
            free_memory=self.free_memory,
        )


# -- reading -------------------------------------------------------------------------------


def load_card_file(path: str | os.PathLike[str]) -> CardSpec:
    """Read and check a simulator card file (docs/contracts.md)."""
    p = Path(path)
    try:
        text = read_text(p)
    except ConfigError as exc:
        raise _loader_error(exc, "(file)") from None
    return parse_card_file(text, filename=str(p), default_name=p.stem)


def parse_card_file(text: str, filename: str = "<card>", default_name: str = "card") -> CardSpec:
    try:
        root = compose_yaml(text, filename)  # the limits of every YAML file badged reads
    except ConfigError as exc:
        raise _loader_error(exc, "(yaml)") from None
    if root is None:
        raise CardFileError([f"{filename}:1:1: (top level): the card file is empty"])
    doc, issues = build_document(root, Path(filename))  # duplicate keys, bad scalars
    try:
        card = CardFile.model_validate(doc.data)
    except ValidationError as exc:
        card = None
        unread = {(i.line, i.column) for i in issues}  # a bad scalar: the loader said why
        issues += [i for e in exc.errors(include_url=False)
                   if ((i := _issue(doc, e)).line, i.column) not in unread]
    if card is None or issues:
        issues.sort(key=lambda i: (i.line, i.column))  # file order, stable at one place
        raise CardFileError([_problem(i) for i in issues])
    return card.spec(default_name)


def _issue(doc: Document, error: ErrorDetails) -> ConfigIssue:
    """One validation error at the mark it is about, with the path the author wrote."""
    loc = tuple(error["loc"])
    if error["type"] == "missing":  # at the mapping that lacks it
        path, _ = doc.locate(loc)
        return doc.issue(loc, "required key is missing", shown_path=(*path, loc[-1]))
    ctx = error.get("ctx") or {}
    message = str(ctx.get("message", error["msg"]))
    if ctx.get("at") == "parent":
        return doc.issue(loc[:-1], message, shown_path=loc)
    return doc.issue(loc, message, at_key=ctx.get("at") == "key", shown_path=loc)


def _problem(issue: ConfigIssue) -> str:
    where = f"{issue.file}:{issue.line}:{issue.column}"
    return f"{where}: {issue.path or '(top level)'}: {issue.message}"


def _loader_error(exc: ConfigError, what: str) -> CardFileError:
    """The shared YAML loader's issues as card-file problems."""
    return CardFileError([f"{i.file}:{i.line}:{i.column}: {what}: "
                          f"{i.message.removeprefix('YAML syntax error: ')}" for i in exc.issues])
