"""`badged enrol`: link a card to a person (a tap at the desk, or a batch file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..daemon.control import ControlClient, DaemonUnreachable, RequestError, socket_path
from ..enrolment.desk import EnrolmentError
from ..enrolment.enrol_here import enrol_batch, enrol_next_tap
from ..enrolment.lifecycle import actor
from . import (
    Context,
    bypass_only_if_down,
    fail,
    finish_import,
    main,
    open_report,
    pass_ctx,
    report_option,
    user_errors,
)


@main.command("enrol")
@click.option("--person", "person_id", metavar="ID", help="Who gets the next card tapped.")
@click.option("--reader", metavar="R", help="Enrolment reader name or glob.")
@click.option("--timeout", type=float, default=60.0, show_default=True, metavar="S",
              help="Seconds to wait for the tap.")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE", help="Batch: lines 'person_id;csn' (no tap).")
@click.option("--strict", is_flag=True, help="With --csv: link nothing if any line is bad.")
@click.option("--json", "as_json", is_flag=True)
@report_option
@pass_ctx
@user_errors
def enrol_command(ctx: Context, person_id: str | None, reader: str | None, timeout: float,
                  csv_file: Path | None, strict: bool, as_json: bool,
                  report_path: Path | None) -> None:
    """Link the next card tapped on an enrolment reader to a person, through the daemon
    (or reading the reader directly when no daemon runs); or link a batch with --csv.

    \b
    Examples:
      badged enrol --person 22500101
      badged enrol --person D0042 --reader 'ACS ACR1252 * PICC 0' --timeout 120
      badged enrol --csv links.csv          # lines 'person_id;csn'
    """
    if (person_id is None) == (csv_file is None):
        raise click.UsageError("give either --person ID or --csv FILE")
    if csv_file is not None:
        _batch(ctx, csv_file, strict, report_path)
        return
    assert person_id is not None
    try:
        answer = ControlClient(socket_path(ctx.host.runtime_dir)).request(
            "enrol", person=person_id, reader=reader, wait_seconds=timeout, actor=actor(),
            timeout=timeout + 15)
        done = answer["enrolled"]
    except DaemonUnreachable as exc:
        bypass_only_if_down(ctx, exc, "not reading the reader from here: the daemon owns "
                            "it; try again, or check `badged status`")
        click.echo("badged is not running: reading the enrolment reader directly", err=True)
        done = _one_shot(ctx, person_id, reader, timeout)
    except RequestError as exc:
        fail(f"refused: {exc.error}")
    click.echo(json.dumps(done, indent=2) if as_json else _text(done))


def _one_shot(ctx: Context, person_id: str, reader: str | None, timeout: float) -> dict:
    try:
        done = enrol_next_tap(ctx.host, ctx.host.load_site(), person_id, reader, timeout)
    except EnrolmentError as exc:
        fail(f"refused: {exc}")
    return done.to_json()


def _text(done: dict[str, Any]) -> str:
    number = done["crous_number"]
    source = {"card": "from the card", "csv": "from the CROUS CSV",
              "card+csv": "from the card, matching the CROUS CSV",
              "none": "unknown to the CROUS"}[done["crous_number_from"]]
    lines = [f"card {done['csn']} linked to {done['person_id']}: CROUS number "
             f"{number if number is not None else '-'} ({source})"]
    lines += [f"older card {csn} disabled (expired)" for csn in done["disabled"]]
    lines += [f"warning: {w}" for w in done["warnings"]]
    lines.append(f"card stock: {done['stock_left']}")
    return "\n".join(lines)


def _batch(ctx: Context, path: Path, strict: bool, report_path: Path | None) -> None:
    site = ctx.host.load_site()
    report_file = open_report(report_path)
    try:
        report = enrol_batch(ctx.host, site, path, strict=strict)
    except BaseException:
        if report_file is not None:
            report_file.discard()
        raise
    finish_import(report, report_file)
