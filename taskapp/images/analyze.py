"""What an image is: size, format, an EXIF summary without GPS, dominant colour, perceptual hashes.

The hashes are computed on the oriented image, so a photo and its rotated-by-EXIF twin match.
Both are 64-bit and compared with ``hamming``: dHash (gradient of a 9x8 grey image) is fast and
robust to re-encoding; pHash (sign of the low 8x8 DCT coefficients of a 32x32 grey image against
their median) also survives mild edits. A distance under ~10 bits suggests a duplicate.
"""

from __future__ import annotations

import hashlib
import math
from functools import cache
from typing import Any

from PIL import ExifTags, Image, TiffImagePlugin

from taskapp.images.pipeline import Decoded, decode

__all__ = ["analyze", "exif_summary", "dominant_color", "dhash", "phash", "hamming"]

#: Decode for analysis at about this size: hashes and colour need no more.
ANALYSIS_SIZE = 256
#: Tags kept in the summary; everything else (GPS, maker notes, serial numbers) is dropped.
BASE_TAGS = ("Make", "Model", "Software", "DateTime", "Orientation")
EXIF_TAGS = (
    "DateTimeOriginal",
    "ExposureTime",
    "FNumber",
    "ISOSpeedRatings",
    "FocalLength",
    "FocalLengthIn35mmFilm",
    "LensModel",
    "Flash",
    "ColorSpace",
)
MAX_TEXT = 128


def analyze(data: bytes, *, max_pixels: int) -> dict[str, Any]:
    """The analysis of one source image, JSON-ready."""
    decoded = decode(data, max_pixels=max_pixels, largest=ANALYSIS_SIZE)
    summary, had_gps = exif_summary(decoded.exif)
    return {
        "format": decoded.format,
        "mode": decoded.mode,
        "width": decoded.width,
        "height": decoded.height,
        "frames": decoded.frames,
        "animated": decoded.frames > 1,
        "has_alpha": decoded.has_alpha,
        "orientation": decoded.orientation,
        "icc_profile": decoded.icc_description,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "exif": summary,
        "gps_removed": had_gps,
        "dominant_color": dominant_color(decoded),
        "dhash": dhash(decoded.image),
        "phash": phash(decoded.image),
    }


def exif_summary(exif: Image.Exif) -> tuple[dict[str, Any], bool]:
    """A short, privacy-safe EXIF summary, and whether GPS data was present (and dropped)."""
    summary: dict[str, Any] = {}
    for name in BASE_TAGS:
        _keep(summary, name, exif.get(ExifTags.Base[name]))
    try:
        sub = exif.get_ifd(ExifTags.IFD.Exif)
    except (KeyError, ValueError, OSError, SyntaxError):
        sub = {}
    for name in EXIF_TAGS:
        _keep(summary, name, sub.get(ExifTags.Base[name]))
    return summary, ExifTags.Base.GPSInfo in exif


def _keep(summary: dict[str, Any], name: str, value: object) -> None:
    cleaned = _json_value(value)
    if cleaned not in (None, "", []):
        summary[name] = cleaned


def _json_value(value: object) -> Any:
    if isinstance(value, TiffImagePlugin.IFDRational):
        return None if value.denominator == 0 else round(float(value), 6)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value.replace("\x00", "").strip()[:MAX_TEXT]
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    if isinstance(value, tuple | list):
        return [_json_value(v) for v in value[:8]]
    return None


def dominant_color(decoded: Decoded) -> str | None:
    """The most common colour of the visible pixels, as ``#rrggbb`` (None if all transparent)."""
    small = decoded.image.copy()
    small.thumbnail((64, 64), Image.Resampling.BILINEAR)
    if small.mode == "RGBA":
        alpha = small.getchannel("A").tobytes()
        rgb = small.convert("RGB").tobytes()
        opaque = b"".join(rgb[i * 3 : i * 3 + 3] for i, a in enumerate(alpha) if a >= 128)
        if not opaque:
            return None
        small = Image.frombytes("RGB", (len(opaque) // 3, 1), opaque)
    quantized = small.convert("RGB").quantize(colors=6, method=Image.Quantize.MEDIANCUT)
    counts = quantized.getcolors() or []
    _, index = max(counts)  # (count, palette index) of the most frequent colour
    index = int(index)  # type: ignore[call-overload]
    palette = quantized.getpalette() or []
    r, g, b = palette[index * 3 : index * 3 + 3]
    return f"#{r:02x}{g:02x}{b:02x}"


def _grey(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if image.mode == "RGBA":  # transparent areas hash as white, like they are usually shown
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    return image.convert("L").resize(size, Image.Resampling.LANCZOS)


def dhash(image: Image.Image) -> str:
    """64-bit difference hash: is each pixel brighter than its right neighbour (9x8 grey)."""
    pixels = _grey(image, (9, 8)).tobytes()
    bits = 0
    for row in range(8):
        for col in range(8):
            left, right = pixels[row * 9 + col], pixels[row * 9 + col + 1]
            bits = (bits << 1) | (left > right)
    return f"{bits:016x}"


@cache
def _cosines(n: int = 32, k: int = 8) -> tuple[tuple[float, ...], ...]:
    return tuple(
        tuple(math.cos(math.pi * (2 * x + 1) * u / (2 * n)) for x in range(n)) for u in range(k)
    )


def phash(image: Image.Image) -> str:
    """64-bit perceptual hash: low-frequency 8x8 DCT of a 32x32 grey image against its median."""
    n, k = 32, 8
    pixels = _grey(image, (n, n)).tobytes()
    cos = _cosines(n, k)
    rows = [pixels[y * n : (y + 1) * n] for y in range(n)]
    # Separable 2-D DCT-II, computing only the k lowest frequencies in each direction.
    row_dct = [
        [sum(c * p for c, p in zip(cos[u], row, strict=True)) for u in range(k)] for row in rows
    ]
    coeffs = [sum(cos[v][y] * row_dct[y][u] for y in range(n)) for v in range(k) for u in range(k)]
    median = sorted(coeffs[1:])[(len(coeffs) - 1) // 2]  # the DC term would skew the median
    bits = 0
    for value in coeffs:
        bits = (bits << 1) | (value > median)
    return f"{bits:016x}"


def hamming(a: str, b: str) -> int:
    """Bits that differ between two hashes (0: identical; under ~10: likely the same picture)."""
    return bin(int(a, 16) ^ int(b, 16)).count("1")
