-- Schema 5: the outbox's delivery bookkeeping (badged.store.outbox, badged.crous.mail).

-- The school a batch belongs to (its Message-ID names it), the last delivery attempt,
-- and when a sent batch's archive and file contents were purged (rows and items stay).
ALTER TABLE batches ADD COLUMN school_id TEXT;
ALTER TABLE batches ADD COLUMN last_attempt_at TEXT;
ALTER TABLE batches ADD COLUMN purged_at TEXT;

-- Each file's MIME charset, its size (kept after the content is purged), and its place in
-- the mail (attachments keep the order they were given in).
ALTER TABLE batch_files ADD COLUMN charset TEXT;
ALTER TABLE batch_files ADD COLUMN size INTEGER;
ALTER TABLE batch_files ADD COLUMN position INTEGER NOT NULL DEFAULT 0;
