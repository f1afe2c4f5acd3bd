"""Text files from other systems (CROUS, registry exports): decode what they really are.

None of them states an encoding: accept UTF-8 (with or without BOM), else Windows-1252,
else Latin-1 (the five bytes Windows-1252 leaves undefined are Latin-1 control characters);
refuse binary and UTF-16 with a clear reason. Lines end in CRLF, LF or (old Macs) CR.
"""

from __future__ import annotations

import codecs
from pathlib import Path


class TextFileError(Exception):
    """The file as a whole is unusable: `FILE:1: reason` (or `FILE: reason`)."""

    def __init__(self, file: str, reason: str, line: int | None = 1) -> None:
        self.file, self.reason, self.line = file, reason, line
        super().__init__(f"{file}:{line}: {reason}" if line else f"{file}: {reason}")


# C0 control characters other than tab, line feed, vertical tab, form feed, carriage return.
_CONTROLS = bytes(range(0, 9)) + bytes(range(14, 32))


def _looks_binary(data: bytes) -> bool:
    """More than 5 % control characters in the first 8 KiB: compressed, image or UTF-16
    data (10 % and more), not text with a stray NUL in one row (that row is rejected)."""
    head = data[:8192]
    return (len(head) - len(head.translate(None, _CONTROLS))) * 20 > len(head)


def decode(file: str, data: bytes) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise TextFileError(file, "UTF-16 text is not supported: save it as UTF-8")
    if _looks_binary(data):
        raise TextFileError(file, "not a text file (binary data)")
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # decodes any byte: NUL (binary) is refused above


def read_lines(path: Path) -> list[str]:
    """Physical lines, decoded, line ends removed (line N of the file is index N-1)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TextFileError(str(path), f"cannot read: {exc.strerror}", line=None) from None
    text = decode(str(path), data)
    if not text.strip():
        raise TextFileError(str(path), "empty file")
    lines = text.split("\n" if "\n" in text else "\r")
    return [line.removesuffix("\r") for line in lines]
