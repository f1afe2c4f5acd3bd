"""Doctor's API CROUS line asks the token endpoint for a token, and nothing else."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crous"))

from apikit import CLIENT_ID, SECRET, ApiSchool

from badged.doctor import crous_api
from badged.testing.crous_peer import CrousPeer


def test_token_ok_then_refused(tmp_path: Path) -> None:
    with CrousPeer(clients={CLIENT_ID: SECRET}) as peer:
        school = ApiSchool(tmp_path, peer)
        [check] = crous_api.checks(school.site, 2.0)
        assert check.status == "ok" and "token obtained" in check.detail
        assert peer.token_requests == 1 and peer.api_requests() == []
        peer.clients[CLIENT_ID] = "rotated"
        [check] = crous_api.checks(school.site, 2.0)
        assert check.status == "fail" and "refused client id" in check.detail
        assert SECRET not in check.detail + (check.fix or "")
