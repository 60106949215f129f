"""Decode an image once, safely, and render every requested size and format from it.

Speed comes from Pillow's fast paths:
- JPEG ``draft()`` asks libjpeg to decode at 1/2, 1/4 or 1/8 scale (DCT scaling), just large
  enough for the biggest variant, so a 12 MP photo is rarely decoded at full size.
- ``resize(..., reducing_gap=...)`` first shrinks by an integer factor with ``reduce()`` (a
  cheap box filter) and finishes with a proper filter over few pixels.
- The largest size is resized from the source with a Hamming filter (bilinear's cost, sharper);
  each smaller one from the largest result when that is still ``CHAIN_GAP`` times bigger, with
  bicubic. Measured against Pillow's thumbnail() per size (bench/images.py, 128/256/512): 14%
  less resize time than bicubic from the source and chaining from the previous size, and
  output closer to thumbnail()'s (mean pixel difference at most 1.71 instead of 1.90).

Correctness choices:
- EXIF orientation is applied to the decoded image before any resizing.
- Everything is converted to sRGB (embedded ICC profiles, CMYK and 16-bit inputs included) and
  saved with only an sRGB ICC profile: no EXIF, XMP, comments or text chunks survive.
- Transparency is kept for PNG, WebP and AVIF and flattened on white for JPEG.
- Animated GIF/WebP/PNG: only the first frame is rendered; variants are stills. Thumbnails of
  animations are previews, and re-encoding every frame multiplies cost and output size.
"""

from __future__ import annotations

import math
import struct
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from io import BytesIO
from typing import Any

from PIL import ExifTags, Image, ImageCms, UnidentifiedImageError, features

from taskapp.images.errors import (
    CorruptImage,
    DecompressionBomb,
    NotAnImage,
    UnsupportedFormat,
)

__all__ = [
    "OutputFormat",
    "Decoded",
    "Variant",
    "output_formats",
    "input_formats",
    "open_image",
    "decode",
    "render",
    "fit",
]

#: How far below the largest box a JPEG may be drafted, the rest made up by the resize. 1.0:
#: never. bench/images.py measures 1.03 beside it ("short-draft": a 4000 px photo at 1/8 is 500
#: px, enough for a 512 box): 15-25% faster, but a mean pixel difference from Pillow's own
#: thumbnail() of up to 2.66, over the limit of 2, so it is not what ships.
DRAFT_UPSCALE = 1.0
#: ``reducing_gap`` for resizing the decoded source: reduce() by an integer factor down to this
#: multiple of the target (cheap box filter), then finish with RESAMPLE.
REDUCING_GAP = 2.0
#: A smaller size is resized from the largest result if that is at least this multiple of it...
CHAIN_GAP = 2.0
#: ...with this reducing_gap: the source is small by then, so RESAMPLE can do all of the work,
#: which keeps small thumbnails as soft as Pillow's own thumbnail() makes them.
CHAIN_REDUCING_GAP = 3.0
RESAMPLE = Image.Resampling.BICUBIC
#: The filter from the (drafted, reduced) source to the largest size.
SOURCE_RESAMPLE = Image.Resampling.HAMMING
#: Bumped whenever output pixels or encoder settings change: it is part of every output key.
PIPELINE_VERSION = "3"
WHITE = (255, 255, 255)

# Pillow warns (instead of raising) between MAX_IMAGE_PIXELS and twice that; a warning is an
# error here, and open_image() also checks the limit itself.
warnings.simplefilter("error", Image.DecompressionBombWarning)

ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

#: Formats recognised only to say clearly that they are not supported.
_OTHER_SIGNATURES = [
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"%PDF", "PDF"),
    (b"%!PS", "PostScript"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"qoif", "QOI"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"DDS ", "DDS"),
    (b"\x76\x2f\x31\x01", "OpenEXR"),
]


@dataclass(frozen=True)
class OutputFormat:
    """How one output format is encoded and served."""

    name: str
    pil: str
    extension: str
    content_type: str
    options: tuple[tuple[str, Any], ...]
    alpha: bool

    def params(self) -> str:
        """The encoder parameters, as part of the output key."""
        return ",".join(f"{k}={v}" for k, v in self.options)


_FORMATS = {
    "jpeg": OutputFormat(
        "jpeg", "JPEG", "jpg", "image/jpeg", (("quality", 85), ("optimize", True)), False
    ),
    "png": OutputFormat("png", "PNG", "png", "image/png", (("compress_level", 6),), True),
    "webp": OutputFormat(
        "webp", "WEBP", "webp", "image/webp", (("quality", 80), ("method", 4)), True
    ),
    "avif": OutputFormat(
        "avif", "AVIF", "avif", "image/avif", (("quality", 60), ("speed", 8)), True
    ),
}


@cache
def output_formats() -> dict[str, OutputFormat]:
    """The formats variants can be written in; AVIF only if this Pillow build has it."""
    return {n: f for n, f in _FORMATS.items() if n != "avif" or features.check("avif")}


