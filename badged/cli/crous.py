"""`badged crous …`: exchanges with the CROUS (the card CSV import, for now)."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import click

from ..crous.cards_csv import CardsFileError, import_cards
from ..store.db import open_store
from . import (
    Context,
    fail,
    finish_import,
    main,
    open_report,
    pass_ctx,
    progress_printer,
    report_option,
    user_errors,
)


@main.group()
def crous() -> None:
    """Exchanges with the CROUS: card CSV import."""


@crous.command("import-cards")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--inverse-csn", is_flag=True,
              help="The batch has its CSNs byte-reversed: reverse NUM_PROTOCOLAIRE and "
                   "NUM_APPLICATIF.")
@click.option("--strict", is_flag=True, help="Import nothing if any row is bad (exit 1).")
@click.option("--progress", is_flag=True,
              help="Progress on stderr every 10 000 rows (default: when stderr is a terminal).")
@report_option
@pass_ctx
@user_errors
def import_cards_command(ctx: Context, file: Path, inverse_csn: bool, strict: bool,
                         progress: bool, report_path: Path | None) -> None:
    """Import a CROUS card CSV (CSN ↔ CROUS card number) into this host's store.

    Good rows are imported in one transaction; bad rows are reported on stderr as
    FILE:LINE: reason (the first 20, no card number or CSN: those go to --report FILE),
    then counted by reason, and the summary goes to stdout. A row contradicting a known link is
    rejected, never overwritten; importing the same file again changes nothing. Exit 0 when
    every row is in, 3 when some were rejected, 1 when nothing was imported (a whole-file
    problem, or --strict with any bad row).
    """
    report_file = open_report(report_path)
    with closing(open_store(ctx.host.state_dir)) as conn:
        try:
            report = import_cards(conn, file, inverse_csn=inverse_csn, strict=strict,
                                  progress=progress_printer(file, progress))
        except CardsFileError as exc:
            if report_file is not None:
                report_file.discard()
            fail(str(exc))
    finish_import(report, report_file)
