-- badged store, schema 1. Times are UTC: ISO 8601 text, or epoch seconds where noted.

CREATE TABLE people (
    id                   TEXT PRIMARY KEY,          -- institutional id (eppn, registry id)
    ine                  TEXT UNIQUE,
    last_name            TEXT NOT NULL,
    first_name           TEXT NOT NULL,
    birth_date           TEXT,
    email                TEXT,
    category             TEXT NOT NULL CHECK (category IN ('student', 'staff')),
    academic_year        INTEGER,                   -- e.g. 2026 for 2026-2027
    first_enrolment_year INTEGER,
    status_code          TEXT,
    staff_index          INTEGER,
    end_of_rights        TEXT,
    source               TEXT,                      -- registry source name, or 'manual'
    leaving_since        TEXT,                      -- absent from a full export since
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL
);

-- The CROUS card CSV: one row per pre-encoded card (docs/crous.md).
CREATE TABLE crous_cards (
    csn            TEXT PRIMARY KEY,                -- NUM_PROTOCOLAIRE, upper-case hex
    rid            TEXT NOT NULL,                   -- NUM_APPLICATIF
    num_carte      INTEGER NOT NULL UNIQUE,         -- idZdc
    pix_ss         TEXT NOT NULL,
    pix_nn         TEXT NOT NULL,
    appl           TEXT NOT NULL,
    nfo            TEXT NOT NULL,
    cnous          TEXT NOT NULL,
    crous          TEXT NOT NULL,
    emetteur       INTEGER NOT NULL,                -- idTransmitter (hex in the file)
    mapping        INTEGER NOT NULL,                -- idMapping
    date_creation  TEXT NOT NULL,                   -- ISO date
    imported_at    TEXT NOT NULL,
    source_file    TEXT NOT NULL
);

CREATE TABLE cards (
    csn            TEXT PRIMARY KEY,                -- the real UID, upper-case hex
    person_id      TEXT REFERENCES people (id),
    crous_number   INTEGER,
    state          TEXT NOT NULL DEFAULT 'active'
                   CHECK (state IN ('active', 'lost', 'stolen', 'broken', 'expired', 'destroyed')),
    enrolled_at    TEXT,
    updated_at     TEXT NOT NULL
);
CREATE INDEX cards_person ON cards (person_id);

-- Every state change of a card: who, when, why; queued for the CROUS until sent.
CREATE TABLE card_state_changes (
    id             INTEGER PRIMARY KEY,
    csn            TEXT NOT NULL REFERENCES cards (csn),
    old_state      TEXT,
    new_state      TEXT NOT NULL,
    reason         TEXT,
    actor          TEXT NOT NULL,
    at             TEXT NOT NULL,
    crous_sent_at  TEXT
);

-- Card taps and other operational events (no personal data beyond the card link).
CREATE TABLE events (
    id             INTEGER PRIMARY KEY,
    at             TEXT NOT NULL,
    kind           TEXT NOT NULL,
    reader         TEXT,
    csn            TEXT,
    detail         TEXT                             -- JSON
);
CREATE INDEX events_at ON events (at);

-- The outbox: a batch is written whole before anything is sent (docs/design.md).
CREATE TABLE batches (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL,
    transport       TEXT NOT NULL CHECK (transport IN ('mail', 'api')),
    message_id      TEXT NOT NULL UNIQUE,
    recipients      TEXT NOT NULL,                  -- JSON list of addresses
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    sent_at         TEXT
);
CREATE TABLE batch_files (
    batch_id        INTEGER NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    content         BLOB NOT NULL,
    sha256          TEXT NOT NULL,
    PRIMARY KEY (batch_id, name)
);

-- Scheduled jobs: last run and last success survive restarts (missed runs catch up).
CREATE TABLE job_runs (
    job             TEXT PRIMARY KEY,
    last_run_at     REAL,                           -- epoch seconds
    last_success_at REAL,                           -- epoch seconds
    last_error      TEXT,
    failures        INTEGER NOT NULL DEFAULT 0
);
