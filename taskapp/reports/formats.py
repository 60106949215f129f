"""Output formats: CSV (streamed row by row), XLSX (openpyxl write-only), HTML (Jinja2 + chart).

``FORMATS`` declares every format a request may ask for, PDF included, with its file extension
and Content-Type; ``validate_format`` checks a request's against it.

Every writer takes rows as an iterator and a binary stream to write to, and returns the number of
rows written. CSV and XLSX hold no rows in memory; HTML keeps at most ``HTML_MAX_ROWS`` for its
table and a per-day sum for its chart. PDF, which shows what HTML does, is in ``reports.pdf``.
"""

from __future__ import annotations

import base64
import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any, TypeAlias

from jinja2 import Environment, FileSystemLoader, select_autoescape
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font

from taskapp.reports.chart import line_chart
from taskapp.reports.definitions import Chart, Column, Report, ReportParamError, shorten

__all__ = [
    "Format",
    "FORMATS",
    "validate_format",
    "Sink",
    "HTML_MAX_ROWS",
    "XLSX_MAX_ROWS",
    "write_csv",
    "write_xlsx",
    "write_html",
    "read_csv_rows",
    "digest",
]

#: Rows an HTML report shows; the chart still sums every row.
HTML_MAX_ROWS = 5000
#: Where a writer puts its bytes: a file, a BytesIO, or an S3 upload stream.
Sink: TypeAlias = IO[bytes] | io.RawIOBase
#: Rows per worksheet (Excel's limit, header included); more rows continue on a new sheet.
XLSX_MAX_ROWS = 1_048_576


def _utc(value: datetime | None) -> datetime | None:
    # SQLite returns naive UTC wall time, PostgreSQL an aware value in the session time zone.
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _normalized(
    rows: Iterable[Sequence[Any]], columns: Sequence[Column]
) -> Iterable[Sequence[Any]]:
    """Rows with every datetime in UTC, whichever database they came from."""
    positions = [i for i, c in enumerate(columns) if c.type == "datetime"]
    if not positions:
        return rows

    def fix(row: Sequence[Any]) -> list[Any]:
        fixed = list(row)
        for i in positions:
            fixed[i] = _utc(fixed[i])
        return fixed

    return map(fix, rows)


# --- CSV ------------------------------------------------------------------------------------


def write_csv(
    report: Report, rows: Iterable[Sequence[Any]], out: Sink, *, header: bool = True
) -> int:
    """Write ``rows`` as UTF-8 CSV to ``out``, one row at a time; return the row count."""
    # TextIOWrapper only calls write() and flush() here, which every Sink has.
    text = io.TextIOWrapper(out, encoding="utf-8", newline="")  # type: ignore[type-var]
    try:
        writer = csv.writer(text)
        if header:
            writer.writerow([c.name for c in report.columns])
        count = 0
        for row in _normalized(rows, report.columns):
            writer.writerow(row)
            count += 1
        text.flush()
    finally:
        text.detach()  # leave ``out`` open: the caller owns it
    return count


def read_csv_rows(report: Report, stream: IO[bytes]) -> Iterable[list[Any]]:
    """Typed rows back from a header-less CSV part written by ``write_csv``."""
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    parsers = [c.parse_text for c in report.columns]
    for record in csv.reader(text):
        yield [parse(value) for parse, value in zip(parsers, record, strict=True)]


# --- XLSX -----------------------------------------------------------------------------------

_WIDTHS = {"date": 12, "datetime": 22, "int": 12, "float": 12, "str": 18}


def _xlsx_value(value: Any) -> Any:
    # Excel has no time zones: datetimes are written as naive UTC wall time.
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def write_xlsx(report: Report, rows: Iterable[Sequence[Any]], out: Sink) -> int:
    """Write ``rows`` to an XLSX workbook in write-only mode; return the row count."""
    workbook = Workbook(write_only=True)
    needs_conversion = any(c.type == "datetime" for c in report.columns)
    count, sheet, sheet_rows = 0, None, XLSX_MAX_ROWS
    for row in rows:
        if sheet_rows >= XLSX_MAX_ROWS:
            sheet = _new_sheet(workbook, report, len(workbook.worksheets) + 1)
            sheet_rows = 1
        assert sheet is not None
        sheet.append([_xlsx_value(v) for v in row] if needs_conversion else tuple(row))
        sheet_rows += 1
        count += 1
    if sheet is None:
        _new_sheet(workbook, report, 1)
    workbook.save(out)
    return count


