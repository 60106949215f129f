"""Image analysis: EXIF summary without GPS, dimensions, dominant colour, perceptual hashes."""

from __future__ import annotations

import io
import json

from PIL import Image, ImageDraw

from taskapp.images.analyze import analyze, hamming
from tests.images import samples

MAX_PIXELS = 64_000_000


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def test_exif_summary_keeps_camera_facts_and_drops_gps() -> None:
    # given a JPEG with camera EXIF and GPS coordinates
    result = analyze(samples.jpeg_with_metadata(), max_pixels=MAX_PIXELS)
    # then the summary has the camera facts
    assert result["exif"]["Make"] == "TestCam"
    assert result["exif"]["Model"] == "Model X"
    assert result["exif"]["ExposureTime"] == 0.004
    assert result["exif"]["ISOSpeedRatings"] == 200
    # and nothing of the GPS block, while saying that it was removed
    assert result["gps_removed"] is True
    text = json.dumps(result)
    assert "GPS" not in text
    assert "52.0" not in text
    assert (result["format"], result["width"], result["height"]) == ("JPEG", 640, 480)


def test_dimensions_and_hashes_follow_the_exif_orientation() -> None:
    # given the same picture stored upright and stored rotated with orientation 6
    upright = analyze(samples.oriented_jpeg(1, 800, 600), max_pixels=MAX_PIXELS)
    rotated = analyze(samples.oriented_jpeg(6, 800, 600), max_pixels=MAX_PIXELS)
    # then both report the displayed size and hash as (nearly) the same picture
    assert (
        (rotated["width"], rotated["height"]) == (800, 600) == (upright["width"], upright["height"])
    )
    assert rotated["orientation"] == 6
    assert hamming(upright["dhash"], rotated["dhash"]) <= 4
    assert hamming(upright["phash"], rotated["phash"]) <= 4


def test_hashes_survive_reencoding_and_tell_different_pictures_apart() -> None:
    picture = samples.photo(800, 600)
    other = Image.new("RGB", (800, 600), (30, 30, 30))
    draw = ImageDraw.Draw(other)
    for x in range(0, 800, 100):
        draw.rectangle((x, 0, x + 50, 600), fill=(240, 240, 240))
    a = analyze(_jpeg(picture, 95), max_pixels=MAX_PIXELS)
    b = analyze(_jpeg(picture.resize((400, 300)), 40), max_pixels=MAX_PIXELS)
    c = analyze(_jpeg(other), max_pixels=MAX_PIXELS)
    for name in ("dhash", "phash"):
        assert len(a[name]) == 16
        assert hamming(a[name], b[name]) <= 6, name
        assert hamming(a[name], c[name]) >= 16, name


def test_dominant_colour_ignores_transparent_pixels() -> None:
    # given a PNG that is half transparent and half blue; then blue dominates
    blue = analyze(samples.rgba_png(), max_pixels=MAX_PIXELS)
    assert blue["has_alpha"] is True
    r, g, b = (int(blue["dominant_color"][i : i + 2], 16) for i in (1, 3, 5))
    assert b > 180
    assert r < 60
    assert g < 60
    # and a fully transparent image has none
    empty = io.BytesIO()
    Image.new("RGBA", (20, 20), (0, 0, 0, 0)).save(empty, "PNG")
    assert analyze(empty.getvalue(), max_pixels=MAX_PIXELS)["dominant_color"] is None


def test_animated_gif_is_reported_as_animated() -> None:
    result = analyze(samples.animated_gif(), max_pixels=MAX_PIXELS)
    assert (result["format"], result["frames"], result["animated"]) == ("GIF", 3, True)
    assert result["dominant_color"] == "#{:02x}{:02x}{:02x}".format(*samples.RED)


def test_analysis_is_json_serialisable_for_every_odd_mode() -> None:
    for data in (samples.cmyk_jpeg(), samples.gray16_png(), samples.palette_gif(), samples.png()):
        json.dumps(analyze(data, max_pixels=MAX_PIXELS))
