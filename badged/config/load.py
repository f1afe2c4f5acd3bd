"""The one YAML loader of badged: files → plain data that remembers where every value came from.

Every YAML file badged reads (the tree, the host file, the simulator's card files) goes
through here, because a YAML file is input like any other: a hostile or broken one must get
one located error, fast, never a traceback, a stall or a memory blow-up. PyYAML alone gives
all three (reader errors outside any `try`, recursion in its composer, aliases that expand
exponentially, unhashable keys, integers too long to convert), so the composer here counts
as it goes and stops at the first breach of `Limits`:

- the file's size, before parsing;
- the depth of nesting, the number of nodes and of aliases, where an alias counts as the
  whole value it stands for (a "billion laughs" file stops after a few thousand nodes);
- an alias to a node that contains it (a cycle);
- the length of a scalar, and of a number (Python refuses ints of more than 4300 digits);
- keys that are not plain scalars (a key is a string: `1:` gives the key "1"), and tags
  beyond plain YAML (strings, numbers, booleans, null, dates, lists, mappings).

From the composed node tree we construct plain dicts and lists and keep, for every path
into the data, the mark of its key and of its value. Validation errors (pydantic `loc`
tuples or our own rule paths) are then located exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, ConfigIssue

Path_ = tuple[str | int, ...]
Mark = tuple[int, int]  # 1-based line, column


@dataclass(frozen=True)
class Limits:
    """What one YAML file may hold; generous for any real config or card file."""

    file_bytes: int = 256 * 1024
    depth: int = 32
    nodes: int = 10_000  # an alias counts as every node of the value it stands for
    aliases: int = 200
    scalar_chars: int = 64 * 1024  # a card file's 8 KiB file content in hex fits
    number_chars: int = 64


LIMITS = Limits()

_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(_CORE + t for t in ("str", "int", "float", "bool", "null", "timestamp"))
_NUMBER_TAGS = frozenset((_CORE + "int", _CORE + "float"))
_STR = _CORE + "str"


@dataclass
class Document:
    """One YAML file: its data plus the marks of every key and value in it."""

    file: Path
    data: Any
    value_marks: dict[Path_, Mark] = field(default_factory=dict)
    key_marks: dict[Path_, Mark] = field(default_factory=dict)

    def locate(self, loc: Sequence[Any]) -> tuple[Path_, Mark]:
        """Map a validation `loc` onto the data: the path that exists and its best mark.

        Elements of `loc` that are not keys of the data (pydantic's union tags, validator
        names) are skipped. A missing key points at its parent mapping; an existing key at
        the key itself when the error is about the key, else at its value.
        """
        node, path = self.data, ()
        for part in loc:
            if isinstance(node, dict) and part in node:
                node, path = node[part], (*path, part)
            elif isinstance(node, dict) and str(part) in node:
                node, path = node[str(part)], (*path, str(part))
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node, path = node[part], (*path, part)
        return path, self.value_marks.get(path, (1, 1))

    def issue(self, loc: Sequence[Any], message: str, *, at_key: bool = False,
              shown_path: Sequence[Any] | None = None) -> ConfigIssue:
        """A located issue. `shown_path` names a field that may not exist (a missing key)."""
        path, mark = self.locate(loc)
        if at_key and path in self.key_marks:
            mark = self.key_marks[path]
        shown = shown_path if shown_path is not None else path
        return ConfigIssue(str(self.file), mark[0], mark[1], dotted(shown), message)


def dotted(path: Sequence[Any]) -> str:
    return ".".join(str(p) for p in path)


# --- reading and composing, within the limits ---------------------------------------------

class _BreachError(Exception):
    """A limit or rule of the loader broken at `mark`."""

    def __init__(self, mark: yaml.Mark | None, message: str) -> None:
        super().__init__(message)
        self.mark, self.message = mark, message


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_CORE) if tag.startswith(_CORE) else tag


class _LimitedLoader(yaml.SafeLoader):
    """PyYAML's safe loader whose composer checks `Limits` node by node.

    Sizes and heights of composed nodes are kept, so an alias is charged for everything it
    stands for at the moment it is met, before anything is expanded.
    """

    def __init__(self, text: str, limits: Limits) -> None:
        super().__init__(text)
        self.limits = limits
        self.depth = 0
        self.nodes = 0
        self.alias_count = 0
        self.open_anchors: set[str] = set()
        self.size: dict[int, int] = {}  # id(node) → nodes it expands to
        self.height: dict[int, int] = {}  # id(node) → levels it expands to

    def fetch_flow_collection_start(self, token_class: type) -> None:
        # Checked as soon as the scanner sees it: PyYAML holds tokens back while a simple
        # key may still come, and its bookkeeping grows with each level (quadratic).
        if self.flow_level >= self.limits.depth:
            raise _BreachError(self.get_mark(), f"nested too deeply: more than "
                               f"{self.limits.depth} levels")
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        limits = self.limits
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            anchor = event.anchor
            if anchor in self.open_anchors:
                raise _BreachError(event.start_mark, f"recursive alias *{anchor}: it refers "
                                   "to a value that contains it")
            if anchor not in self.anchors:
                return super().compose_node(parent, index)  # PyYAML's "undefined alias"
            self.alias_count += 1
            if self.alias_count > limits.aliases:
                raise _BreachError(event.start_mark, f"too many aliases: more than "
                                   f"{limits.aliases}")
            target = self.anchors[anchor]
            self._charge(event.start_mark, self.size[id(target)], self.height[id(target)])
            self.get_event()
            return target
        event = self.peek_event()
        before = self.nodes
        self._charge(event.start_mark, 1, 1)
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self.open_anchors.add(anchor)
        self.depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
            self.open_anchors.discard(anchor)
        self._check(node)
        children = self._children(node)
        self.size[id(node)] = self.nodes - before
        self.height[id(node)] = 1 + max((self.height[id(c)] for c in children), default=0)
        return node

    def _charge(self, mark: yaml.Mark, nodes: int, height: int) -> None:
        limits = self.limits
        self.nodes += nodes
        if self.nodes > limits.nodes:
            raise _BreachError(mark, f"too many nodes: more than {limits.nodes} (an alias "
                               "counts as the whole value it stands for)")
        if self.depth + height > limits.depth:
            raise _BreachError(mark, f"nested too deeply: more than {limits.depth} levels")

    @staticmethod
    def _children(node: yaml.Node) -> list[yaml.Node]:
        if isinstance(node, yaml.MappingNode):
            return [n for pair in node.value for n in pair]
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        return []

    def _check(self, node: yaml.Node) -> None:
        limits, tag = self.limits, node.tag
        if isinstance(node, yaml.ScalarNode):
            if tag not in _SCALAR_TAGS:
                what = "merge keys (<<)" if tag == _CORE + "merge" else f"tag {_short_tag(tag)}"
                raise _BreachError(node.start_mark, f"{what} not supported: plain YAML only "
                                   "(strings, numbers, booleans, null, lists, mappings)")
            if len(node.value) > limits.scalar_chars:
                raise _BreachError(node.start_mark, f"value too long: {len(node.value)} "
                                   f"characters, at most {limits.scalar_chars}")
            if tag in _NUMBER_TAGS and len(node.value) > limits.number_chars:
                raise _BreachError(node.start_mark, f"number too long: {len(node.value)} "
                                   f"characters, at most {limits.number_chars}")
            try:
                node.value.encode("utf-8")
            except UnicodeEncodeError:  # an escaped lone surrogate: "\ud800"
                raise _BreachError(node.start_mark, "not valid Unicode text (a lone "
                                   "surrogate)") from None
            return
        expected = _CORE + ("map" if isinstance(node, yaml.MappingNode) else "seq")
        if tag != expected:
            raise _BreachError(node.start_mark, f"tag {_short_tag(tag)} not supported: plain "
                               "YAML only (strings, numbers, booleans, null, lists, mappings)")
        if isinstance(node, yaml.MappingNode):
            for key, _ in node.value:
                if not isinstance(key, yaml.ScalarNode):
                    raise _BreachError(key.start_mark, "a key must be a plain name (a "
                                       "string), not a list or a mapping")


def read_text(file: Path, limits: Limits = LIMITS) -> str:
    """A YAML file's text, no larger than the limit; ConfigError if unreadable."""
    try:
        with file.open("rb") as stream:
            data = stream.read(limits.file_bytes + 1)
    except OSError as exc:
        raise ConfigError.single(file, f"cannot read: {exc.strerror}") from None
    if len(data) > limits.file_bytes:
        raise ConfigError.single(file, f"file too large: more than {limits.file_bytes} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = len(data[data.rfind(b"\n", 0, exc.start) + 1:exc.start].decode()) + 1
        raise ConfigError.single(file, f"not UTF-8 text (byte 0x{data[exc.start]:02X})",
                                 line, column) from None


def compose_yaml(text: str, file: Path | str, limits: Limits = LIMITS) -> yaml.Node | None:
    """The checked node tree of one YAML document (None if empty); ConfigError otherwise.

    Every node is within `limits`, every tag plain YAML, every key a scalar: walking the
    tree (or constructing its scalars with `scalar_value`) cannot blow up.
    """
    if len(text) > limits.file_bytes:
        raise ConfigError.single(file, f"file too large: more than {limits.file_bytes} bytes")
    loader: _LimitedLoader | None = None
    try:
        loader = _LimitedLoader(text, limits)
        return loader.get_single_node()
    except _BreachError as exc:
        line, col = (exc.mark.line + 1, exc.mark.column + 1) if exc.mark else (1, 1)
        raise ConfigError.single(file, exc.message, line, col) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.context_mark and exc.problem_mark:
            ctx = exc.context_mark
            problem += f" ({exc.context} at line {ctx.line + 1}, column {ctx.column + 1})"
        raise ConfigError.single(file, f"YAML syntax error: {problem}", line, col) from None
    except yaml.reader.ReaderError as exc:  # a control character, a lone surrogate
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - text.rfind("\n", 0, exc.position)
        char = exc.character if isinstance(exc.character, int) else ord(exc.character or "\0")
        raise ConfigError.single(file, f"character U+{char:04X} is not allowed in YAML "
                                 "(a control character?)", line, col) from None
    except yaml.YAMLError as exc:
        raise ConfigError.single(file, f"YAML error: {exc}") from None
    finally:
        if loader is not None:
            loader.dispose()


def scalar_value(node: yaml.ScalarNode) -> Any:
    """The Python value of a checked scalar node; ValueError with a message if invalid
    (an explicit `!!int abc`, a date that does not exist)."""
    try:
        return yaml.constructor.SafeConstructor().construct_object(node)
    except Exception:  # PyYAML's constructors fail in many ways (IndexError on `!!int ''`)
        raise ValueError(f"not a valid {_short_tag(node.tag).removeprefix('!!')}: "
                         f"{node.value[:40]!r}") from None


# --- building plain data ------------------------------------------------------------------

class _Builder:
    """Builds plain data from a checked node tree, recording marks and duplicate keys."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.issues: list[ConfigIssue] = []

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.doc.value_marks[path] = _mark(node)
        if isinstance(node, yaml.MappingNode):
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = str(key_node.value)  # a scalar (checked when composed): its text
                if key in result:
                    self.issues.append(self._issue(key_node, (*path, key), "duplicate key"))
                    continue
                self.doc.key_marks[(*path, key)] = _mark(key_node)
                result[key] = self.build(value_node, (*path, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        try:
            return scalar_value(node)
        except ValueError as exc:
            self.issues.append(self._issue(node, path, str(exc)))
            return None

    def _issue(self, node: yaml.Node, path: Path_, message: str) -> ConfigIssue:
        line, col = _mark(node)
        return ConfigIssue(str(self.doc.file), line, col, dotted(path), message)


def _mark(node: yaml.Node) -> Mark:
    return node.start_mark.line + 1, node.start_mark.column + 1


def build_document(node: yaml.Node, file: Path) -> tuple[Document, list[ConfigIssue]]:
    """The plain data of a composed node tree (from `compose_yaml`) with its marks, and
    the issues met: duplicate keys (the first one is kept) and invalid scalars (an
    explicit `!!int abc`, kept as None). A reader that reports every problem at once
    checks the data even so."""
    doc = Document(file=file, data=None)
    builder = _Builder(doc)
    doc.data = builder.build(node, ())
    return doc, builder.issues


def parse_yaml(text: str, file: Path, limits: Limits = LIMITS) -> Document:
    """Parse one YAML document; raise ConfigError for syntax errors, breached limits,
    duplicate keys, empty files."""
    node = compose_yaml(text, file, limits)
    if node is None:
        raise ConfigError.single(file, "empty file")
    doc, issues = build_document(node, file)
    if issues:
        raise ConfigError(issues)
    return doc


def read_yaml(file: Path, limits: Limits = LIMITS) -> Document:
    """Read and parse a YAML file; unreadable, oversized or hostile files are config errors."""
    return parse_yaml(read_text(file, limits), file, limits)