@cache
def input_formats() -> tuple[str, ...]:
    """The Pillow plugins a source may be decoded by; nothing else is even parsed."""
    names = ["JPEG", "PNG", "WEBP", "GIF"]
    return (*names, "AVIF") if features.check("avif") else tuple(names)


@cache
def srgb_profile() -> bytes:
    """The sRGB ICC profile embedded in every output."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@dataclass
class Decoded:
    """A source decoded once: oriented, in sRGB RGB/RGBA, perhaps at a JPEG draft scale."""

    image: Image.Image
    #: The region of ``image`` that maps to the whole source (a draft rounds its size up).
    box: tuple[float, float, float, float]
    format: str
    #: Full-resolution size after orientation: what the variants' sizes are computed from.
    width: int
    height: int
    mode: str
    frames: int
    orientation: int
    exif: Image.Exif
    icc_description: str | None = None
    has_alpha: bool = field(default=False)


@dataclass(frozen=True)
class Variant:
    """One rendered output."""

    size: int
    format: OutputFormat
    width: int
    height: int
    body: bytes


def fit(width: int, height: int, box: int) -> tuple[int, int]:
    """Size of ``width``x``height`` fitted in ``box``x``box``, rounded like Pillow's thumbnail."""
    if width <= box and height <= box:
        return width, height
    aspect = width / height
    if aspect >= 1:
        candidates = (math.floor(box / aspect), math.ceil(box / aspect))
        best = min(candidates, key=lambda n: 0 if n == 0 else abs(aspect - box / n))
        return box, max(best, 1)
    candidates = (math.floor(box * aspect), math.ceil(box * aspect))
    return max(min(candidates, key=lambda n: abs(aspect - n / box)), 1), box


def _unidentified(data: bytes) -> Exception:
    head = data[:32]
    for signature, name in _OTHER_SIGNATURES:
        if head.startswith(signature):
            return UnsupportedFormat(f"{name} images are not supported ({_accepted()})")
    if head[4:8] == b"ftyp":
        brand = head[8:12].decode("ascii", "replace").strip()
        return UnsupportedFormat(f"ISO media ({brand}) images are not supported ({_accepted()})")
    if b"<svg" in data[:1024].lower():
        return UnsupportedFormat(f"SVG images are not supported ({_accepted()})")
    return NotAnImage(f"not an image ({len(data)} bytes, starting {data[:8]!r})")


def _accepted() -> str:
    return "accepted: " + ", ".join(input_formats())


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Identify ``data`` and check its size; nothing is decoded yet."""
    if not data:
        raise NotAnImage("not an image (empty)")
    Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow's own guard, checked inside open()
    try:
        image = Image.open(BytesIO(data), formats=input_formats())
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecompressionBomb(f"decompression bomb refused: {exc}") from None
    except UnidentifiedImageError:
        raise _unidentified(data) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImage(f"corrupt image header: {exc}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise DecompressionBomb(
            f"decompression bomb refused: {width}x{height} is {width * height} pixels, "
            f"more than TASKAPP_MAX_IMAGE_PIXELS={max_pixels}"
        )
    return image


def decode(data: bytes, *, max_pixels: int, largest: int | None = None) -> Decoded:
    """Decode ``data`` once, large enough for variants up to ``largest`` px (None: full size)."""
    image = open_image(data, max_pixels)
    source_format, mode = str(image.format), image.mode
    frames = int(getattr(image, "n_frames", 1))
    exif = _read_exif(image)
    orientation = exif.get(ExifTags.Base.Orientation, 1)
    if orientation not in ORIENTATION:
        orientation = 1  # absent, "normal" or nonsense: show the pixels as stored
    stored = image.size
    box = (0.0, 0.0, float(stored[0]), float(stored[1]))
    request = _draft_request(stored, fit(*stored, largest)) if largest else None
    if source_format == "JPEG" and request is not None:
        drafted = image.draft(None, request)
        if drafted is not None:
            x0, y0, x1, y1 = drafted[1]  # the box of the drafted image in the original
            box = (float(x0), float(y0), float(x1), float(y1))
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecompressionBomb(f"decompression bomb refused: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImage(f"cannot decode the {source_format} image: {exc}") from None
    icc = image.info.get("icc_profile")
    image, description = _to_srgb(image, icc)
    has_alpha = image.mode == "RGBA"
    if orientation in ORIENTATION:
        box = _transpose_box(box, image.size, orientation)
        image = image.transpose(ORIENTATION[orientation])
    width, height = stored if orientation < 5 else stored[::-1]
    return Decoded(
        image,
        box,
        source_format,
        width,
        height,
        mode,
        frames,
        orientation,
        exif,
        description,
        has_alpha,
    )


def _draft_request(stored: tuple[int, int], target: tuple[int, int]) -> tuple[int, int] | None:
    """The size to ask ``draft()`` for, or None for a full decode.

    That is the smallest DCT scale (1/8, 1/4, 1/2) whose output, ``ceil(side / scale)``, is at
    most ``DRAFT_UPSCALE`` short of ``target`` on both sides. ``draft()`` picks its scale from
    ``side // requested``, so asking for ``side // scale`` gets exactly that scale.
    """
    for scale in (8, 4, 2):
        if all(
            side >= scale and -(-side // scale) * DRAFT_UPSCALE >= want
            for side, want in zip(stored, target, strict=True)
        ):
            return stored[0] // scale, stored[1] // scale
    return None


def _read_exif(image: Image.Image) -> Image.Exif:
    """The image's EXIF; empty if it is malformed (it is metadata, not a reason to fail)."""
    try:
        exif = image.getexif()
        exif.get_ifd(ExifTags.IFD.Exif)  # parse the sub-IFD now, while errors are caught here
        return exif
    except (OSError, SyntaxError, ValueError, KeyError, TypeError, struct.error):
        return Image.Exif()


