"""A virtual MIFARE DESFire EV1 card: the card side, one APDU in, one response out.

No sockets here: a connector (vpcd) feeds :meth:`SimulatedDesfire.process`. The
card keeps real state (selected application, authenticated key, running IV,
pending AF frames) and reuses the library's secure messaging in card mode, so what
the reader library accepts is what a real EV1 sends. The content comes from a
YAML card file (docs/contracts.md), validated with every problem reported as
``FILE:LINE:COL: path.to.field: message``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import yaml

from badged.cards.desfire.aid import PICC_AID, aid_from_wire, format_aid
from badged.cards.desfire.commands import AUTH_KEY_TYPES
from badged.cards.desfire.crypto import an10922_aes128, cbc_encipher_receive
from badged.cards.desfire.info import (
    ACCESS_FREE,
    ACCESS_NEVER,
    AccessRights,
    AuthMode,
    CommMode,
    FileSettings,
)
from badged.cards.desfire.keys import DesfireKey, KeyType, session_key
from badged.cards.desfire.session import Ev1Messaging, LegacyMessaging, SecureMessaging
from badged.config.errors import ConfigError
from badged.config.load import compose_yaml, read_text, scalar_value

__all__ = [
    "DEFAULT_ATR",
    "AppSpec",
    "CardFileError",
    "CardSpec",
    "FileSpec",
    "SimulatedDesfire",
    "VersionSpec",
    "load_card_file",
    "parse_card_file",
]

DEFAULT_ATR = bytes.fromhex("3B8180018080")
MAX_FRAME = 59  # data bytes per response frame, as a real EV1 sends them
MAX_FILE_SIZE = 8192
ResponseHook = Callable[[bytes, bytes], bytes]


# -- card model --------------------------------------------------------------------------


@dataclass(frozen=True)
class FileSpec:
    file_no: int
    comm: CommMode
    access: AccessRights
    data: bytes


@dataclass(frozen=True)
class AppSpec:
    aid: int
    key_type: KeyType
    key_settings: int
    keys: tuple[DesfireKey, ...]
    files: tuple[FileSpec, ...]

    def file(self, file_no: int) -> FileSpec | None:
        return next((f for f in self.files if f.file_no == file_no), None)


@dataclass(frozen=True)
class VersionSpec:
    """GetVersion content; the defaults describe an 4 KB EV1 (storage byte 0x18)."""

    hardware: bytes = bytes.fromhex("04010101001805")
    software: bytes = bytes.fromhex("04010101041805")
    batch: bytes = bytes.fromhex("BA5E1D8040")
    production: bytes = bytes.fromhex("2619")  # week 26 of 2019, BCD as on real cards


@dataclass(frozen=True)
class CardSpec:
    name: str
    uid: bytes
    random_uid: bool = False
    picc_key: DesfireKey = field(default_factory=lambda: DesfireKey(KeyType.DES, bytes(8)))
    picc_key_settings: int = 0x0F
    applications: tuple[AppSpec, ...] = ()
    atr: bytes = DEFAULT_ATR
    version: VersionSpec = field(default_factory=VersionSpec)
    free_memory: int | None = None

    def application(self, aid: int) -> AppSpec | None:
        return next((a for a in self.applications if a.aid == aid), None)

    @property
    def computed_free_memory(self) -> int:
        """Stated free memory, else capacity minus files rounded to 32-byte blocks."""
        if self.free_memory is not None:
            return self.free_memory
        capacity = 1 << (self.version.hardware[5] >> 1)
        used = sum(-(-len(f.data) // 32) * 32 for a in self.applications for f in a.files)
        return max(0, capacity - used)


# -- card file loading -------------------------------------------------------------------


class CardFileError(Exception):
    """A bad card file; ``problems`` holds one ``FILE:LINE:COL: path: message`` per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def load_card_file(path: str | os.PathLike[str]) -> CardSpec:
    """Read and validate a simulator card file (docs/contracts.md)."""
    p = Path(path)
    try:
        text = read_text(p)
    except ConfigError as exc:
        raise _card_file_error(exc, "(file)") from None
    return parse_card_file(text, filename=str(p), default_name=p.stem)


