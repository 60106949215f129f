"""Formats: CSV row by row, XLSX write-only (with sheet roll-over), HTML with a PNG chart."""

from __future__ import annotations

import base64
import csv
import io
import re
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from openpyxl import load_workbook
from PIL import Image

from taskapp.reports import formats
from taskapp.reports.chart import line_chart, nice_ceiling
from taskapp.reports.definitions import Chart, Column, Report, SqlSource

REPORT = Report(
    name="demo",
    title="Demo sales",
    source=SqlSource("SELECT 1"),
    columns=(
        Column("day", "date"),
        Column("region"),
        Column("amount", "int"),
        Column("at", "datetime"),
    ),
    chart=Chart(x="day", y="amount", series="region", title="Amount"),
)
PARIS = timezone(timedelta(hours=1))
ROWS = [
    (date(2025, 1, 1), "eu", 100, datetime(2025, 1, 1, 10, 0)),  # naive: UTC (SQLite)
    (date(2025, 1, 1), "us", 50, datetime(2025, 1, 1, 11, 0, tzinfo=PARIS)),
    (date(2025, 1, 2), "eu", 70, None),
    (date(2025, 1, 2), "<script>alert(1)</script>", 5, datetime(2025, 1, 2, tzinfo=UTC)),
]


def test_csv_has_a_header_and_every_row_with_datetimes_in_utc() -> None:
    out = io.BytesIO()
    assert formats.write_csv(REPORT, iter(ROWS), out) == 4
    lines = list(csv.reader(io.StringIO(out.getvalue().decode())))
    assert lines[0] == ["day", "region", "amount", "at"]
    assert lines[1] == ["2025-01-01", "eu", "100", "2025-01-01 10:00:00+00:00"]
    assert lines[2][3] == "2025-01-01 10:00:00+00:00"  # 11:00 in Paris
    assert lines[3][3] == ""


def test_a_csv_part_reads_back_with_its_column_types() -> None:
    out = io.BytesIO()
    formats.write_csv(REPORT, iter(ROWS), out, header=False)
    back = list(formats.read_csv_rows(REPORT, io.BytesIO(out.getvalue())))
    assert back[0] == [date(2025, 1, 1), "eu", 100, datetime(2025, 1, 1, 10, tzinfo=UTC)]
    assert back[2][3] is None
    assert len(back) == 4


def test_xlsx_holds_typed_cells_under_a_header() -> None:
    out = io.BytesIO()
    assert formats.write_xlsx(REPORT, iter(ROWS), out) == 4
    sheet = load_workbook(io.BytesIO(out.getvalue()), read_only=True).worksheets[0]
    values = list(sheet.iter_rows(values_only=True))
    assert values[0] == ("Day", "Region", "Amount", "At")
    assert values[1] == (datetime(2025, 1, 1), "eu", 100, datetime(2025, 1, 1, 10, 0))
    assert values[2][3] == datetime(2025, 1, 1, 10, 0)  # UTC wall time
    assert len(values) == 5


def test_xlsx_continues_on_a_new_sheet_past_the_row_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a (lowered) sheet limit of a header plus two rows
    monkeypatch.setattr(formats, "XLSX_MAX_ROWS", 3)
    out = io.BytesIO()
    # when five rows are written
    formats.write_xlsx(REPORT, iter(ROWS + ROWS[:1]), out)
    # then they fill three sheets, each with its own header, in order
    book = load_workbook(io.BytesIO(out.getvalue()), read_only=True)
    sizes = [len(list(sheet.iter_rows(values_only=True))) for sheet in book.worksheets]
    assert sizes == [3, 3, 2]
    assert [s.title for s in book.worksheets] == ["Demo sales", "Demo sales (2)", "Demo sales (3)"]


def test_html_escapes_values_and_embeds_a_png_chart() -> None:
    out = io.BytesIO()
    generated = datetime(2025, 1, 3, tzinfo=UTC)
    formats.write_html(
        REPORT, iter(ROWS), out, params={"start": "2025-01-01"}, generated_at=generated
    )
    html = out.getvalue().decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html
    match = re.search(r'src="data:image/png;base64,([^"]+)"', html)
    assert match, "no embedded chart"
    image = Image.open(io.BytesIO(base64.b64decode(match.group(1))))
    assert image.format == "PNG"
    assert image.size == (900, 380)
    assert "4 rows" in html


def test_html_shows_a_bounded_table_but_counts_every_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(formats, "HTML_MAX_ROWS", 2)
    out = io.BytesIO()
    count = formats.write_html(REPORT, iter(ROWS), out, params={}, generated_at=datetime.now(UTC))
    html = out.getvalue().decode()
    assert count == 4
    assert html.count("<tr>") == 3  # header + 2 rows
    assert "Showing the first 2 of 4 rows" in html


def test_a_report_without_a_chart_has_no_image() -> None:
    plain = Report(name="p", title="P", source=SqlSource("SELECT 1"), columns=(Column("n", "int"),))
    out = io.BytesIO()
    formats.write_html(plain, iter([(1,), (2,)]), out, params={}, generated_at=datetime.now(UTC))
    assert b"data:image/png" not in out.getvalue()


def test_chart_draws_series_and_survives_empty_input() -> None:
    series = {"eu": {date(2025, 1, d): float(d * 10) for d in range(1, 11)}, "us": {}}
    for data in (series, {}):
        png = line_chart(data, "t")
        assert Image.open(io.BytesIO(png)).format == "PNG"
    assert [nice_ceiling(v) for v in (0, 7, 11, 230, 4000)] == [1.0, 10, 20, 250, 5000]
