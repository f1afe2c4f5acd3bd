"""`badged population …`: the school's registry exports (students, staff) → people."""

from __future__ import annotations

from pathlib import Path

import click

from .. import clock
from ..crous.operations import import_registry
from ..crous.population import PopulationError, find_source
from ..crous.textfile import TextFileError
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
def population() -> None:
    """Registry exports: who the school's students and staff are."""


@population.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--source", "source_name", required=True, metavar="NAME",
              help="The export's population source in the school's file (e.g. students).")
@click.option("--strict", is_flag=True, help="Import nothing if any row is bad (exit 1).")
@click.option("--progress", is_flag=True,
              help="Progress on stderr every 10 000 rows (default: when stderr is a terminal).")
@report_option
@pass_ctx
@user_errors
def import_command(ctx: Context, file: Path, source_name: str, strict: bool,
                   progress: bool, report_path: Path | None) -> None:
    """Import a registry export of population source NAME into this host's store.

    \b
    Examples:
      badged population import /srv/exports/etudiants.csv --source students
      badged population import rh-personnels.csv --source staff --strict

    People are matched by institutional id; only the columns the source maps are written.
    After a full export (full_export: true), people of the source absent from the file are
    marked as leaving (effective for the CROUS after the source's leaving_grace_days); people
    present again are no longer leaving. Bad rows are reported on stderr as FILE:LINE: reason
    (the first 20; line, column and rule, never the value: values are personal data, they go
    to --report FILE, mode 0600), then counted by reason; the summary goes to stdout. Exit 0
    when every row is in, 3 when some were rejected, 1 when nothing was imported (a
    whole-file problem, or --strict with any bad row). Staff whose status matches no tariff
    rule get the default rate: each is warned about (id and status code) and the summary
    counts them, so a mistyped status code shows.
    """
    site = ctx.host.load_site()
    try:  # a source the school lacks is refused before the report file is created
        find_source(site.school.population, source_name, site.id)
    except PopulationError as exc:
        fail(f"error: {exc}")

    report_file = open_report(report_path)
    try:
        report = import_registry(ctx.host, site, file, source_name, strict=strict,
                                 today=clock.today(), progress=progress_printer(file, progress))
    except (TextFileError, PopulationError) as exc:
        if report_file is not None:
            report_file.discard()
        fail(str(exc) if isinstance(exc, TextFileError) else f"error: {exc}")
    finish_import(report, report_file)
