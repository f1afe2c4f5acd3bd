"""`badged exchange run KIND` killed at every step, delivering to the demo's maildir, then
to a real SMTP server on loopback.

The site's outbox holds, before the run, a batch an earlier run could not deliver (its
relay was down): the run writes its own batch (one transaction with the people it tells
about) and delivers both. Whatever step the kill hits, and once the command ran again:

- each person's line is in exactly one batch (no lost line, no batch written twice);
- the maildir holds each batch's mail once, whole (a reader never sees half a mail in
  `new/`), and no unfinished copy stays in its `tmp/`;
- each batch's archive is the bytes sent, and no unfinished archive copy stays;
- the store and the files are those of an uninterrupted run (the random Message-ID token
  and the MIME boundary made of it aside).
"""

from __future__ import annotations

import email
import json
import re
import shutil
import sqlite3
from collections import Counter
from collections.abc import Iterator
from email import policy
from pathlib import Path

import pytest
from crashkit import (
    REPO,
    Zygote,
    db,
    explore,
    files,
    make_site,
    query,
    sample,
    settle,
    store_dump,
)

KIND = "personnels"
VOLATILE = {"batches": {"message_id", "sent_message"}}
STAFF = REPO / "demo" / "registry" / "staff.csv"
STUDENTS = REPO / "demo" / "registry" / "students.csv"


def normalise(data: bytes) -> bytes:
    """A mail without what is random in it: the Message-ID token, the boundary made of it."""
    data = re.sub(rb"\.[0-9a-f]{16}@", b".TOKEN@", data)
    return re.sub(rb"=_badged_[0-9a-f]{32}", b"=_badged_BOUNDARY", data)


def maildir_mails(site: Path) -> Counter[bytes]:
    box = site / "state" / "maildir"
    return Counter(normalise(data) for name, data in files(box).items()
                   if name.startswith(("new/", "cur/")))


def archives(site: Path) -> dict[str, bytes]:
    return {name: normalise(data) for name, data in files(site / "state" / "archive").items()}


def lines_once(site: Path) -> None:
    """Each person's line of a kind is in one batch at most."""
    twice = query(site, "SELECT kind, person_id, count(*) FROM exchange_items "
                        "GROUP BY kind, person_id HAVING count(*) > 1")
    assert not twice, f"lines in two batches: {twice}"


def prepared(folder: Path, zygote: Zygote, *, relay_down: str) -> Path:
    """The demo school's people, and a réinscriptions batch pending (its relay was down:
    `relay_down`, a host file's `smtp:` block to a closed port); the clock then moves past
    its backoff."""
    site = make_site(folder)
    for source, path in (("students", STUDENTS), ("staff", STAFF)):
        done = zygote.run(site, ["population", "import", str(path), "--source", source])
        assert done.rc == 0, done.describe()
    host = (site / "badged.yaml").read_text()
    (site / "badged.yaml").write_text(host + relay_down)
    down = zygote.run(site, ["exchange", "run", "reinscriptions"])
    assert query(site, "SELECT state FROM batches") == [("pending",)], down.describe()
    (site / "badged.yaml").write_text(host)
    clock = site / "clock"
    clock.write_text(f"{float(clock.read_text()) + 600:.3f}\n")
    settle(site)
    return site


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def maildir_template(zygote: Zygote, tmp_path_factory: pytest.TempPathFactory) -> Path:
    down = f"smtp: {{host: 127.0.0.1, port: {closed_port()}, starttls: false}}\n"
    return prepared(tmp_path_factory.mktemp("maildir") / "site", zygote, relay_down=down)


def test_exchange_to_maildir_every_step(zygote: Zygote, maildir_template: Path,
                                        tmp_path: Path) -> None:
    """Each batch in the maildir once after any kill and a re-run: delivery to a maildir
    is idempotent (the mail's file name is made of its Message-ID), so a kill between
    "delivered" and "marked sent" does not deliver it twice."""

    def snapshot(site: Path) -> dict[str, object]:
        return {"store": store_dump(site, volatile=VOLATILE), "maildir": maildir_mails(site),
                "archives": archives(site),
                "maildir tmp": files(site / "state" / "maildir" / "tmp")}

    def after_kill(site: Path) -> None:
        lines_once(site)
        whole = set(maildir_mails(reference))
        assert set(maildir_mails(site)) <= whole, "a mail in the maildir is not whole"
        for name, data in archives(site).items():
            assert Path(name).name.startswith(".") or data in whole, f"archive {name} half"

    reference = tmp_path / "work" / "reference"
    run = explore(zygote, maildir_template, tmp_path / "work", ["exchange", "run", KIND],
                  snapshot=snapshot, after_kill=after_kill)
    assert sum(maildir_mails(reference).values()) == 2
    assert len(run.tried) == len(run.steps)


