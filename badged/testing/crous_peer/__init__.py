"""A strict local API CROUS on loopback: for the tests, the bench and the demo.

It implements what docs/crous-api.md describes, and is strict where the real service is:

- both token endpoints (`POST …/oauth/token?grant_type=client_credentials`, JSON
  `access_token`; legacy `POST /v1/token` with `grant_type=client_credentials&env=PRD|PPD`,
  token in the `authorization` header), HTTP Basic, tokens that expire;
- holders and cards with their exact JSON fields: an unknown or missing field, a wrong type,
  a date not in `yyyy-MM-dd'T'HH:mm:ss.SSS'Z'` (or not a real day), a `uid`/`rid` not in
  upper-case hex is a 400; an existing holder is 422 `-11`, a past dueDate 422 `-8`, an
  unknown holder or card 404; the `uid` header of a card PATCH must name the card; a card
  added to a closed account (CLOTURE, CLOTURE_EN_COURS) is a 404 until
  `DELETE /closed-rightholders/{identifier}` re-opens it;
- answers carry dates in varying forms (`…+02`, `…Z`, no milliseconds) like the real one;
- faults on demand (`Fault`): any status and CROUS code, 5xx bursts, slow answers past the
  client's read timeout whose write still lands, dropped connections (before or after the
  write), and tokens revoked mid-run.

In-process: `with CrousPeer(clients={"id": "secret"}) as peer: peer.base_url …`; the test
reads `peer.holders`, `peer.cards`, `peer.writes` (every write applied, in order).
Standalone (the demo): `python -m badged.testing.crous_peer --listen 127.0.0.1:8791
--client-id demo --secret-file FILE`.

Its parts: `peer.py` (state, what each call does, life cycle), `schema.py` (what a request
must be), `faults.py` (`Fault`), `server.py` (the HTTP handler), `standalone.py` (`main`).
"""

from .faults import Fault
from .peer import CrousPeer
from .standalone import DEMO_TARIFFS, main

__all__ = ["DEMO_TARIFFS", "CrousPeer", "Fault", "main"]
