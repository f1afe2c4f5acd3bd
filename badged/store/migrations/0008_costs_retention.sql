-- Schema 8: what a card costs (a card issued to someone who already had one is a
-- replacement), and the purge of people's records (badged.enrolment.retention).

ALTER TABLE stock_moves ADD COLUMN replacement INTEGER NOT NULL DEFAULT 0
    CHECK (replacement IN (0, 1));
-- Cards issued before this schema: a replacement if the holder had an earlier card.
UPDATE stock_moves SET replacement = 1
 WHERE reason = 'issued' AND EXISTS (
       SELECT 1 FROM cards AS new JOIN cards AS old
           ON old.person_id = new.person_id AND old.csn <> new.csn
          AND old.enrolled_at < new.enrolled_at
        WHERE new.csn = stock_moves.csn);

-- Each purge of a person's records: when, and counts only (never who).
CREATE TABLE people_purges (
    id          INTEGER PRIMARY KEY,
    at          TEXT NOT NULL,
    people      INTEGER NOT NULL,
    cards       INTEGER NOT NULL,                   -- cards unlinked
    batches     INTEGER NOT NULL,                   -- batches whose file contents were purged
    actor       TEXT NOT NULL
);