def _card_file_error(exc: ConfigError, what: str) -> CardFileError:
    """The shared YAML loader's issues as card-file problems."""
    return CardFileError([f"{i.file}:{i.line}:{i.column}: {what}: "
                          f"{i.message.removeprefix('YAML syntax error: ')}" for i in exc.issues])


def parse_card_file(text: str, filename: str = "<card>", default_name: str = "card") -> CardSpec:
    return _CardFileParser(filename).parse(text, default_name)


_PathT = tuple[str | int, ...]
_HEX = re.compile(r"[0-9A-Fa-f]*")
_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_BOOL = "tag:yaml.org,2002:bool"
_KEY_TYPES = ", ".join(k.value for k in KeyType)


class _CardFileParser:
    """Walks the composed YAML node tree so every problem keeps its line and column."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self._problems: list[tuple[int, int, str]] = []

    # problem reporting and typed scalars

    def err(self, where: yaml.Node | yaml.Mark, path: _PathT, message: str) -> None:
        mark = where.start_mark if isinstance(where, yaml.Node) else where
        dotted = ".".join(str(p) for p in path) or "(top level)"
        line, col = mark.line + 1, mark.column + 1
        self._problems.append((line, col, f"{self.filename}:{line}:{col}: {dotted}: {message}"))

    @property
    def problems(self) -> list[str]:
        """In file order (stable for problems at the same place)."""
        return [text for _, _, text in sorted(self._problems, key=lambda p: p[:2])]

    def mapping(
        self, node: yaml.Node, path: _PathT, fields: dict[str, bool]
    ) -> dict[str, yaml.Node] | None:
        """Children of a mapping; ``fields`` maps each allowed key to "required"."""
        if not isinstance(node, yaml.MappingNode):
            self.err(node, path, "must be a mapping")
            return None
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == _STR):
                self.err(key_node, path, "keys must be plain names")
                continue
            name = key_node.value
            if name in out:
                self.err(key_node, (*path, name), "duplicate key")
            elif name not in fields:
                allowed = ", ".join(fields)
                self.err(key_node, (*path, name), f"unknown key (allowed: {allowed})")
            else:
                out[name] = value_node
        for name, required in fields.items():
            if required and name not in out:
                self.err(node, (*path, name), "required key is missing")
        return out

    def sequence(self, node: yaml.Node, path: _PathT) -> list[yaml.Node] | None:
        if not isinstance(node, yaml.SequenceNode):
            self.err(node, path, "must be a list")
            return None
        return list(node.value)

    def string(self, node: yaml.Node, path: _PathT) -> str | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _STR:
            return str(node.value)
        self.err(node, path, "must be a string")
        return None

    def integer(self, node: yaml.Node, path: _PathT, lo: int, hi: int) -> int | None:
        if not (isinstance(node, yaml.ScalarNode) and node.tag == _INT):
            self.err(node, path, f"must be an integer ({lo}..{hi})")
            return None
        try:
            value = int(scalar_value(node))
        except ValueError as exc:
            self.err(node, path, str(exc))
            return None
        if not lo <= value <= hi:
            self.err(node, path, f"must be in {lo}..{hi}, got {value}")
            return None
        return value

    def boolean(self, node: yaml.Node, path: _PathT) -> bool | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _BOOL:
            try:
                return bool(scalar_value(node))
            except ValueError as exc:
                self.err(node, path, str(exc))
                return None
        self.err(node, path, "must be true or false")
        return None

    def hex_bytes(
        self, node: yaml.Node, path: _PathT, sizes: tuple[int, ...] | None = None
    ) -> bytes | None:
        """A quoted hex string (spaces allowed); ``sizes`` lists the allowed byte counts."""
        if not (isinstance(node, yaml.ScalarNode) and node.tag == _STR):
            self.err(node, path, "must be a quoted hex string (unquoted digits are a number)")
            return None
        text = "".join(str(node.value).split())
        if not _HEX.fullmatch(text):
            self.err(node, path, f"not hexadecimal: {node.value!r}")
            return None
        if len(text) % 2:
            self.err(node, path, f"odd number of hex digits: {node.value!r}")
            return None
        data = bytes.fromhex(text)
        if sizes is not None and len(data) not in sizes:
            if len(sizes) > 2:
                want = f"{min(sizes)} to {max(sizes)} bytes"
            else:
                want = " or ".join(f"{n} bytes ({2 * n} hex digits)" for n in sizes)
            self.err(node, path, f"must be {want}, got {_plural(len(data), 'byte')}")
            return None
        return data

    def choice(self, node: yaml.Node, path: _PathT, choices: tuple[str, ...]) -> str | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _STR and node.value in choices:
            return str(node.value)
        self.err(node, path, f"must be one of: {', '.join(choices)}")
        return None

    # the card file itself

    def parse(self, text: str, default_name: str) -> CardSpec:
        try:
            root = compose_yaml(text, self.filename)  # the limits of every YAML file badged reads
        except ConfigError as exc:
            raise _card_file_error(exc, "(yaml)") from None
        if root is None:
            raise CardFileError([f"{self.filename}:1:1: (top level): the card file is empty"])
        spec = self._card(root, default_name)
        if self.problems or spec is None:
            raise CardFileError(self.problems)
        return spec

    def _card(self, root: yaml.Node, default_name: str) -> CardSpec | None:
        top = self.mapping(
            root,
            (),
            {
                "name": False,
                "uid": True,
                "random_uid": False,
                "picc": False,
                "applications": False,
                "atr": False,
                "version": False,
                "free_memory": False,
            },
        )
        if top is None:
            return None
        name = self.string(top["name"], ("name",)) if "name" in top else default_name
        uid = self.hex_bytes(top["uid"], ("uid",), (7,)) if "uid" in top else None
        random_uid = (
            self.boolean(top["random_uid"], ("random_uid",)) if "random_uid" in top else False
        )
        picc = (
            self._picc(top["picc"]) if "picc" in top else (DesfireKey(KeyType.DES, bytes(8)), 0x0F)
        )
        atr = self.hex_bytes(top["atr"], ("atr",), tuple(range(2, 34))) if "atr" in top else None
        version = self._version(top["version"]) if "version" in top else VersionSpec()
        free = (
            self.integer(top["free_memory"], ("free_memory",), 0, 0xFFFFFF)
            if "free_memory" in top
            else None
        )
        apps: list[AppSpec] = []
        if "applications" in top:
            items = self.sequence(top["applications"], ("applications",)) or []
            seen: set[int] = set()
            for i, node in enumerate(items):
                app = self._application(node, ("applications", i), uid)
                if app is None:
                    continue
                if app.aid in seen:
                    self.err(
                        node, ("applications", i, "aid"), f"duplicate AID {format_aid(app.aid)}"
                    )
                seen.add(app.aid)
                apps.append(app)
        if uid is None or picc is None or version is None or name is None or random_uid is None:
            return None
        return CardSpec(
            name=name,
            uid=uid,
            random_uid=random_uid,
            picc_key=picc[0],
            picc_key_settings=picc[1],
            applications=tuple(apps),
            atr=atr or DEFAULT_ATR,
            version=version,
            free_memory=free,
        )

    def _picc(self, node: yaml.Node) -> tuple[DesfireKey, int] | None:
        path: _PathT = ("picc",)
        m = self.mapping(node, path, {"key_type": True, "key": True, "key_settings": False})
        if m is None or "key_type" not in m:
            return None
        key_type = self._key_type(m["key_type"], (*path, "key_type"))
        settings = (
            self.integer(m["key_settings"], (*path, "key_settings"), 0, 0xFF)
            if "key_settings" in m
            else 0x0F
        )
        if key_type is None or "key" not in m:
            return None
        key = self._literal_key(m["key"], (*path, "key"), key_type)
        if key is None or settings is None:
            return None
        return key, settings

    def _version(self, node: yaml.Node) -> VersionSpec | None:
        sizes = {"hardware": 7, "software": 7, "batch": 5, "production": 2}
        m = self.mapping(node, ("version",), dict.fromkeys(sizes, False))
        if m is None:
            return None
        values: dict[str, bytes] = {}
        ok = True
        for key, n in sizes.items():
            if key in m:
                data = self.hex_bytes(m[key], ("version", key), (n,))
                ok = ok and data is not None
                if data is not None:
                    values[key] = data
        return VersionSpec(**values) if ok else None

    def _key_type(self, node: yaml.Node, path: _PathT) -> KeyType | None:
        value = self.choice(node, path, tuple(k.value for k in KeyType))
        return KeyType(value) if value is not None else None

    def _literal_key(self, node: yaml.Node, path: _PathT, key_type: KeyType) -> DesfireKey | None:
        sizes = (8, 16) if key_type is KeyType.DES else (key_type.key_length,)
        data = self.hex_bytes(node, path, sizes)
        if data is None:
            return None
        try:
            return DesfireKey(key_type, data)
        except ValueError as exc:
            self.err(node, path, str(exc))
            return None

    def _application(self, node: yaml.Node, path: _PathT, uid: bytes | None) -> AppSpec | None:
        m = self.mapping(
            node,
            path,
            {"aid": True, "key_type": True, "key_settings": False, "keys": True, "files": False},
        )
        if m is None:
            return None
        aid = None
        if "aid" in m:
            raw = self.hex_bytes(m["aid"], (*path, "aid"), (3,))
            if raw is not None:
                aid = int.from_bytes(raw, "big")
                if aid == PICC_AID:
                    self.err(m["aid"], (*path, "aid"), "000000 is the PICC, not an application")
                    aid = None
        key_type = self._key_type(m["key_type"], (*path, "key_type")) if "key_type" in m else None
        settings = (
            self.integer(m["key_settings"], (*path, "key_settings"), 0, 0xFF)
            if "key_settings" in m
            else 0x0F
        )
        keys: list[DesfireKey] | None = None
        if "keys" in m and key_type is not None:
            keys = self._keys(m["keys"], (*path, "keys"), key_type, uid, aid)
        files: list[FileSpec] = []
        if "files" in m:
            items = self.sequence(m["files"], (*path, "files")) or []
            seen: set[int] = set()
            for i, fnode in enumerate(items):
                f = self._file(fnode, (*path, "files", i), len(keys) if keys else None)
                if f is None:
                    continue
                if f.file_no in seen:
                    self.err(fnode, (*path, "files", i, "id"), f"duplicate file id {f.file_no}")
                seen.add(f.file_no)
                files.append(f)
        if aid is None or key_type is None or keys is None or settings is None:
            return None
        return AppSpec(aid, key_type, settings, tuple(keys), tuple(files))

    def _keys(
        self,
        node: yaml.Node,
        path: _PathT,
        key_type: KeyType,
        uid: bytes | None,
        aid: int | None,
    ) -> list[DesfireKey] | None:
        items = self.sequence(node, path)
        if items is None:
            return None
        if not 1 <= len(items) <= 14:
            self.err(node, path, f"an application has 1 to 14 keys, got {len(items)}")
            return None
        keys: list[DesfireKey] = []
        for i, knode in enumerate(items):
            kpath = (*path, i)
            if isinstance(knode, yaml.MappingNode):
                key = self._diversified(knode, kpath, key_type, uid, aid)
            else:
                key = self._literal_key(knode, kpath, key_type)
            if key is not None:
                keys.append(key)
        return keys if len(keys) == len(items) else None

    def _diversified(
        self,
        node: yaml.MappingNode,
        path: _PathT,
        key_type: KeyType,
        uid: bytes | None,
        aid: int | None,
    ) -> DesfireKey | None:
        m = self.mapping(node, path, {"diversify": True})
        if m is None or "diversify" not in m:
            return None
        dpath = (*path, "diversify")
        d = self.mapping(m["diversify"], dpath, {"master": True, "input": True})
        if key_type is not KeyType.AES:
            self.err(node, dpath, f"AN10922 diversification is AES-128 only, not {key_type.value}")
            return None
        if d is None or "master" not in d or "input" not in d:
            return None
        master = self.hex_bytes(d["master"], (*dpath, "master"), (16,))
        parts = self.sequence(d["input"], (*dpath, "input"))
        if parts is None:
            return None
        if not parts:
            self.err(d["input"], (*dpath, "input"), "needs at least one part")
            return None
        div = bytearray()
        ok = True
        for i, pnode in enumerate(parts):
            ppath = (*dpath, "input", i)
            part = self._input_part(pnode, ppath, uid, aid)
            if part is None:
                ok = False
            else:
                div += part
        if not ok or master is None:
            return None
        if len(div) > 31:
            self.err(d["input"], (*dpath, "input"), f"input is {len(div)} bytes, at most 31")
            return None
        return DesfireKey(KeyType.AES, an10922_aes128(master, bytes(div)))

    def _input_part(
        self, node: yaml.Node, path: _PathT, uid: bytes | None, aid: int | None
    ) -> bytes | None:
        if not (isinstance(node, yaml.ScalarNode) and node.tag == _STR):
            self.err(node, path, "must be uid, aid, aid_msb or a quoted hex literal")
            return None
        value = str(node.value)
        if value == "uid":
            return uid  # None (already reported) when the uid is bad
        if value in ("aid", "aid_msb"):
            if aid is None:
                return None
            return aid.to_bytes(3, "little" if value == "aid" else "big")
        text = "".join(value.split())
        if not text or not _HEX.fullmatch(text) or len(text) % 2:
            self.err(node, path, f"must be uid, aid, aid_msb or a hex literal, not {value!r}")
            return None
        return bytes.fromhex(text)

    def _file(self, node: yaml.Node, path: _PathT, key_count: int | None) -> FileSpec | None:
        m = self.mapping(
            node,
            path,
            {"id": True, "comm": True, "access": True, "text": False, "hex": False, "size": False},
        )
        if m is None:
            return None
        file_no = self.integer(m["id"], (*path, "id"), 0, 31) if "id" in m else None
        comm_name = (
            self.choice(m["comm"], (*path, "comm"), ("plain", "mac", "enciphered"))
            if "comm" in m
            else None
        )
        access = self._access(m["access"], (*path, "access"), key_count) if "access" in m else None
        content: bytes | None = b""
        if "text" in m and "hex" in m:
            self.err(m["hex"], (*path, "hex"), "give text or hex, not both")
            content = None
        elif "text" in m:
            text = self.string(m["text"], (*path, "text"))
            content = text.encode("utf-8") if text is not None else None
        elif "hex" in m:
            content = self.hex_bytes(m["hex"], (*path, "hex"))
        size = self.integer(m["size"], (*path, "size"), 1, MAX_FILE_SIZE) if "size" in m else None
        if content is not None:
            if size is not None and size < len(content):
                self.err(
                    m["size"],
                    (*path, "size"),
                    f"{size} is smaller than the {len(content)}-byte content",
                )
                content = None
            elif size is not None:
                content = content.ljust(size, b"\x00")
            elif not content:
                self.err(node, path, "an empty file needs a size")
                content = None
            elif len(content) > MAX_FILE_SIZE:
                self.err(node, path, f"content is {len(content)} bytes, at most {MAX_FILE_SIZE}")
                content = None
        if file_no is None or comm_name is None or access is None or content is None:
            return None
        return FileSpec(file_no, CommMode.parse(comm_name), access, content)

    def _access(self, node: yaml.Node, path: _PathT, key_count: int | None) -> AccessRights | None:
        names = ("read", "write", "read_write", "change")
        m = self.mapping(node, path, dict.fromkeys(names, True))
        if m is None:
            return None
        values: list[int] = []
        for name in names:
            if name not in m:
                continue
            v = m[name]
            vpath = (*path, name)
            if isinstance(v, yaml.ScalarNode) and v.tag == _STR and v.value in ("free", "never"):
                values.append(ACCESS_FREE if v.value == "free" else ACCESS_NEVER)
            elif isinstance(v, yaml.ScalarNode) and v.tag == _INT:
                try:
                    n = int(scalar_value(v))
                except ValueError as exc:
                    self.err(v, vpath, str(exc))
                    continue
                if not 0 <= n <= 13:
                    self.err(v, vpath, f"key number must be 0..13, free or never, got {n}")
                elif key_count is not None and n >= key_count:
                    self.err(
                        v,
                        vpath,
                        f"key {n} does not exist (the application has {_plural(key_count, 'key')})",
                    )
                else:
                    values.append(n)
            else:
                self.err(v, vpath, "must be a key number, free or never")
        return AccessRights(*values) if len(values) == 4 else None


# -- the card ----------------------------------------------------------------------------


@dataclass
class _Reply:
    data: bytes = b""
    comm: CommMode = CommMode.PLAIN
    status: int = 0x00
    split: tuple[int, ...] = ()  # sizes of the leading frames (GetVersion: 7, 7)


class _Status(Exception):  # noqa: N818 - internal control flow, not an error type
    def __init__(self, code: int) -> None:
        super().__init__(f"91{code:02X}")
        self.code = code


_AUTH_MODES = {0x0A: AuthMode.LEGACY, 0x1A: AuthMode.ISO, 0xAA: AuthMode.AES}
_SESSION_ENDERS = frozenset({0x0A, 0x1A, 0xAA, 0x5A})
_KEY_TYPE_FLAGS = {KeyType.AES: 0x80, KeyType.TDES_3K: 0x40}

SW_OK = b"\x90\x00"
SW_WRONG_LENGTH = b"\x67\x00"
SW_NOT_SUPPORTED = b"\x6a\x81"
SW_WRONG_P1P2 = b"\x6a\x86"
SW_INS_NOT_SUPPORTED = b"\x6d\x00"
SW_CLA_NOT_SUPPORTED = b"\x6e\x00"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _rotl(data: bytes) -> bytes:
    return data[1:] + data[:1]


def _apdu_data(body: bytes) -> bytes | None:
    """Data of a short APDU body (cases 1-4), or None when Lc/Le do not add up."""
    if len(body) <= 1:
        return b""
    lc = body[0]
    if lc == 0 or len(body) not in (1 + lc, 2 + lc):
        return None
    return body[1 : 1 + lc]


class SimulatedDesfire:
    """A DESFire EV1 card in memory.

    ``rng`` draws RndB and random ids (inject for reproducible tests);
    ``response_hook(apdu, response)`` may rewrite what is sent back (fault injection).
    """

    def __init__(
        self,
        spec: CardSpec,
        *,
        rng: Callable[[int], bytes] = os.urandom,
        response_hook: ResponseHook | None = None,
    ) -> None:
        self.spec = spec
        self.atr = spec.atr
        self.response_hook = response_hook
        self._rng = rng
        self._app: AppSpec | None = None
        self._session: SecureMessaging | None = None
        self._pending: Callable[[bytes], bytes] | None = None
        self.random_id: bytes | None = None
        self.powered = False
        self._handlers: dict[int, Callable[[bytes], _Reply]] = {
            0x60: self._get_version,
            0x6A: self._get_application_ids,
            0x5A: self._select_application,
            0x6E: self._free_memory,
            0x51: self._get_card_uid,
            0x45: self._get_key_settings,
            0x64: self._get_key_version,
            0x6F: self._get_file_ids,
            0xF5: self._get_file_settings,
            0xBD: self._read_data,
        }
        self.power_on()

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        rng: Callable[[int], bytes] = os.urandom,
        response_hook: ResponseHook | None = None,
    ) -> SimulatedDesfire:
        return cls(load_card_file(path), rng=rng, response_hook=response_hook)

    # -- field -------------------------------------------------------------------------

    def power_on(self) -> None:
        """Card enters the field: PICC level, no session; random-UID cards draw a new id."""
        self._reset()
        if self.spec.random_uid:
            self.random_id = b"\x08" + self._rng(3)
        self.powered = True

    def power_off(self) -> None:
        self._reset()
        self.powered = False

    def _reset(self) -> None:
        self._app = None
        self._session = None
        self._pending = None

    @property
    def pcsc_uid(self) -> bytes:
        """What ``FF CA 00 00 00`` returns: the UID, or the random id."""
        return self.random_id if self.spec.random_uid and self.random_id else self.spec.uid

    @property
    def authenticated_key(self) -> int | None:
        return self._session.key_no if self._session else None

    # -- APDU level --------------------------------------------------------------------

    def process(self, apdu: bytes) -> bytes:
        """One command APDU in, response data + SW out (through ``response_hook``)."""
        apdu = bytes(apdu)
        response = self._process(apdu)
        if self.response_hook is not None:
            response = self.response_hook(apdu, response)
        return response

    def _process(self, apdu: bytes) -> bytes:
        if len(apdu) < 4:
            return SW_WRONG_LENGTH
        cla, ins, p1, p2 = apdu[:4]
        data = _apdu_data(apdu[4:])
        if data is None:
            return SW_WRONG_LENGTH
        if cla == 0xFF:
            if ins != 0xCA:
                return SW_INS_NOT_SUPPORTED
            return self.pcsc_uid + SW_OK if (p1, p2) == (0, 0) else SW_NOT_SUPPORTED
        if cla != 0x90:
            return SW_CLA_NOT_SUPPORTED
        if p1 or p2:
            return SW_WRONG_P1P2
        return self._native(ins, data)

    def _native(self, ins: int, data: bytes) -> bytes:
        if ins == 0xAF:
            pending, self._pending = self._pending, None
            return pending(data) if pending is not None else self._error(0x1C)
        self._pending = None
        if ins in _AUTH_MODES:
            handler: Callable[[bytes], _Reply] = partial(self._authenticate, ins)
        elif ins in self._handlers:
            handler = self._handlers[ins]
        else:
            return self._error(0x1C)
        if self._session is not None and ins not in _SESSION_ENDERS:
            self._session.on_command(bytes([ins]) + data)
        try:
            reply = handler(data)
        except _Status as st:
            return self._error(st.code)
        return self._send(reply)

    def _error(self, code: int) -> bytes:
        """Any error ends the authenticated session and any chained exchange."""
        self._session = None
        self._pending = None
        return bytes([0x91, code])

    def _send(self, reply: _Reply) -> bytes:
        if reply.status:
            return reply.data + bytes([0x91, reply.status])
        data = reply.data
        if self._session is not None:
            data = self._session.wrap(data, reply.comm)
        frames: list[bytes] = []
        for size in reply.split:
            frames.append(data[:size])
            data = data[size:]
        frames += [data[i : i + MAX_FRAME] for i in range(0, len(data), MAX_FRAME)] or [b""]
        return self._frames(frames)

    def _frames(self, frames: list[bytes]) -> bytes:
        first, rest = frames[0], frames[1:]
        if not rest:
            return first + b"\x91\x00"

        def more(data: bytes) -> bytes:
            if data:
                return self._error(0x7E)
            return self._frames(rest)

        self._pending = more
        return first + b"\x91\xaf"

    # -- helpers -----------------------------------------------------------------------

    def _keys(self) -> tuple[DesfireKey, ...]:
        return self._app.keys if self._app else (self.spec.picc_key,)

    def _require_listing(self) -> None:
        """Listing needs key settings bit 1 (free directory) or the master key (key 0)."""
        settings = self._app.key_settings if self._app else self.spec.picc_key_settings
        if settings & 0x02:
            return
        if self._session is None or self._session.key_no != 0:
            raise _Status(0xAE)

    def _app_or(self, code: int) -> AppSpec:
        if self._app is None:
            raise _Status(code)
        return self._app

    @staticmethod
    def _expect_length(data: bytes, n: int) -> None:
        if len(data) != n:
            raise _Status(0x7E)

    # -- commands ----------------------------------------------------------------------

    def _authenticate(self, ins: int, data: bytes) -> _Reply:
        self._session = None
        self._expect_length(data, 1)
        keys = self._keys()
        key_no = data[0]
        if key_no >= len(keys):
            raise _Status(0x40)
        key = keys[key_no]
        mode = _AUTH_MODES[ins]
        if key.type not in AUTH_KEY_TYPES[mode]:
            raise _Status(0xAE)
        legacy = mode is AuthMode.LEGACY
        bs, rnd_len = key.block_size, key.type.rnd_length
        rnd_b = self._rng(rnd_len)
        ek_rnd_b = key.cbc_encrypt(bytes(bs), rnd_b)

        def finish(token: bytes) -> bytes:
            if len(token) != 2 * rnd_len:
                return self._error(0x7E)
            if legacy:
                plain = cbc_encipher_receive(key.data, token, aes=False)
            else:
                plain = key.cbc_decrypt(ek_rnd_b[-bs:], token)
            rnd_a = plain[:rnd_len]
            if plain[rnd_len:] != _rotl(rnd_b):
                return self._error(0xAE)
            answer = key.cbc_encrypt(bytes(bs) if legacy else token[-bs:], _rotl(rnd_a))
            sk = session_key(key, rnd_a, rnd_b)
            self._session = LegacyMessaging(key_no, sk) if legacy else Ev1Messaging(key_no, sk)
            return answer + b"\x91\x00"

        self._pending = finish
        return _Reply(ek_rnd_b, status=0xAF)

    def _get_version(self, data: bytes) -> _Reply:
        self._expect_length(data, 0)
        v = self.spec.version
        uid = bytes(7) if self.spec.random_uid else self.spec.uid
        return _Reply(v.hardware + v.software + uid + v.batch + v.production, split=(7, 7))

    def _get_application_ids(self, data: bytes) -> _Reply:
        self._expect_length(data, 0)
        if self._app is not None:
            raise _Status(0x9D)
        self._require_listing()
        return _Reply(b"".join(a.aid.to_bytes(3, "little") for a in self.spec.applications))

    def _select_application(self, data: bytes) -> _Reply:
        self._session = None
        self._expect_length(data, 3)
        aid = aid_from_wire(data)
        if aid == PICC_AID:
            self._app = None
            return _Reply()
        app = self.spec.application(aid)
        if app is None:
            raise _Status(0xA0)
        self._app = app
        return _Reply()

    def _free_memory(self, data: bytes) -> _Reply:
        self._expect_length(data, 0)
        return _Reply(self.spec.computed_free_memory.to_bytes(3, "little"))

    def _get_card_uid(self, data: bytes) -> _Reply:
        self._expect_length(data, 0)
        if self._session is None:
            raise _Status(0xAE)
        return _Reply(self.spec.uid, comm=CommMode.ENCIPHERED)

    def _get_key_settings(self, data: bytes) -> _Reply:
        self._expect_length(data, 0)
        self._require_listing()
        if self._app is None:
            settings, count, kt = self.spec.picc_key_settings, 1, self.spec.picc_key.type
        else:
            settings, count, kt = self._app.key_settings, len(self._app.keys), self._app.key_type
        return _Reply(bytes([settings, count | _KEY_TYPE_FLAGS.get(kt, 0)]))

    def _get_key_version(self, data: bytes) -> _Reply:
        self._expect_length(data, 1)
        keys = self._keys()
        if data[0] >= len(keys):
            raise _Status(0x40)
        return _Reply(bytes([keys[data[0]].key_version]))

    def _get_file_ids(self, data: bytes) -> _Reply:
        self._expect_length(data, 0)
        app = self._app_or(0x9D)
        self._require_listing()
        return _Reply(bytes(f.file_no for f in app.files))

    def _get_file_settings(self, data: bytes) -> _Reply:
        self._expect_length(data, 1)
        app = self._app_or(0x9D)
        f = app.file(data[0])
        if f is None:
            raise _Status(0xF0)
        self._require_listing()
        return _Reply(FileSettings.data_file_wire(f.comm, f.access, len(f.data)))

    def _read_data(self, data: bytes) -> _Reply:
        self._expect_length(data, 7)
        app = self._app_or(0xF0)
        f = app.file(data[0])
        if f is None:
            raise _Status(0xF0)
        rights = (f.access.read, f.access.read_write)
        if ACCESS_FREE in rights:
            comm = CommMode.PLAIN  # free access is always plain on a real card
        elif self._session is not None and self._session.key_no in rights:
            comm = f.comm
        elif all(r == ACCESS_NEVER for r in rights):
            raise _Status(0x9D)
        else:
            raise _Status(0xAE)
        offset = int.from_bytes(data[1:4], "little")
        length = int.from_bytes(data[4:7], "little")
        size = len(f.data)
        if offset >= size or offset + length > size:
            raise _Status(0xBE)
        end = offset + length if length else size
        return _Reply(f.data[offset:end], comm=comm)
