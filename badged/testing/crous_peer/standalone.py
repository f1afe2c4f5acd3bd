"""The peer in a process of its own, as the CROUS is: the demo's, and the bench's."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from .peer import CrousPeer

DESCRIPTION = "A strict local API CROUS on loopback: for the tests, the bench and the demo."


def main(argv: list[str] | None = None) -> int:
    """Serve a peer until interrupted (the demo's CROUS)."""
    parser = argparse.ArgumentParser(prog="python -m badged.testing.crous_peer",
                                     description=DESCRIPTION)
    parser.add_argument("--listen", default="127.0.0.1:8791")
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--secret-file", type=Path, required=True)
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the peer listens on loopback only")
    secret = args.secret_file.read_text(encoding="utf-8").strip()
    peer = CrousPeer(clients={args.client_id: secret}, host=host, port=int(port))
    peer.tariffs = DEMO_TARIFFS
    peer.start()
    print(f"crous-peer: API CROUS on {peer.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        peer.close()
    return 0


# The demo CROUS's published grid (differs from config/tariffs/demo.yaml on purpose: the
# demo's `badged crous tariffs` shows a difference).
DEMO_TARIFFS: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("99", "0009999Z"): [
        {"statusCode": "psg", "indexMin": 0, "indexMax": 0, "idCompanyRate": 78, "idRate": 99},
        {"statusCode": "psg", "indexMin": 1, "indexMax": 474, "idCompanyRate": 78, "idRate": 1},
        {"statusCode": "psg", "indexMin": 475, "indexMax": None, "idCompanyRate": 78,
         "idRate": 2},
    ],
}
