-- Schema 3: what the CROUS was told, and the mail of each batch.

-- One row per person sent in a batch: the change sets compare a person's current
-- fingerprint with the last one sent for the same kind, so a change is sent once.
CREATE TABLE exchange_items (
    batch_id     INTEGER NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    person_id    TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    reason       TEXT NOT NULL,
    PRIMARY KEY (batch_id, person_id)
);
CREATE INDEX exchange_items_last ON exchange_items (kind, person_id, batch_id);

ALTER TABLE batches ADD COLUMN mail_from TEXT;
ALTER TABLE batches ADD COLUMN subject TEXT;
ALTER TABLE batches ADD COLUMN body TEXT;
ALTER TABLE batches ADD COLUMN academic_year INTEGER;
ALTER TABLE batches ADD COLUMN archive_path TEXT;        -- the .eml kept after sending
CREATE INDEX batches_state ON batches (state, next_attempt_at);