def _to_srgb(image: Image.Image, icc: bytes | None) -> tuple[Image.Image, str | None]:
    """``image`` as 8-bit RGB or RGBA in sRGB, and the description of its own ICC profile."""
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        # 16-bit grey: scale to 8 bits (a plain convert("L") would clip everything above 255).
        image = image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    target = "RGBA" if _has_alpha(image) else "RGB"
    description = None
    if icc:
        try:
            profile = ImageCms.ImageCmsProfile(BytesIO(icc))
            description = ImageCms.getProfileDescription(profile).strip() or None
        except (ImageCms.PyCMSError, OSError):
            profile = None  # an unreadable profile: treat the pixels as sRGB
        if profile is not None and "srgb" not in (description or "").lower():
            converted = _apply_profile(image, profile, target)
            if converted is not None:
                return converted, description
    if image.mode == "P" and target == "RGBA":
        image = image.convert("RGBA")
    return (image if image.mode == target else image.convert(target)), description


def _apply_profile(
    image: Image.Image, profile: ImageCms.ImageCmsProfile, target: str
) -> Image.Image | None:
    source = image if image.mode in ("RGB", "RGBA", "CMYK", "L") else image.convert(target)
    try:
        return ImageCms.profileToProfile(
            source,
            profile,
            ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")),
            renderingIntent=ImageCms.Intent.PERCEPTUAL,
            outputMode=target,
        )
    except ImageCms.PyCMSError:
        return None  # profile does not match the pixel mode: fall back to a plain conversion


def _has_alpha(image: Image.Image) -> bool:
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return True
    return image.mode in ("P", "L", "RGB") and "transparency" in image.info


def _transpose_box(
    box: tuple[float, float, float, float], size: tuple[int, int], orientation: int
) -> tuple[float, float, float, float]:
    """``box`` (within an image of ``size``) after the transposition for ``orientation``."""
    w, h = size
    x0, y0, x1, y1 = box
    flips = {
        2: (w - x1, y0, w - x0, y1),
        3: (w - x1, h - y1, w - x0, h - y0),
        4: (x0, h - y1, x1, h - y0),
        5: (y0, x0, y1, x1),
        6: (h - y1, x0, h - y0, x1),
        7: (h - y1, w - x1, h - y0, w - x0),
        8: (y0, w - x1, y1, w - x0),
    }
    return flips[orientation]


def render(decoded: Decoded, plan: Iterable[tuple[int, OutputFormat]]) -> list[Variant]:
    """Every (size, format) of ``plan`` from one decoded source, largest size first."""
    by_size: dict[int, list[OutputFormat]] = {}
    for size, fmt in plan:
        by_size.setdefault(size, []).append(fmt)
    variants: list[Variant] = []
    largest: Image.Image | None = None
    for size in sorted(by_size, reverse=True):
        resized = _resize(decoded, fit(decoded.width, decoded.height, size), largest)
        if largest is None:
            largest = resized
        for fmt in by_size[size]:
            body = encode(resized, fmt)
            variants.append(Variant(size, fmt, resized.width, resized.height, body))
    return variants


def _resize(decoded: Decoded, target: tuple[int, int], largest: Image.Image | None) -> Image.Image:
    # Chaining from the largest result, not the previous one: a 128 from the 512 is closer to
    # what thumbnail() makes from the source than a 128 from a 256 made from that 512.
    if (
        largest is not None
        and largest.width >= target[0] * CHAIN_GAP
        and largest.height >= target[1] * CHAIN_GAP
    ):
        return largest.resize(target, RESAMPLE, reducing_gap=CHAIN_REDUCING_GAP)
    image, box = decoded.image, decoded.box
    if image.size == target and box == (0, 0, *target):
        return image
    return image.resize(target, SOURCE_RESAMPLE, box=box, reducing_gap=REDUCING_GAP)


def encode(image: Image.Image, fmt: OutputFormat) -> bytes:
    """``image`` in ``fmt`` with only an sRGB profile: no EXIF, XMP, text or comments."""
    if image.mode == "RGBA" and not fmt.alpha:
        flat = Image.new("RGB", image.size, WHITE)
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    image.info = {}  # nothing from the source is carried into the output
    buffer = BytesIO()
    image.save(buffer, fmt.pil, icc_profile=srgb_profile(), **dict(fmt.options))
    return buffer.getvalue()
