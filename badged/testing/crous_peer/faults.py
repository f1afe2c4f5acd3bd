"""Faults on demand: what the peer does instead of answering normally."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass
class Fault:
    """An injected behaviour for requests matching `method` and `path` (a regex searched in
    the path, query excluded), `times` times (None: always), after `skip` matches.

    kind: "status" (answer `status` with CROUS `code`, nothing applied), "slow" (apply, then
    answer after `delay` seconds), "drop" (close without answering; `after_write`: apply
    first), "expire-tokens" (revoke every token, then handle the request: it gets a 401).
    """

    method: str
    path: str
    kind: str = "status"
    status: int = 500
    code: str | None = None
    message: str = "Erreur"
    times: int | None = 1
    skip: int = 0
    delay: float = 0.0
    after_write: bool = False
    retry_after: str | None = None
    seen: int = 0

    def take(self, method: str, path: str) -> bool:
        if self.method not in ("*", method) or not re.search(self.path, path):
            return False
        self.seen += 1
        if self.seen <= self.skip:
            return False
        if self.times is not None:
            if self.times <= 0:
                return False
            self.times -= 1
        return True
