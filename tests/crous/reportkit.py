"""What an import prints for rejected rows: the value-free lines, then the count by reason."""

from __future__ import annotations


def counted(file: str, errors: list[str]) -> list[str]:
    """`FILE:LINE: reason` for each error ("LINE: reason"), then `FILE: N rejected: rule`
    for each rule (a reason without its value-free detail), the most frequent first."""
    rules: dict[str, int] = {}
    for error in errors:
        for problem in error.split(": ", 1)[1].split("; "):
            rule = problem
            for detail in (": already on line", ": found ", ": 13 digits", ": 3 bytes",
                           ": 11 bytes"):
                rule = rule.split(detail)[0]
            rules[rule] = rules.get(rule, 0) + 1
    by_count = sorted(rules.items(), key=lambda item: (-item[1], item[0]))
    return [f"{file}:{error}" for error in errors] + [
        f"{file}: {count} rejected: {rule}" for rule, count in by_count]
