"""EMSE's door-system exports into folders: TIL and P2S byte for byte, a card set lost
blocked on the next run, nothing rewritten when nothing changed, the dry run writing
nothing, the previous export kept when the destination fails."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from accesskit import NOW, MakeHost
from click.testing import CliRunner

from badged.access import export as access
from badged.cli import main
from badged.enrolment.lifecycle import change_state
from badged.store import access as store
from badged.store.db import open_store

SCHOOL = "Mines Saint-Étienne (ICM)"

TIL = (
    f"s1;Lefèvre;Zoé;1303689068602870;10/09/2026;31/12/2037;1;15/03/2004;{SCHOOL};A\r\n"
    f"s2;Nguyen;Minh;1163503491966583;12/09/2025;31/12/2037;0;02/11/2003;{SCHOOL};A\r\n"
    f"s2;Nguyen;Minh;1182268490413960;06/10/2026;31/12/2037;1;02/11/2003;{SCHOOL};A\r\n"
    f"s3;Durand;Léa;1219798487308544;05/09/2023;31/12/2037;0;20/07/2002;{SCHOOL};A\r\n"
    f"t1;Martin;Paul;1201033488861338;09/01/2024;31/08/2027;1;01/02/2026;{SCHOOL};A\r\n"
    f"t2;Bernard;Anne;1238563485756091;02/03/2020;30/06/2026;0;05/05/1970;{SCHOOL};A\r\n"
).encode("iso-8859-1")

P2S_1 = (
    f"s1;Lefèvre;Zoé;F6E5D4C3B2A104;2026/09/10;2037/12/31;0;15/03/2004;{SCHOOL}\n"
    f"s2;Nguyen;Minh;77665544332204;2025/09/12;2037/12/31;1;02/11/2003;{SCHOOL}\n"
    f"s2;Nguyen;Minh;88776655443304;2026/10/06;2037/12/31;0;02/11/2003;{SCHOOL}\n"
    f"s3;Durand;Léa;00998877665504;2023/09/05;2037/12/31;1;20/07/2002;{SCHOOL}\n"
).encode("iso-8859-1")
P2S_2 = (
    f"t1;Martin;Paul;9A887766554404;2024/01/09;2027/08/31;0;01/02/2026;{SCHOOL}\n"
    f"t2;Bernard;Anne;BBAA9988776604;2020/03/02;2026/06/30;1;05/05/1970;{SCHOOL}\n"
).encode("iso-8859-1")


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def small_p2s(text: str) -> str:
    """EMSE's P2S files hold 500 lines; 4 here, so that six cards take two files."""
    assert "max_lines: 500" in text
    return text.replace("max_lines: 500", "max_lines: 4")


def ms(moment) -> int:
    return int(moment.timestamp() * 1000)


def test_til_and_p2s_byte_for_byte_then_a_card_lost(make_host: MakeHost) -> None:
    host = make_host(edit=small_p2s)
    site = host.load_site()
    conn = open_store(host.state_dir)
    til_dir, p2s_dir = host.state_dir / "access/til", host.state_dir / "access/p2s"

    til = access.run(conn, host, site, "til", NOW)
    p2s = access.run(conn, host, site, "p2s", NOW)
    assert til.ok and til.written and p2s.ok and p2s.written
    assert (til_dir / "cartes-til.csv").read_bytes() == TIL
    assert names(p2s_dir) == [f"{ms(NOW)}_1_cartes.csv", f"{ms(NOW)}_2_cartes.csv"]
    assert (p2s_dir / f"{ms(NOW)}_1_cartes.csv").read_bytes() == P2S_1
    assert (p2s_dir / f"{ms(NOW)}_2_cartes.csv").read_bytes() == P2S_2
    for path in [*til_dir.iterdir(), *p2s_dir.iterdir()]:
        assert path.stat().st_mode & 0o777 == 0o640, path
    assert (til.plan.cards, til.plan.valid, til.plan.blocked) == (6, 3, 3)

    # s1 loses her card: the next run blocks it.
    change_state(conn, "04A1B2C3D4E5F6", "lost", who="desk")
    later = NOW + timedelta(hours=1)
    til = access.run(conn, host, site, "til", later)
    p2s = access.run(conn, host, site, "p2s", later)
    assert [(c.csn, c.what) for c in til.plan.changes] == [("04A1B2C3D4E5F6", "blocked")]
    blocked = TIL.replace(b"31/12/2037;1;15/03/2004", b"31/12/2037;0;15/03/2004")
    assert (til_dir / "cartes-til.csv").read_bytes() == blocked
    assert (til_dir / "cartes-til.csv.1").read_bytes() == TIL  # keep: the previous version
    # P2S gets the update only, in a new numbered file.
    assert (p2s_dir / f"{ms(later)}_1_cartes.csv").read_bytes() == (
        f"s1;Lefèvre;Zoé;F6E5D4C3B2A104;2026/09/10;2037/12/31;1;15/03/2004;{SCHOOL}\n"
        .encode("iso-8859-1"))
    assert len(names(p2s_dir)) == 3