@pytest.fixture(scope="module")
def smtp_site(zygote: Zygote, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[Path, object]]:
    """The prepared site, its host file pointing at a real SMTP server (STARTTLS, AUTH)."""
    import sys
    sys.path.insert(0, str(REPO / "tests" / "crous"))
    from smtpkit import Recorder, SmtpServer, make_pki

    folder = tmp_path_factory.mktemp("smtp")
    pki = make_pki(folder / "pki")
    recorder = Recorder(users={"badged": "crash-test"})
    server = SmtpServer(pki, recorder).start()
    down = f"smtp: {{host: 127.0.0.1, port: {closed_port()}, starttls: false}}\n"
    site = prepared(folder / "site", zygote, relay_down=down)
    shutil.copy(pki.ca_file, site / "ca.pem")
    password = site / "smtp-password"
    password.write_text("crash-test\n")
    password.chmod(0o600)
    host = (site / "badged.yaml").read_text()
    (site / "badged.yaml").write_text(
        host + f"smtp:\n  host: 127.0.0.1\n  port: {server.port}\n  starttls: true\n"
        f"  ca_file: ca.pem\n  username: badged\n  password: {{file: smtp-password}}\n")
    yield site, recorder
    server.stop()


def accepted_unmarked(steps: list[str]) -> set[int]:
    """The steps K whose kill falls after the relay accepted a mail (its content was sent,
    the reply read) and before the store marked it sent: the window of a second copy."""
    window, inside = set(), False
    for k, what in enumerate(steps, 1):
        if inside:
            window.add(k)
            if what.startswith("sql UPDATE batches SET state = 'sent'"):
                inside = False
        elif what.startswith("smtplib.send") and what.split(" ", 2)[1] not in SMTP_VERBS:
            inside = True  # the message's content (its first line): accepted once replied
    return window


SMTP_VERBS = {"ehlo", "helo", "STARTTLS", "AUTH", "mail", "rcpt", "data", "quit", "rset",
              "noop"}


def smtp_steps(steps: list[str]) -> list[int]:
    """Every step but the SMTP dialogue before the content (connect, EHLO, STARTTLS, AUTH,
    MAIL, RCPT, DATA: a kill at any of them is a mail not accepted yet, like a kill at the
    first), of which one in three is tried. The maildir test kills at every step of the
    same run."""
    return sample(steps, every=3, keep=lambda what: not what.startswith(
        ("socket.connect", "smtplib.send ehlo", "smtplib.send STARTTLS", "smtplib.send AUTH",
         "smtplib.send mail", "smtplib.send rcpt", "smtplib.send data")))


