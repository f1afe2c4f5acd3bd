"""A program reading one card N times, for the concurrency test and bench (run as a script).

    python concurrent_reader.py READER N EXPECTED_JSON

Reads with the demo profile (`read_one`, as `badged card read` does) and prints one JSON
line: {"ok": n, "wrong": n, "busy": n, "errors": {reason: n}}. A read is `wrong` when it
returned values other than EXPECTED (csn, crous_number, escn); any other failure is
counted by its message's first words (a half read).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from badged.cards.pcsc import PcscError, ReaderBusy
from badged.cards.profile import CardReadError, ProfileReader
from badged.cards.reading import read_one
from badged.config.tree import load_card_profile

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    reader, count, expected = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    profile = ProfileReader(*load_card_profile(REPO / "config", "demo"))
    ok = wrong = busy = 0
    errors: Counter[str] = Counter()
    for _ in range(count):
        try:
            read = read_one(profile, reader, 5)
        except (CardReadError, PcscError) as exc:
            if isinstance(exc, ReaderBusy) or isinstance(exc.__cause__, ReaderBusy):
                busy += 1
            else:
                errors[str(exc).split(":")[-1].strip()[:60]] += 1
            continue
        got = {"csn": read.csn, "crous_number": read.crous_number, "escn": read.escn}
        if got == expected:
            ok += 1
        else:
            wrong += 1
    print(json.dumps({"ok": ok, "wrong": wrong, "busy": busy, "errors": dict(errors)}))


if __name__ == "__main__":
    main()
