"""Images made with Pillow for the image tests: photos, orientations, odd modes, hostile files."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image, ImageDraw, ImageOps

__all__ = [
    "photo",
    "jpeg",
    "png",
    "oriented_jpeg",
    "jpeg_with_metadata",
    "rgba_png",
    "palette_gif",
    "animated_gif",
    "cmyk_jpeg",
    "gray16_png",
    "rgb16_png",
    "truncated_jpeg",
    "bomb_png",
    "tiff",
    "INVERSE",
    "reference_thumbnail",
    "mad",
]

RED, BLUE = (220, 20, 20), (20, 20, 220)

#: The transposition that, applied to the displayed image, gives the stored pixels.
INVERSE = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def photo(width: int = 1200, height: int = 800) -> Image.Image:
    """A photo-like RGB picture: gradients plus a red block in the top-left corner."""
    base = Image.merge(
        "RGB",
        (
            Image.linear_gradient("L").resize((width, height)),
            Image.radial_gradient("L").resize((width, height)),
            Image.linear_gradient("L").rotate(90).resize((width, height)),
        ),
    )
    draw = ImageDraw.Draw(base)
    draw.rectangle((0, 0, width // 4, height // 4), fill=RED)
    draw.ellipse((width // 2, height // 2, width * 3 // 4, height * 3 // 4), fill=BLUE)
    return base


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def jpeg(width: int = 1200, height: int = 800, **options: object) -> bytes:
    return _save(photo(width, height), "JPEG", quality=90, **options)


def png(width: int = 300, height: int = 200) -> bytes:
    return _save(photo(width, height), "PNG")


def oriented_jpeg(orientation: int, width: int = 1200, height: int = 800) -> bytes:
    """A JPEG that *displays* as ``photo(width, height)`` through its EXIF orientation."""
    shown = photo(width, height)
    stored = shown if INVERSE[orientation] is None else shown.transpose(INVERSE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(stored, "JPEG", quality=92, exif=exif.tobytes())


def jpeg_with_metadata() -> bytes:
    """A JPEG carrying camera EXIF, GPS coordinates, XMP and a comment."""
    exif = Image.Exif()
    exif[0x010F] = "TestCam"  # Make
    exif[0x0110] = "Model X"  # Model
    exif[0x0131] = "taskapp-tests"  # Software
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}  # GPS
    exif.get_ifd(0x8769)[0x829A] = 0.004  # ExposureTime
    exif.get_ifd(0x8769)[0x8827] = 200  # ISO
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">secret-xmp</x:xmpmeta>'
    return _save(photo(640, 480), "JPEG", exif=exif.tobytes(), xmp=xmp, comment=b"secret")


def rgba_png(width: int = 400, height: int = 300) -> bytes:
    """Left half fully transparent, right half opaque blue."""
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((width // 2, 0, width, height), fill=(*BLUE, 255))
    return _save(image, "PNG")


def palette_gif() -> bytes:
    """A palette image with a transparent colour (left half) and red (right half)."""
    image = Image.new("P", (200, 100), 0)
    image.putpalette([255, 255, 255, *RED] + [0] * 762)
    ImageDraw.Draw(image).rectangle((100, 0, 200, 100), fill=1)
    return _save(image, "GIF", transparency=0)


def animated_gif() -> bytes:
    """Three frames: red, green, blue; only the first should be rendered."""
    frames = [Image.new("RGB", (120, 80), color) for color in (RED, (20, 200, 20), BLUE)]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def cmyk_jpeg() -> bytes:
    """A CMYK JPEG that is pure red (no cyan, full magenta and yellow)."""
    return _save(Image.new("CMYK", (300, 200), (0, 255, 255, 0)), "JPEG", quality=95)


def gray16_png(value: int = 32768) -> bytes:
    """A 16-bit greyscale PNG of one mid-grey value (would clip to white if mishandled)."""
    image = Image.new("I;16", (64, 48), value)
    return _save(image, "PNG")


def rgb16_png(value: int = 16384) -> bytes:
    """A 16-bit-per-channel RGB PNG, written by hand (Pillow cannot write one)."""
    width, height = 40, 30
    pixel = struct.pack(">HHH", value, value, value)
    raw = b"".join(b"\x00" + pixel * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return _png_chunks([(b"IHDR", header), (b"IDAT", zlib.compress(raw)), (b"IEND", b"")])


def _png_chunks(chunks: list[tuple[bytes, bytes]]) -> bytes:
    out = b"\x89PNG\r\n\x1a\n"
    for kind, data in chunks:
        out += struct.pack(">I", len(data)) + kind + data
        out += struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return out


def truncated_jpeg() -> bytes:
    data = jpeg(800, 600)
    return data[: len(data) // 2]


def bomb_png(side: int = 50_000) -> bytes:
    """A few hundred bytes of PNG that claim ``side`` x ``side`` pixels."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return _png_chunks(
        [(b"IHDR", header), (b"IDAT", zlib.compress(b"\x00" * 1024)), (b"IEND", b"")]
    )


def tiff() -> bytes:
    return _save(photo(100, 80), "TIFF")


def reference_thumbnail(data: bytes, box: int) -> Image.Image:
    """What a careful slow pipeline produces: full decode, orientation, thumbnail."""
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    image.thumbnail((box, box), Image.Resampling.LANCZOS, reducing_gap=None)
    return image


def mad(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel value (0-255) of two same-size RGB images."""
    from PIL import ImageChops

    assert a.size == b.size, (a.size, b.size)
    histogram = ImageChops.difference(a.convert("RGB"), b.convert("RGB")).histogram()
    total = sum((i % 256) * count for i, count in enumerate(histogram))
    return total / (a.width * a.height * 3)