def test_an_unchanged_population_rewrites_nothing(make_host: MakeHost) -> None:
    host = make_host()
    site = host.load_site()
    conn = open_store(host.state_dir)
    access.run(conn, host, site, "til", NOW)
    access.run(conn, host, site, "p2s", NOW)
    til_file = host.state_dir / "access/til/cartes-til.csv"
    before = til_file.stat()
    p2s_before = names(host.state_dir / "access/p2s")

    later = NOW + timedelta(hours=2)
    til = access.run(conn, host, site, "til", later)
    p2s = access.run(conn, host, site, "p2s", later)
    assert til.ok and not til.written and til.plan.unchanged
    assert p2s.ok and not p2s.written and p2s.plan.unchanged
    after = til_file.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not (til_file.parent / "cartes-til.csv.1").exists()
    assert names(host.state_dir / "access/p2s") == p2s_before
    # Still a success: the freshness alert must not fire on a quiet population.
    assert store.state(conn, "til").last_success_at == later.timestamp()

    # A file deleted by hand is written again, even with the same content.
    til_file.unlink()
    assert access.run(conn, host, site, "til", later).written
    assert til_file.exists()


def test_keep_the_last_n_versions(make_host: MakeHost) -> None:
    host = make_host(edit=lambda t: t.replace("{path: access/til, keep: 7}",
                                              "{path: access/til, keep: 2}"))
    site = host.load_site()
    conn = open_store(host.state_dir)
    folder = host.state_dir / "access/til"
    contents = []
    for i, csn in enumerate(["04A1B2C3D4E5F6", "04334455667788", "0444556677889A"]):
        access.run(conn, host, site, "til", NOW + timedelta(hours=i))
        contents.append((folder / "cartes-til.csv").read_bytes())
        change_state(conn, csn, "lost", who="desk")
    access.run(conn, host, site, "til", NOW + timedelta(hours=4))
    assert names(folder) == ["cartes-til.csv", "cartes-til.csv.1"]
    assert (folder / "cartes-til.csv.1").read_bytes() == contents[2]


def cli(host, *args: str):
    return CliRunner().invoke(main, ["--host-config", str(host.file), *args])


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith("badged.sqlite3")}


def table(host, name: str) -> list[tuple]:
    with sqlite3.connect(host.state_dir / "badged.sqlite3") as db:
        return db.execute(f"SELECT * FROM {name} ORDER BY 1, 2").fetchall()


def test_the_dry_run_says_what_would_change_and_changes_nothing(make_host: MakeHost) -> None:
    host = make_host()
    site = host.load_site()
    conn = open_store(host.state_dir)
    access.run(conn, host, site, "til", NOW)
    change_state(conn, "04A1B2C3D4E5F6", "lost", who="desk")
    with conn:  # t1's card is no longer held by anyone: it leaves the files
        conn.execute("UPDATE cards SET person_id = NULL WHERE csn = '0444556677889A'")
    files, exports, cards = (snapshot(host.state_dir), table(host, "access_exports"),
                             table(host, "access_export_cards"))

    result = cli(host, "access", "export", "til", "--dry-run")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "til (til) → directory " in out and "5 card(s), 1 valid, 4 blocked" in out
    assert "since the last export: 1 blocked, 1 removed" in out
    assert "    blocked 04A1B2C3D4E5F6 of s1 (lost)" in out
    assert "    removed 0444556677889A of t1" in out
    assert "  would write cartes-til.csv (" in out
    assert snapshot(host.state_dir) == files
    assert table(host, "access_exports") == exports
    assert table(host, "access_export_cards") == cards

    as_json = json.loads(cli(host, "access", "export", "--dry-run", "--json").stdout)
    assert [p["export"] for p in as_json] == ["til", "p2s"]
    assert as_json[1]["changes"]["added"]  # p2s never ran: every valid card is new
    assert snapshot(host.state_dir) == files