def test_exchange_over_smtp_every_step(zygote: Zygote, smtp_site: tuple[Path, object],
                                       tmp_path: Path) -> None:
    """Over SMTP, delivery is at least once: a kill after the relay accepted a mail and
    before the store marked it sent makes the re-run send it again, with the same
    Message-ID and the same bytes (the CROUS's mail system sees the same message twice).
    Killed anywhere else, each batch reaches the relay exactly once. Every other part of
    the site ends as an uninterrupted run's. Steps: `smtp_steps`."""
    template, recorder = smtp_site
    received = recorder.received  # type: ignore[attr-defined]
    work = tmp_path / "work"

    def by_id() -> Counter[str]:
        ids: Counter[str] = Counter()
        copies: dict[str, bytes] = {}
        for r in received:
            msg = email.message_from_bytes(r.content, policy=policy.default)
            message_id = str(msg["Message-ID"]).strip()
            ids[message_id] += 1
            first = copies.setdefault(message_id, r.content)
            assert first == r.content, f"{message_id} sent again as another message"
        return ids

    twice: list[int] = []

    def snapshot(site: Path) -> dict[str, object]:
        shot = {"store": store_dump(site, volatile=VOLATILE), "archives": archives(site)}
        batches = {r[0] for r in query(site, "SELECT message_id FROM batches")}
        ids = by_id()
        received.clear()
        assert set(ids) == batches, f"mails {sorted(ids)} for batches {sorted(batches)}"
        if site.name == "reference":
            assert set(ids.values()) == {1}, ids
            return shot
        k = int(site.name[1:])
        window = accepted_unmarked(json.loads((work / "steps.json").read_text()))
        expected = 2 if k in window else 1
        sent_twice = [m for m, n in ids.items() if n == 2]
        assert sorted(ids.values()) == sorted([1] * (len(ids) - 1) + [expected]), \
            f"copies per batch {dict(ids)}, killed {'inside' if expected == 2 else 'outside'} "\
            "the window between accepted and marked sent"
        twice.extend(k for _ in sent_twice)
        return shot

    received.clear()
    run = explore(zygote, template, work, ["exchange", "run", KIND], snapshot=snapshot,
                  after_kill=lines_once, select=smtp_steps)
    window = accepted_unmarked(run.steps)
    assert len(window) == 4 and window <= set(run.tried), (window, run.tried)
    assert sorted(twice) == sorted(window)


def test_person_purge_every_step(zygote: Zygote, maildir_template: Path,
                                 tmp_path: Path) -> None:
    """`badged person purge` (GDPR retention) killed at every step: the leavers' records,
    their batches' file contents and their archived mails go in one run. The archives are
    deleted before the store's transaction commits: a kill in between leaves the store
    as before (the re-run erases it) but never a purged person's mail on disk; after the
    purge ran again, the store and the archive folder are an uninterrupted purge's.

    Steps: every one but the erasing statements inside the transaction (a few dozen per
    leaver, each a kill that rolls back the same way), of which one in twelve is tried."""
    site = tmp_path / "site"
    shutil.copytree(maildir_template, site)
    clock = site / "clock"

    def later(days: int) -> None:
        clock.write_text(f"{float(clock.read_text()) + days * 86400:.3f}\n")

    done = zygote.run(site, ["exchange", "run", "personnels"])
    assert done.rc == 0, done.describe()
    staff = STAFF.read_bytes().splitlines(keepends=True)
    (site / "staff.csv").write_bytes(b"".join(li for li in staff if not li.startswith(b"D0001")))
    done = zygote.run(site, ["population", "import", "staff.csv", "--source", "staff"])
    assert done.rc == 0, done.describe()
    later(20)  # past the source's leaving grace days: D0001 has left
    done = zygote.run(site, ["exchange", "run", "departs"])
    assert done.rc == 0, done.describe()
    later(500)  # past retention_days
    settle(site)
    leavers = query(site, "SELECT DISTINCT person_id FROM exchange_items WHERE kind = 'departs'")
    assert leavers, "no départ to purge"
    before_archives = archives(site)

    def snapshot(s: Path) -> dict[str, object]:
        return {"store": store_dump(s, volatile=VOLATILE, aliases=[site],
                                    tokens=[r"purged:[0-9a-f]{16}"]),
                "archives": archives(s)}

    def after_kill(s: Path) -> None:
        left = query(s, "SELECT count(*) FROM people WHERE id IN "
                        f"({', '.join('?' * len(leavers))})", [p for (p,) in leavers])
        if left == [(0,)]:  # purged: their archives are gone too
            assert set(archives(s)) < set(before_archives)

    def moved(s: Path) -> None:
        """The store names its archives by absolute path: point the copy's at its own."""
        with sqlite3.connect(db(s)) as conn:
            conn.execute("UPDATE batches SET archive_path = replace(archive_path, ?, ?)",
                         (str(site), str(s)))
        conn.close()

    run = explore(zygote, site, tmp_path / "work", ["person", "purge"],
                  snapshot=snapshot, after_kill=after_kill, before=moved,
                  select=lambda steps: sample(steps, every=12, keep=lambda what: not what.
                                              startswith(("sql UPDATE", "sql DELETE"))))
    assert {"sql BEGIN IMMEDIATE", "sql COMMIT"} <= {run.steps[k - 1] for k in run.tried}
    assert query(tmp_path / "work" / "reference", "SELECT count(*) FROM people_purges") \
        == [(1,)]
