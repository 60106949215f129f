"""PDF reports: what the HTML report shows, on A4 pages, in a Unicode font when there is one."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from pypdf import PdfReader

from config.settings import SettingError, Settings
from taskapp.reports import fonts, pdf
from taskapp.reports.definitions import Column, Report, SqlSource
from tests.reports.test_formats import REPORT, ROWS

GENERATED = datetime(2025, 1, 3, 9, 30, tzinfo=UTC)
needs_dejavu = pytest.mark.skipif(not fonts.DEJAVU_SANS.is_file(), reason="no DejaVu Sans here")
UNICODE_ROWS = [*ROWS, (date(2025, 1, 3), "Москва · Zürich", 7, None)]


def _pdf(rows: list[tuple[object, ...]], report: Report = REPORT) -> tuple[int, PdfReader]:
    out = io.BytesIO()
    count = pdf.write_pdf(
        report,
        iter(rows),
        out,
        params={"start": "2025-01-01", "region": None},
        generated_at=GENERATED,
    )
    return count, PdfReader(io.BytesIO(out.getvalue()))


def _text(reader: PdfReader) -> str:
    return "\n".join(page.extract_text() for page in reader.pages)


@needs_dejavu
def test_pdf_has_the_title_parameters_chart_and_every_row_in_unicode() -> None:
    count, reader = _pdf(UNICODE_ROWS)
    text = _text(reader)
    assert count == 5
    assert reader.metadata is not None
    assert reader.metadata.title == "Demo sales"
    assert "Demo sales" in text
    assert "start: 2025-01-01 · region: all" in text
    assert "5 rows · generated 2025-01-03 09:30 UTC" in text
    # values are text, in UTC, non-Latin scripts included
    assert "<script>alert(1)</script>" in text
    assert "2025-01-01 10:00:00+00:00" in text  # 11:00 in Paris
    assert "Москва · Zürich" in text
    # and the chart is embedded as an image
    (image,) = reader.pages[0].images
    assert Image.open(io.BytesIO(image.data)).size == (900, 380)


def test_pdf_shows_a_bounded_table_but_counts_every_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pdf, "PDF_MAX_ROWS", 2)
    count, reader = _pdf(ROWS)
    text = _text(reader)
    assert count == 4
    assert "Showing the first 2 of 4 rows" in text
    assert "eu" in text
    assert "<script>" not in text  # the 4th row is left out


def test_without_a_unicode_font_latin_1_survives_and_the_rest_prints_as_question_marks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pdf, "font_path", lambda: None)
    count, reader = _pdf(UNICODE_ROWS)
    assert count == 5
    assert "?????? · Zürich" in _text(reader)


def test_an_empty_report_is_a_valid_pdf_that_says_so() -> None:
    count, reader = _pdf([])
    assert count == 0
    assert len(reader.pages) == 1
    assert "0 rows" in _text(reader)
    assert list(reader.pages[0].images) == []


def test_many_columns_go_landscape_and_a_report_without_a_chart_has_no_image() -> None:
    wide = Report(
        name="w",
        title="Wide",
        source=SqlSource("SELECT 1"),
        columns=tuple(Column(f"c{i}", "int") for i in range(pdf.PORTRAIT_COLUMNS + 1)),
    )
    _, reader = _pdf([tuple(range(pdf.PORTRAIT_COLUMNS + 1))], wide)
    page = reader.pages[0]
    assert page.mediabox.width > page.mediabox.height
    assert list(page.images) == []


def test_the_report_font_setting_must_name_a_font_file(tmp_path: Path) -> None:
    font = tmp_path / "font.ttf"
    with pytest.raises(SettingError, match="TASKAPP_REPORT_FONT"):
        Settings.from_env({"TASKAPP_REPORT_FONT": str(font)})  # missing
    font.write_bytes(b"")
    assert Settings.from_env({"TASKAPP_REPORT_FONT": str(font)}).report_font == str(font)
    with pytest.raises(SettingError, match="TASKAPP_REPORT_FONT"):
        Settings.from_env({"TASKAPP_REPORT_FONT": str(tmp_path)})  # a directory


@needs_dejavu
def test_chart_labels_use_the_report_font_so_other_scripts_are_not_boxes() -> None:
    # Pillow's built-in font draws every Cyrillic letter as the same box; DejaVu draws letters.
    def glyph(font: object, letter: str) -> bytes:
        image = Image.new("L", (20, 20))
        ImageDraw.Draw(image).text((2, 2), letter, fill=255, font=font)
        return image.tobytes()

    builtin = fonts.ImageFont.load_default(size=12)
    assert glyph(builtin, "М") == glyph(builtin, "к")
    assert glyph(fonts.chart_font(12), "М") != glyph(fonts.chart_font(12), "к")
