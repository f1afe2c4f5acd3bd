-- Schema 9: CROUS card links stored for a fast bulk import (docs/crous.md).
-- The provenance of an import (when, which file) is stored once in crous_card_imports, not
-- on each of its rows; the links are keyed by their CSN alone (WITHOUT ROWID: the table is
-- the CSN index, one B-tree less to write). `crous_cards` stays, as a view with the columns
-- it always had, writable through its triggers.

CREATE TABLE crous_card_imports (
    id             INTEGER PRIMARY KEY,
    imported_at    TEXT NOT NULL,
    source_file    TEXT NOT NULL,
    UNIQUE (imported_at, source_file)
);

CREATE TABLE crous_card_links (
    csn            TEXT PRIMARY KEY,                -- NUM_PROTOCOLAIRE, upper-case hex
    rid            TEXT NOT NULL,                   -- NUM_APPLICATIF
    num_carte      INTEGER NOT NULL,                -- idZdc (unique: index below)
    pix_ss         TEXT NOT NULL,
    pix_nn         TEXT NOT NULL,
    appl           TEXT NOT NULL,
    nfo            TEXT NOT NULL,
    cnous          TEXT NOT NULL,
    crous          TEXT NOT NULL,
    emetteur       INTEGER NOT NULL,                -- idTransmitter (hex in the file)
    mapping        INTEGER NOT NULL,                -- idMapping
    date_creation  TEXT NOT NULL,                   -- ISO date
    import_id      INTEGER NOT NULL REFERENCES crous_card_imports (id)
) WITHOUT ROWID;
-- Named, not a column constraint: a first import into the empty table builds it once at the
-- end (sorted, bottom-up) instead of inserting 100 000 keys at random places.
CREATE UNIQUE INDEX crous_card_links_num_carte ON crous_card_links (num_carte);

INSERT INTO crous_card_imports (imported_at, source_file)
    SELECT DISTINCT imported_at, source_file FROM crous_cards ORDER BY imported_at;
INSERT INTO crous_card_links
    SELECT c.csn, c.rid, c.num_carte, c.pix_ss, c.pix_nn, c.appl, c.nfo, c.cnous, c.crous,
           c.emetteur, c.mapping, c.date_creation, i.id
      FROM crous_cards AS c JOIN crous_card_imports AS i
           ON i.imported_at = c.imported_at AND i.source_file = c.source_file
     ORDER BY c.csn;
DROP TABLE crous_cards;

CREATE VIEW crous_cards AS
    SELECT l.csn, l.rid, l.num_carte, l.pix_ss, l.pix_nn, l.appl, l.nfo, l.cnous, l.crous,
           l.emetteur, l.mapping, l.date_creation, i.imported_at, i.source_file
      FROM crous_card_links AS l JOIN crous_card_imports AS i ON i.id = l.import_id;

CREATE TRIGGER crous_cards_insert INSTEAD OF INSERT ON crous_cards BEGIN
    INSERT OR IGNORE INTO crous_card_imports (imported_at, source_file)
        VALUES (NEW.imported_at, NEW.source_file);
    INSERT INTO crous_card_links (csn, rid, num_carte, pix_ss, pix_nn, appl, nfo, cnous, crous,
                                  emetteur, mapping, date_creation, import_id)
        VALUES (NEW.csn, NEW.rid, NEW.num_carte, NEW.pix_ss, NEW.pix_nn, NEW.appl, NEW.nfo,
                NEW.cnous, NEW.crous, NEW.emetteur, NEW.mapping, NEW.date_creation,
                (SELECT id FROM crous_card_imports
                  WHERE imported_at = NEW.imported_at AND source_file = NEW.source_file));
END;

CREATE TRIGGER crous_cards_update INSTEAD OF UPDATE ON crous_cards BEGIN
    INSERT OR IGNORE INTO crous_card_imports (imported_at, source_file)
        VALUES (NEW.imported_at, NEW.source_file);
    UPDATE crous_card_links
       SET csn = NEW.csn, rid = NEW.rid, num_carte = NEW.num_carte, pix_ss = NEW.pix_ss,
           pix_nn = NEW.pix_nn, appl = NEW.appl, nfo = NEW.nfo, cnous = NEW.cnous,
           crous = NEW.crous, emetteur = NEW.emetteur, mapping = NEW.mapping,
           date_creation = NEW.date_creation,
           import_id = (SELECT id FROM crous_card_imports
                         WHERE imported_at = NEW.imported_at AND source_file = NEW.source_file)
     WHERE csn = OLD.csn;
END;

CREATE TRIGGER crous_cards_delete INSTEAD OF DELETE ON crous_cards BEGIN
    DELETE FROM crous_card_links WHERE csn = OLD.csn;
END;
