-- Schema 5: door-system exports (badged.access): what each export last delivered.

-- One row per configured export: its last success, the digest of what it delivered (an
-- identical export is not rewritten), the store's card-change marker it had seen (an
-- `on_change` export runs when the marker moves), and its failures and retry backoff.
CREATE TABLE access_exports (
    export           TEXT PRIMARY KEY,
    destination      TEXT,                          -- where it went (no secret)
    digest           TEXT,                          -- sha256 of the files' contents
    files            TEXT,                          -- JSON list of the file names written
    cards            INTEGER,                       -- cards in the export
    change_marker    INTEGER NOT NULL DEFAULT 0,    -- max(card_state_changes.id) seen
    last_success_at  REAL,                          -- epoch seconds (written or unchanged)
    last_written_at  REAL,                          -- epoch seconds of the last write
    last_run_at      REAL,
    last_error       TEXT,
    failures         INTEGER NOT NULL DEFAULT 0,    -- failed attempts since the last success
    next_attempt_at  REAL                           -- backoff: retry not before (epoch s)
);

-- The cards the door system holds from each export, as last delivered: the dry run and
-- the P2S updates compare the population of now with this.
CREATE TABLE access_export_cards (
    export       TEXT NOT NULL,
    csn          TEXT NOT NULL,
    person_id    TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('valid', 'blocked')),
    fingerprint  TEXT NOT NULL,                     -- digest of the card's line
    PRIMARY KEY (export, csn)
) WITHOUT ROWID;
