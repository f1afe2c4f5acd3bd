"""The API CROUS sync: tell the CROUS, person by person, what changed since it was last told.

For each person of the school's `transport: api` exchange kinds who has an active card or
was told before, and for each card with a queued state change (`badged card set-state`):

1. holder: find it (identifier, then the person's other known ids; a holder found under
   another id is renamed with PATCH), create it, or update it: staff fully, students only
   identifier, ine, rneOrgCode, idCompanyRate and a longer dueDate (the CROUS owns their
   names, e-mail, birth date and idRate). A leaver's past dueDate becomes now + 3 h.
2. cards: an active card is added (or revalidated when the CROUS has it cancelled); a
   lost, stolen, broken, expired or destroyed one is cancelled with its reason (DP, DV, CD,
   HS; 404 means the CROUS does not know it: done).

What the CROUS was told is stored per person and per card (store.crous_api) as a
fingerprint, so a second run with nothing changed makes no call at all. Each refusal is
stored with its operation, status, code and whether it blocks (docs/crous-api.md has the
table); non-blocking ones are tried again at the next run, blocking ones when what is to be
told changes. A write whose answer was lost (timeout, dropped connection, crash) is looked
up before it is sent again, so nothing reaches the CROUS twice.

Where each part lives: `plan.py` (what is due: pure over the store, and the dry run's
calls), `holders.py` and `cards.py` (the steps), `refusals.py` (what a refusal means),
`session.py` (what a run's steps share: transactions, calls, the refusals' bookkeeping),
`run.py` (the run: `sync`). Callers import the names below from `badged.crous.sync`;
importing it loads the HTTP client, so the daemon does so only when a sync runs.
"""

from .cards import card_body
from .plan import CardTask, Desired, PersonTask, PlannedCall, api_kinds, describe, plan
from .refusals import judge
from .run import Syncer, SyncError, sync
from .session import SyncReport

__all__ = [
    "CardTask",
    "Desired",
    "PersonTask",
    "PlannedCall",
    "SyncError",
    "SyncReport",
    "Syncer",
    "api_kinds",
    "card_body",
    "describe",
    "judge",
    "plan",
    "sync",
]
