"""A line chart as PNG bytes, drawn with Pillow: one line per series, values over days."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from datetime import date

from PIL import Image, ImageDraw

from taskapp.reports.fonts import chart_font

__all__ = ["line_chart", "nice_ceiling"]

WIDTH, HEIGHT = 900, 380
LEFT, RIGHT, TOP, BOTTOM = 80, 130, 40, 50
PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]
GRID, AXIS, TEXT = "#e5e5e5", "#444444", "#222222"
Y_TICKS = 5
X_TICKS = 6


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is at least ``value``."""
    if value <= 0:
        return 1.0
    power: float = 10 ** math.floor(math.log10(value))  # int ** int is Any to mypy
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def _label(value: float) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


def line_chart(series: Mapping[str, Mapping[date, float]], title: str = "") -> bytes:
    """PNG of ``series`` (name -> day -> value) on shared axes; y starts at zero."""
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    font = chart_font(12)
    days = sorted({day for points in series.values() for day in points})
    if not days:
        draw.text((LEFT, HEIGHT // 2), "no data", fill=TEXT, font=font)
        return _png(image)
    top = nice_ceiling(max(max(points.values(), default=0) for points in series.values()))
    first, span = days[0].toordinal(), max(1, days[-1].toordinal() - days[0].toordinal())
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def xy(day: date, value: float) -> tuple[float, float]:
        return (
            LEFT + (day.toordinal() - first) / span * plot_w,
            TOP + plot_h - min(value, top) / top * plot_h,
        )

    draw.text((LEFT, 12), title, fill=TEXT, font=chart_font(15))
    for i in range(Y_TICKS + 1):
        value = top * i / Y_TICKS
        _, y = xy(days[0], value)
        draw.line([(LEFT, y), (LEFT + plot_w, y)], fill=GRID)
        draw.text((LEFT - 8, y), _label(value), fill=TEXT, font=font, anchor="rm")
    for i in range(min(X_TICKS, len(days))):
        day = days[round(i * (len(days) - 1) / max(1, min(X_TICKS, len(days)) - 1))]
        x, _ = xy(day, 0)
        draw.line([(x, TOP + plot_h), (x, TOP + plot_h + 4)], fill=AXIS)
        draw.text((x, TOP + plot_h + 8), day.isoformat(), fill=TEXT, font=font, anchor="mt")
    draw.line([(LEFT, TOP), (LEFT, TOP + plot_h), (LEFT + plot_w, TOP + plot_h)], fill=AXIS)
    for i, (name, points) in enumerate(sorted(series.items())):
        colour = PALETTE[i % len(PALETTE)]
        line = [xy(day, points[day]) for day in sorted(points)]
        if len(line) > 1:
            draw.line(line, fill=colour, width=2, joint="curve")
        for x, y in line if len(line) <= 60 else ():
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        legend_y = TOP + 18 * i
        draw.rectangle(
            [WIDTH - RIGHT + 16, legend_y + 2, WIDTH - RIGHT + 28, legend_y + 12], fill=colour
        )
        draw.text((WIDTH - RIGHT + 34, legend_y), name or "(none)", fill=TEXT, font=font)
    return _png(image)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
