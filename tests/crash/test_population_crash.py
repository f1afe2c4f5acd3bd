"""`badged population import` killed at every step: one transaction, so after a kill the
people are exactly as before the import, and the import run again ends as if never
interrupted. With `--report FILE` (a bad row in the export), the report is the previous one
or the new one, never half of one, and no unfinished copy of it stays once the import ran
again."""

from __future__ import annotations

from pathlib import Path

from crashkit import Zygote, explore, files, make_site, settle, store_dump

STUDENTS = ("NUM_ETU;INE;NOM;PRENOM;DATE_NAISSANCE;FORMATION;MAIL;ANNEE;"
            "ANNEE_PREMIERE_INSCRIPTION\n")
BEFORE = STUDENTS + (
    "22500101;1234567890A;Exemple;Élodie;14/03/2006;CI;elodie@example.org;2026;2026\n"
    "22500102;2345678901B;Démo;Noël;02/11/2005;CI;noel@example.org;2026;2026\n"
    "22400103;3456789012C;Fictif;Zoé;29/02/2004;CI;zoe@example.org;2026;2025\n")
# 101 unchanged, 102 updated (mail), 103 absent (leaving), 104 new, line 5 bad (date)
AFTER = STUDENTS + (
    "22500101;1234567890A;Exemple;Élodie;14/03/2006;CI;elodie@example.org;2026;2026\n"
    "22500102;2345678901B;Démo;Noël;02/11/2005;CI;noel.demo@example.org;2026;2026\n"
    "22300104;4567890123D;Modèle;Lucas;17/07/2003;Master;lucas@example.org;2026;2024\n"
    "22300105;5678901234E;Faux;Jour;31/02/2003;Master;jour@example.org;2026;2024\n")


def test_population_import_every_step(zygote: Zygote, tmp_path: Path) -> None:
    """Right after a kill: the people table is the one before the import or the one after
    (nothing half-imported), the report is absent or whole; after the import ran again:
    the store and the site's files are those of an uninterrupted import."""
    template = make_site(tmp_path / "template")
    (template / "before.csv").write_text(BEFORE, encoding="utf-8")
    (template / "students.csv").write_text(AFTER, encoding="utf-8")
    first = zygote.run(template, ["population", "import", "before.csv", "--source",
                                  "students"])
    assert first.rc == 0, first.describe()
    settle(template)
    argv = ["population", "import", "students.csv", "--source", "students",
            "--report", "rejected.txt"]

    def people(site: Path) -> list[tuple]:
        return store_dump(site)["people"]

    before = people(template)
    reference: dict[str, list[tuple]] = {}

    def snapshot(site: Path) -> dict[str, object]:
        site_files = {name: data for name, data in files(site).items()
                      if not name.startswith(("state/", "run/"))}
        return {**store_dump(site), **site_files}

    def after_kill(site: Path) -> None:
        now = people(site)
        if "after" not in reference:       # the reference run: what "after" is
            reference["after"] = now
        assert now in (before, reference["after"]), "people half imported"
        report = site / "rejected.txt"
        if report.exists():
            assert report.read_text().endswith("\n") and "31/02/2003" in report.read_text()

    run = explore(zygote, template, tmp_path / "work", argv, ok=(3,), snapshot=snapshot,
                  after_kill=after_kill)
    assert len(run.tried) == len(run.steps) >= 5


HEADER = ("PIX.SS;PIX.NN;AAPL;NUM_PROTOCOLAIRE;NUM_APPLICATIF;NFO;CNOUS;CROUS;EMETTEUR;"
          "MAPPING;NUM_CARTE;DATE_CREATION\n")


def card_row(csn: str, number: int) -> str:
    return f"03;0000;D1;{csn};{csn};0;0;0691;41;1;{number};01/09/2026\n"


def test_crous_import_cards_every_step(zygote: Zygote, tmp_path: Path) -> None:
    """`badged crous import-cards` (a second CROUS CSV over a first one: known links kept,
    new ones added, a contradicting row rejected into the report): right after a kill the
    links are those before or those after, never some of the file's; after the import ran
    again, the store and the files are an uninterrupted import's."""
    template = make_site(tmp_path / "template")
    (template / "first.csv").write_text(
        HEADER + card_row("04112233445566", 249760531028417)
        + card_row("04223344556677", 249760531028418))
    (template / "second.csv").write_text(
        HEADER + card_row("04112233445566", 249760531028417)       # known: unchanged
        + card_row("04223344556677", 249760531099999)             # contradicts: rejected
        + card_row("04334455667788", 249760531028419)             # new
        + card_row("04445566778899", 249760531028420))            # new
    first = zygote.run(template, ["crous", "import-cards", "first.csv"])
    assert first.rc == 0, first.describe()
    settle(template)
    before = store_dump(template, aliases=[template])
    seen: list[dict[str, list[tuple]]] = []

    def snapshot(site: Path) -> dict[str, object]:
        site_files = {name: data for name, data in files(site).items()
                      if not name.startswith(("state/", "run/"))}
        return {**store_dump(site, aliases=[template]), **site_files}

    def after_kill(site: Path) -> None:
        now = store_dump(site, aliases=[template])
        if not seen:
            seen.append(now)                 # the reference: what "after" is
        assert now in (before, seen[0]), "CROUS cards half imported"

    run = explore(zygote, template, tmp_path / "work",
                  ["crous", "import-cards", "second.csv", "--report", "rejected.txt"],
                  ok=(3,), snapshot=snapshot, after_kill=after_kill)
    assert len(run.tried) == len(run.steps) >= 5


def test_first_import_creates_the_store_every_step(zygote: Zygote, tmp_path: Path) -> None:
    """The first command of a host creates the store (its file, mode 0600, WAL, each
    numbered migration in its own transaction) and then imports: killed anywhere, the
    next run finds a store it can open and migrate, and ends as an uninterrupted first
    import. Steps: every one but the statements inside a migration (a kill there rolls
    the migration back like a kill at its BEGIN), of which one in eight is tried."""
    template = make_site(tmp_path / "template")
    (template / "students.csv").write_text(BEFORE, encoding="utf-8")
    argv = ["population", "import", "students.csv", "--source", "students"]

    def snapshot(site: Path) -> dict[str, object]:
        from crashkit import db, query

        assert (db(site).stat().st_mode & 0o777) == 0o600
        return {**store_dump(site), "version": query(site, "PRAGMA user_version")}

    def migrations_sampled(steps: list[str]) -> list[int]:
        keep, inside = [], False
        for k, what in enumerate(steps, 1):
            inside = (inside or what.startswith("sql BEGIN;")) and \
                not what.startswith("sql COMMIT;")
            if not inside or what.startswith("sql BEGIN;") or k % 8 == 0:
                keep.append(k)
        return keep

    run = explore(zygote, template, tmp_path / "work", argv, snapshot=snapshot,
                  select=migrations_sampled)
    assert sum(what.startswith("sql BEGIN;") for what in run.steps) >= 5