def test_cli_export_without_daemon(make_host: MakeHost) -> None:
    host = make_host()
    result = cli(host, "access", "export", "til")
    assert result.exit_code == 0, result.output
    assert "badged is not running: exporting from here" in result.stderr
    assert "  wrote cartes-til.csv (" in result.stdout
    again = cli(host, "access", "export", "til")
    assert "identical to the previous export: nothing rewritten" in again.stdout
    unknown = cli(host, "access", "export", "doors")
    assert unknown.exit_code == 1
    assert unknown.stderr.strip() == ("error: school emse has no access export 'doors' "
                                      "(known: p2s, til)")


def test_a_failing_folder_keeps_the_previous_export_and_backs_off(make_host: MakeHost,
                                                                  tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    host = make_host(edit=lambda t: t.replace("{path: access/til, keep: 7}",
                                              f"{{path: {share}, keep: 3}}"))
    site = host.load_site()
    conn = open_store(host.state_dir)
    assert access.run(conn, host, site, "til", NOW).written
    good = (share / "cartes-til.csv").read_bytes()

    change_state(conn, "04A1B2C3D4E5F6", "lost", who="desk")
    share.chmod(0o500)  # the share went read-only (root ignores modes: also unmount it)
    moved = tmp_path / "share-away"
    share.rename(moved)
    try:
        first = access.run(conn, host, site, "til", NOW)
        assert not first.ok and "no such folder" in (first.error or "")
        assert (first.failures, first.retry_at) == (1, NOW.timestamp() + 60)
        second = access.run(conn, host, site, "til", NOW + timedelta(minutes=1))
        assert (second.failures, second.retry_at) == (2, NOW.timestamp() + 60 + 120)
        result = cli(host, "access", "export", "til")
        assert result.exit_code == 1
        assert "the previous export stays in place" in result.stderr
    finally:
        moved.rename(share)
        share.chmod(0o750)
    assert (share / "cartes-til.csv").read_bytes() == good  # untouched meanwhile
    state = store.state(conn, "til")
    assert state.failures == 3 and "no such folder" in state.last_error
    third = access.run(conn, host, site, "til", NOW + timedelta(minutes=5))
    assert third.ok and third.written
    assert store.state(conn, "til").failures == 0
    assert b"31/12/2037;0;15/03/2004" in (share / "cartes-til.csv").read_bytes()


@pytest.mark.parametrize("failures, wait", [(1, 60), (2, 120), (3, 240), (6, 1800),
                                            (40, 1800)])
def test_backoff(failures: int, wait: float) -> None:
    assert access.backoff_seconds(failures) == wait


def test_p2s_sends_every_card_again_to_a_new_destination(make_host: MakeHost) -> None:
    host = make_host()
    conn = open_store(host.state_dir)
    assert access.run(conn, host, host.load_site(), "p2s", NOW).plan.cards == 6
    moved = host.file.parent / "config/schools/emse.yaml"
    moved.write_text(moved.read_text().replace("{path: access/p2s, keep: 100}",
                                               "{path: access/p2s-new, keep: 100}"))
    result = access.run(conn, host, host.load_site(), "p2s", NOW + timedelta(hours=1))
    assert result.written and result.plan.changes == []
    [file] = (host.state_dir / "access/p2s-new").iterdir()
    assert file.read_bytes().count(b"\n") == 6
    again = access.run(conn, host, host.load_site(), "p2s", NOW + timedelta(hours=2))
    assert again.ok and not again.written