def _new_sheet(workbook: Workbook, report: Report, number: int) -> Any:
    title = report.title[:28] if number == 1 else f"{report.title[:24]} ({number})"
    sheet = workbook.create_sheet(title=title.replace("/", "-"))
    for index, column in enumerate(report.columns):
        letter = _letter(index)
        sheet.column_dimensions[letter].width = max(_WIDTHS[column.type], len(column.heading) + 2)
    sheet.freeze_panes = "A2"
    bold = Font(bold=True)
    cells = []
    for column in report.columns:
        cell = WriteOnlyCell(sheet, value=column.heading)
        cell.font = bold
        cells.append(cell)
    sheet.append(cells)
    return sheet


def _letter(index: int) -> str:
    from openpyxl.utils import get_column_letter

    letter: str = get_column_letter(index + 1)  # openpyxl is untyped
    return letter


# --- HTML -----------------------------------------------------------------------------------

_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=select_autoescape(["html", "j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


class ChartSums:
    """Per-series, per-day sums of a report's chart column, built while rows stream past."""

    def __init__(self, chart: Chart, columns: Sequence[Column]) -> None:
        names = [c.name for c in columns]
        self.chart = chart
        self._x, self._y = names.index(chart.x), names.index(chart.y)
        self._series = names.index(chart.series) if chart.series else None
        self.sums: dict[str, dict[date, float]] = defaultdict(lambda: defaultdict(float))

    def add(self, row: Sequence[Any]) -> None:
        x, y = row[self._x], row[self._y]
        if x is None or y is None:
            return
        day = x.date() if isinstance(x, datetime) else x
        series = "" if self._series is None else str(row[self._series])
        self.sums[series][day] += float(y)

    def png(self) -> bytes | None:
        if not self.sums:
            return None
        name = self.chart.series or self.chart.y
        labelled = {key or name: dict(points) for key, points in self.sums.items()}
        return line_chart(labelled, self.chart.title)


def digest(
    report: Report, rows: Iterable[Sequence[Any]], max_rows: int
) -> tuple[list[Sequence[Any]], int, bytes | None]:
    """What a page-like report shows: the first ``max_rows`` rows, the count, the chart PNG."""
    sums = ChartSums(report.chart, report.columns) if report.chart else None
    table: list[Sequence[Any]] = []
    count = 0
    for row in _normalized(rows, report.columns):
        if sums:
            sums.add(row)
        if len(table) < max_rows:
            table.append(row)
        count += 1
    return table, count, sums.png() if sums else None


def write_html(
    report: Report,
    rows: Iterable[Sequence[Any]],
    out: Sink,
    *,
    params: Mapping[str, Any],
    generated_at: datetime,
) -> int:
    """Render ``rows`` into the HTML template, with a PNG chart if the report defines one."""
    table, count, png = digest(report, rows, HTML_MAX_ROWS)
    html = _TEMPLATES.get_template("report.html.j2").render(
        title=report.title,
        description=report.description,
        params=params,
        rows=count,
        shown=len(table),
        truncated=count > len(table),
        generated_at=generated_at.isoformat(timespec="seconds"),
        columns=report.columns,
        numeric=[c.type in ("int", "float") for c in report.columns],
        table=table,
        chart_png=base64.b64encode(png).decode("ascii") if png else None,
        chart_title=report.chart.title if report.chart else "",
    )
    out.write(html.encode("utf-8"))
    return count


# --- the formats ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Format:
    """An output format: file extension, Content-Type and how a browser should show it."""

    name: str
    extension: str
    content_type: str
    disposition: str  # "attachment" or "inline"


#: Every output format ``reports.generate`` accepts, by name.
FORMATS: dict[str, Format] = {
    "csv": Format("csv", "csv", "text/csv; charset=utf-8", "attachment"),
    "xlsx": Format(
        "xlsx",
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "attachment",
    ),
    "html": Format("html", "html", "text/html; charset=utf-8", "inline"),
    "pdf": Format("pdf", "pdf", "application/pdf", "inline"),
}


def validate_format(fmt: object) -> str:
    """``fmt`` if it is a supported output format; ``ReportParamError`` on ``format`` if not."""
    # The isinstance check first: an unhashable value (a list) cannot be looked up in a dict.
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise ReportParamError("format", f"unsupported {shorten(fmt)}; use one of {tuple(FORMATS)}")
    return fmt
