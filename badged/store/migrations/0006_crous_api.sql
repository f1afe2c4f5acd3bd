-- Schema 6: what the API CROUS was last told, what it refused, and each sync run
-- (badged.store.crous_api, badged.crous.sync).

-- Per person: the identifier the CROUS knows them by, and a fingerprint of the holder it
-- was last told (or found matching): a sync calls the API only for a changed fingerprint.
CREATE TABLE crous_api_holders (
    person_id     TEXT PRIMARY KEY,
    identifier    TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    due_date      TEXT,                             -- the dueDate the CROUS holds (ISO UTC)
    told_at       TEXT NOT NULL
);

-- Per card: what the CROUS was last told of it: 'active' (added or revalidated) or the
-- cancel reason (DP, DV, CD, HS). `pending_write` names a write sent whose outcome is
-- unknown (a timeout, a crash): the next attempt looks the card up before writing again.
CREATE TABLE crous_api_cards (
    csn           TEXT PRIMARY KEY,
    person_id     TEXT NOT NULL,
    identifier    TEXT NOT NULL,
    id_zdc        INTEGER NOT NULL,
    told_state    TEXT,
    pending_write TEXT,
    told_at       TEXT NOT NULL
);

-- What the API refused or could not be told, one row per person or card (the latest
-- failure; `tries` counts them). Non-blocking failures are retried at the next run; a
-- blocking one waits until what is to be told changes (`fingerprint`).
CREATE TABLE crous_api_errors (
    subject       TEXT NOT NULL CHECK (subject IN ('person', 'card')),
    key           TEXT NOT NULL,                    -- person id, or CSN
    person_id     TEXT,
    operation     TEXT NOT NULL,
    status        INTEGER,                          -- HTTP status; NULL: no answer
    code          TEXT,                             -- the CROUS code (-8…), or timeout/network
    message       TEXT NOT NULL,
    blocking      INTEGER NOT NULL CHECK (blocking IN (0, 1)),
    tries         INTEGER NOT NULL DEFAULT 1,
    fingerprint   TEXT,
    first_at      TEXT NOT NULL,
    last_at       TEXT NOT NULL,
    PRIMARY KEY (subject, key)
);

-- Each sync run (dry runs are not recorded).
CREATE TABLE crous_api_runs (
    id            INTEGER PRIMARY KEY,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    calls         INTEGER NOT NULL DEFAULT 0,
    done          INTEGER NOT NULL DEFAULT 0,       -- holders and cards brought up to date
    failed        INTEGER NOT NULL DEFAULT 0,
    pending       INTEGER NOT NULL DEFAULT 0,       -- due items left for the next run
    outcome       TEXT,                             -- ok | partial | aborted: why
    duration      REAL
);

-- A sync reads and settles each card's queued changes, and follows a holder's cards: both
-- by key, never by a scan (10 000 people would make each run quadratic).
CREATE INDEX card_state_changes_csn ON card_state_changes (csn, id);
CREATE INDEX crous_api_cards_person ON crous_api_cards (person_id);
