-- Schema 2: card stock and its costs, and the CROUS reason of each card state change.

-- Every movement of blank cards: + received (a delivery), - issued (an enrolment).
CREATE TABLE stock_moves (
    id              INTEGER PRIMARY KEY,
    at              TEXT NOT NULL,
    delta           INTEGER NOT NULL CHECK (delta <> 0),
    reason          TEXT NOT NULL CHECK (reason IN ('received', 'issued')),
    batch_ref       TEXT,
    csn             TEXT,                           -- the card issued
    unit_price_eur  TEXT NOT NULL,                  -- the COMUE price at the time (decimal)
    direct_price_eur TEXT,                          -- the direct price then, for savings
    actor           TEXT NOT NULL
);
CREATE INDEX stock_moves_at ON stock_moves (at);

-- The CROUS's cancel reason for the change (lost DP, stolen DV, broken CD, else HS;
-- NULL for a revalidation), read by the exchanges and the API push.
ALTER TABLE card_state_changes ADD COLUMN crous_reason TEXT;
CREATE INDEX card_state_changes_unsent ON card_state_changes (crous_sent_at)
    WHERE crous_sent_at IS NULL;
