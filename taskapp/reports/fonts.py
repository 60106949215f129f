"""The one font of report output: the chart's labels and the PDF's text."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

from config.settings import load_settings

__all__ = ["DEJAVU_SANS", "font_path", "chart_font"]

#: Where Debian's fonts-dejavu-core puts DejaVu Sans.
DEJAVU_SANS = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def font_path() -> Path | None:
    """``TASKAPP_REPORT_FONT`` if set, else DejaVu Sans if installed, else None."""
    configured = load_settings().report_font
    if configured:
        return Path(configured)
    return DEJAVU_SANS if DEJAVU_SANS.is_file() else None


def chart_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The report font at ``size`` px for Pillow; Pillow's own (ASCII only) without one."""
    return _chart_font(font_path(), size)


@lru_cache(maxsize=16)
def _chart_font(path: Path | None, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if path is None:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(str(path), size)
