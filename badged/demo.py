"""Run the daemon on the demo school: no hardware, no server.

`python -m badged.demo` (what scripts/demo.sh runs) prepares ./state/demo, writes the demo
card's test key as a private credential, and runs `badged run` with demo/badged.yaml.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOST_FILE = REPO / "demo" / "badged.yaml"
STATE = REPO / "state" / "demo"
# The demo card's read key: test data shipped in demo/cards/, never a site's real key.
DEMO_KEYS = {
    "demo-crous-read": "00112233445566778899AABBCCDDEEFF",
    "demo-uid-read": "F0E1D2C3B4A5968778695A4B3C2D1E0F",
    "demo-diversify-master": "00112233445566778899AABBCCDDEEFF",
    "demo-legacy-read": "C0C1C2C3C4C5C6C7C8C9CACBCCCDCECF",
}


def prepare() -> dict[str, str]:
    """State and credentials directories, private like the service's; the env to run in."""
    STATE.mkdir(mode=0o700, parents=True, exist_ok=True)
    credentials = STATE / "credentials"
    credentials.mkdir(mode=0o700, exist_ok=True)
    for name, value in DEMO_KEYS.items():
        path = credentials / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")
    return {"CREDENTIALS_DIRECTORY": str(credentials), "BADGED_HOST_CONFIG": str(HOST_FILE)}


def main() -> None:
    env = {**os.environ, **prepare()}
    print(f"badged demo: host file {HOST_FILE}, state {STATE}", flush=True)
    badged = Path(sys.executable).with_name("badged")
    os.execve(badged, [str(badged), "run"], env)


if __name__ == "__main__":
    main()
