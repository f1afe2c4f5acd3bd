"""`python -m badged.doctor.pcsc_probe`: list the readers, as whoever runs it; one JSON line.

Doctor runs it as the service user (runuser) when it runs as root: pcscd ≥ 2.0 asks
polkit about the connecting user, so only a connection as `badged` says whether the
service itself gets in.
"""

from __future__ import annotations

import json
import sys

from ..cards.pcsc import PcscError, list_readers


def main() -> int:
    try:
        print(json.dumps({"readers": list_readers()}))
    except PcscError as exc:
        print(json.dumps({"error": str(exc)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
