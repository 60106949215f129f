"""Demo: upload a generated photo, run ``images.process_upload``, show variants and analysis."""

from __future__ import annotations

import io
import uuid

from PIL import Image, ImageDraw

__all__ = ["run", "demo_photo"]


def demo_photo(width: int = 2400, height: int = 1600) -> bytes:
    """A generated landscape JPEG with camera EXIF and GPS (which the outputs must not keep)."""
    sky = Image.linear_gradient("L").resize((width, height))
    image = Image.merge(
        "RGB",
        (
            sky.point(lambda v: 90 + v // 3),
            sky.point(lambda v: 140 + v // 4),
            Image.new("L", (width, height), 235),
        ),
    )
    draw = ImageDraw.Draw(image)
    draw.ellipse((width * 0.7, height * 0.1, width * 0.82, height * 0.28), fill=(255, 214, 90))
    draw.polygon(
        [(0, height), (width * 0.35, height * 0.45), (width * 0.7, height)], fill=(60, 110, 70)
    )
    draw.polygon(
        [(width * 0.4, height), (width * 0.75, height * 0.55), (width, height)], fill=(40, 90, 60)
    )
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "taskapp", "Demo Camera"  # Make, Model
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 30.0), 3: "E", 4: (2.0, 17.0, 40.0)}  # GPSInfo
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    return buffer.getvalue()


def run() -> list[tuple[str, str]]:
    """Upload a photo, fan out thumbnails + analysis, and report what was recorded."""
    from config.settings import load_settings
    from taskapp.aws import client
    from taskapp.images import records
    from taskapp.images.tasks import process_upload

    settings = load_settings()
    key = f"uploads/demo-{uuid.uuid4().hex[:12]}.jpg"
    body = demo_photo()
    client("s3", settings).put_object(
        Bucket=settings.bucket, Key=key, Body=body, ContentType="image/jpeg"
    )
    started = process_upload.delay(key).get(timeout=60, interval=0.05)
    process_upload.AsyncResult(started["result_id"]).get(timeout=60, interval=0.05)
    row = records.upload_status(key) or {}
    lines = [
        ("uploaded", f"s3://{settings.bucket}/{key} ({len(body)} bytes, 2400x1600)"),
        ("image_uploads row", str(row.get("status"))),
    ]
    for variant in (row.get("manifest") or {}).get("variants", []):
        label = f"variant {variant['size']} {variant['format']}"
        lines.append(
            (
                label,
                f"{variant['key']} {variant['width']}x{variant['height']} {variant['bytes']} bytes",
            )
        )
    analysis = row.get("analysis") or {}
    lines += [
        (
            "analysis",
            f"{analysis.get('format')} {analysis.get('width')}x{analysis.get('height')}"
            f" {analysis.get('mode')}",
        ),
        ("exif (GPS removed)", f"{analysis.get('exif')} gps_removed={analysis.get('gps_removed')}"),
        ("dominant colour", str(analysis.get("dominant_color"))),
        ("dhash / phash", f"{analysis.get('dhash')} / {analysis.get('phash')}"),
    ]
    return lines
