-- Schema 7: one deliverer at a time, the exact bytes sent, and partial deliveries.

-- A lease per exclusive activity (e.g. "outbox"): who holds it and until when (Unix time).
-- A holder renews it while it works; a crashed holder's lease expires on its own.
CREATE TABLE leases (
    name         TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    what         TEXT NOT NULL,
    acquired_at  REAL NOT NULL,
    expires_at   REAL NOT NULL
);

-- The message exactly as it was handed to the relay, kept from "marked sent" until its
-- archive is written (then NULL): the archive holds the bytes that were sent.
ALTER TABLE batches ADD COLUMN sent_message BLOB;

-- Recipients that already accepted a batch whose other recipients were refused (JSON
-- list): the next attempt goes to the others only.
ALTER TABLE batches ADD COLUMN delivered_to TEXT;
