"""``claimflow report sla|cycle|satisfaction|scorecard --from DATE --to DATE [--csv FILE]``.

Registered in ``claimflow.cli``: ``app.add_typer(report_app, name="report")``. The figures are the ones the
``quality-report`` flow publishes (``tasks.reports``, aggregated in the database); dates are whole days in the
office's time zone (``CLAIMFLOW_OFFICE_TIMEZONE``), working days on ``CLAIMFLOW_REGION``'s calendar. A progress
bar on stderr shows each query while it runs; the tables go to stdout, and with ``--csv`` to a file as well.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

import claimflow.cli.common as common
from claimflow.console import err, out
from models.errors import InvalidInput
from models.reports import ReportPeriod, ReportTable, cell_text, csv_document

report_app = typer.Typer(
    help="Quality reports: SLA compliance, cycle time, satisfaction, scorecard.", no_args_is_help=True
)

FromOption = Annotated[str, typer.Option("--from", help="First day of the period (YYYY-MM-DD), office time zone.")]
ToOption = Annotated[str, typer.Option("--to", help="Last day of the period (YYYY-MM-DD), included.")]
CsvOption = Annotated[Path | None, typer.Option("--csv", help="Also write the tables to this CSV file.")]


def scope_for(start: str, end: str) -> Any:
    """The report's scope from the command line: the period, the desk's calendar, the time now."""
    from claimflow.settings import get_settings
    from models.calendar import region_calendar
    from tasks.reports import ReportScope

    settings = get_settings()
    period = ReportPeriod.parse(start, end, settings.office_timezone)
    calendar = region_calendar(settings.region, unknown_years="weekends", timezone=settings.office_timezone)
    return ReportScope(period, calendar, common.now())


def run_section(section: str, start: str, end: str, csv_file: Path | None) -> list[ReportTable]:
    """Compute one section's tables with a progress bar, print them, and write the CSV if asked."""
    from sqlmodel import Session

    from tasks.reports import SECTIONS, report_tables

    scope = scope_for(start, end)
    tables: list[ReportTable] = []
    engine = common.engine()
    with (
        Session(engine) as session,
        Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as progress,
    ):
        work = report_tables(session, scope=scope, keys=SECTIONS[section])
        bar = progress.add_task(f"{section} report {scope.period.label}", total=len(work))
        for key, make in work:
            progress.update(bar, description=f"{section}: {key}")
            tables.append(make())
            progress.advance(bar)
    out.print(f"{section} report, {scope.period.label} ({scope.period.timezone})")
    for table in tables:
        print_table(table)
    if csv_file is not None:
        try:
            csv_file.write_text(csv_document(tables), encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"--csv: cannot write {csv_file}: {exc.strerror}") from None
        out.print(f"wrote {csv_file}")
    return tables


def print_table(table: ReportTable) -> None:
    shown = Table(title=table.title, title_justify="left", caption=table.note or None, caption_justify="left")
    for name in table.columns:
        shown.add_column(name, overflow="fold")
    for row in table.rows:
        shown.add_row(*(cell_text(v) for v in row))
    out.print(shown)


@report_app.command("sla")
def sla(start: FromOption, end: ToOption, csv_file: CsvOption = None) -> None:
    """SLA compliance per case kind, step, handler and department; breaches and escalations."""
    run_section("sla", start, end, csv_file)


@report_app.command("cycle")
def cycle(start: FromOption, end: ToOption, csv_file: CsvOption = None) -> None:
    """Cycle time in working days (mean, p90) per case kind, and the backlog by age."""
    run_section("cycle", start, end, csv_file)


@report_app.command("satisfaction")
def satisfaction(start: FromOption, end: ToOption, csv_file: CsvOption = None) -> None:
    """Survey answers per handler and product line, and complaint causes."""
    run_section("satisfaction", start, end, csv_file)


@report_app.command("scorecard")
def scorecard(start: FromOption, end: ToOption, csv_file: CsvOption = None) -> None:
    """Per-handler scorecard: deadline compliance, satisfaction, reopened cases, wording-check failures."""
    run_section("scorecard", start, end, csv_file)
