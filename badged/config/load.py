"""YAML files → plain Python data that remembers where every value came from.

PyYAML's composed node tree carries marks; we construct plain dicts and lists from it and
keep, for every path into the data, the mark of its key and of its value. Validation
errors (pydantic `loc` tuples or our own rule paths) are then located exactly.
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


class _Builder:
    """Builds plain data from a composed node, recording marks and duplicate keys."""

    def __init__(self, loader: yaml.SafeLoader, doc: Document) -> None:
        self.loader, self.doc = loader, doc
        self.issues: list[ConfigIssue] = []

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.doc.value_marks[path] = _mark(node)
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node, deep=True)
                if isinstance(key, list | dict):
                    self.issues.append(self._issue(key_node, path, "a key must be a scalar"))
                    continue
                if key in result:
                    self.issues.append(self._issue(key_node, (*path, key), "duplicate key"))
                    continue
                self.doc.key_marks[(*path, key)] = _mark(key_node)
                result[key] = self.build(value_node, (*path, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)

    def _issue(self, node: yaml.Node, path: Path_, message: str) -> ConfigIssue:
        line, col = _mark(node)
        return ConfigIssue(str(self.doc.file), line, col, dotted(path), message)


def _mark(node: yaml.Node) -> Mark:
    return node.start_mark.line + 1, node.start_mark.column + 1


def parse_yaml(text: str, file: Path) -> Document:
    """Parse one YAML document; raise ConfigError for syntax errors, duplicate keys, empty files."""
    doc = Document(file=file, data=None)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError.single(file, "empty file")
        builder = _Builder(loader, doc)
        doc.data = builder.build(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.context_mark and exc.problem_mark:
            ctx = exc.context_mark
            problem += f" ({exc.context} at line {ctx.line + 1}, column {ctx.column + 1})"
        raise ConfigError.single(file, f"YAML syntax error: {problem}", line, col) from None
    except yaml.YAMLError as exc:  # reader errors: bad bytes, control characters
        raise ConfigError.single(file, f"YAML error: {exc}") from None
    finally:
        loader.dispose()
    if builder.issues:
        raise ConfigError(builder.issues)
    return doc


def read_yaml(file: Path) -> Document:
    """Read and parse a YAML file; unreadable files are config errors too."""
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError.single(file, f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError.single(file, f"cannot read: {exc.strerror}") from None
    return parse_yaml(text, file)
