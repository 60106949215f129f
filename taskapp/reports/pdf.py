"""PDF output (fpdf2): the HTML report's content on A4 pages, for mailing and printing.

Like HTML, a PDF shows the title, parameters, row count, the chart (which sums every row) and a
table of at most ``PDF_MAX_ROWS`` rows; the bytes are built in memory, which that cap bounds.
Text is set in the report font (``reports.fonts``), else in Helvetica, a PDF core font that has
only Latin-1 characters.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.fonts import FontFace

from taskapp.reports.definitions import Report
from taskapp.reports.fonts import font_path
from taskapp.reports.formats import Sink, digest

__all__ = ["PDF_MAX_ROWS", "write_pdf"]

log = logging.getLogger(__name__)

#: Rows a PDF report shows (32 A4 pages, ~4.6 s here); the chart still sums every row.
PDF_MAX_ROWS = 2000
#: A table with more columns than this is set in landscape.
PORTRAIT_COLUMNS = 6
HEADING_FILL = (246, 246, 246)
NOTE_COLOUR = (161, 92, 0)
TEXT, MUTED = (34, 34, 34), (102, 102, 102)


class _Document(FPDF):
    """An A4 document in one font, Unicode if a font file is given, else Latin-1 Helvetica."""

    def __init__(self, landscape: bool, font: Path | None) -> None:
        super().__init__(orientation="L" if landscape else "P", unit="mm", format="A4")
        self.has_unicode_font = font is not None
        if font is not None:
            self.add_font("body", "", str(font))
        self.body_font = "body" if font is not None else "helvetica"
        self.set_auto_page_break(True, margin=12)
        self.set_margins(12, 12, 12)
        self.add_page()

    def text_of(self, value: Any) -> str:
        text = "" if value is None else str(value)
        return (
            text if self.has_unicode_font else text.encode("latin-1", "replace").decode("latin-1")
        )

    def paragraph(self, text: str, size: float, colour: tuple[int, int, int] = TEXT) -> None:
        self.set_font(self.body_font, size=size)
        self.set_text_color(*colour)
        self.multi_cell(0, size * 0.5, self.text_of(text), new_x="LMARGIN", new_y="NEXT")
        self.ln(1.5)


def write_pdf(
    report: Report,
    rows: Iterable[Sequence[Any]],
    out: Sink,
    *,
    params: Mapping[str, Any],
    generated_at: datetime,
) -> int:
    """Write ``rows`` as a PDF report to ``out``; return how many rows there were."""
    table, count, png = digest(report, rows, PDF_MAX_ROWS)
    font = font_path()
    if font is None:
        log.warning("PDF report without a Unicode font; set TASKAPP_REPORT_FONT")
    pdf = _Document(len(report.columns) > PORTRAIT_COLUMNS, font)
    pdf.set_title(pdf.text_of(report.title))
    pdf.set_creation_date(generated_at)
    _front_matter(pdf, report, params, count, generated_at)
    if png:
        pdf.image(io.BytesIO(png), w=pdf.epw)
        pdf.ln(2)
    if count > len(table):
        note = f"Showing the first {len(table)} of {count} rows; download CSV or XLSX for all."
        pdf.paragraph(note, 9, NOTE_COLOUR)
    _table(pdf, report, table)
    out.write(bytes(pdf.output()))
    return count


def _front_matter(
    pdf: _Document,
    report: Report,
    params: Mapping[str, Any],
    count: int,
    generated_at: datetime,
) -> None:
    pdf.paragraph(report.title, 16)
    shown = " · ".join(f"{k}: {'all' if v is None else v}" for k, v in params.items())
    rows = f"{count} row{'' if count == 1 else 's'} · generated {generated_at:%Y-%m-%d %H:%M} UTC"
    pdf.paragraph(f"{shown}\n{rows}" if shown else rows, 9, MUTED)
    if report.description:
        pdf.paragraph(report.description, 10)


def _table(pdf: _Document, report: Report, table: Sequence[Sequence[Any]]) -> None:
    numeric = ["RIGHT" if c.type in ("int", "float") else "LEFT" for c in report.columns]
    pdf.set_font(pdf.body_font, size=8)
    pdf.set_text_color(*TEXT)
    headings = FontFace(emphasis="", fill_color=HEADING_FILL)
    with pdf.table(
        text_align=tuple(numeric),
        headings_style=headings,
        line_height=4.2,
        borders_layout="HORIZONTAL_LINES",
        repeat_headings=1,
    ) as grid:
        grid.row([pdf.text_of(c.heading) for c in report.columns])
        for values in table:
            grid.row([pdf.text_of(v) for v in values])
