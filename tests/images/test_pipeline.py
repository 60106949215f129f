"""The decode-once pipeline: geometry, orientation, colour, alpha, metadata and hostile files."""

from __future__ import annotations

import io
import warnings

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms

from taskapp.images import pipeline
from taskapp.images.errors import (
    CorruptImage,
    DecompressionBomb,
    NotAnImage,
    UnsupportedFormat,
)
from tests.images import samples

MAX_PIXELS = 64_000_000
FORMATS = pipeline.output_formats()


def render(data: bytes, sizes: list[int], formats: list[str]) -> list[pipeline.Variant]:
    decoded = pipeline.decode(data, max_pixels=MAX_PIXELS, largest=max(sizes))
    return pipeline.render(decoded, [(s, FORMATS[f]) for s in sizes for f in formats])


def opened(variant: pipeline.Variant) -> Image.Image:
    image = Image.open(io.BytesIO(variant.body))
    image.load()
    return image


@pytest.mark.parametrize(
    ("size", "box"), [((4000, 3000), 512), ((3000, 4000), 128), ((1000, 999), 100), ((7, 5000), 64)]
)
def test_fit_matches_pillows_thumbnail_rounding(size: tuple[int, int], box: int) -> None:
    # given an image size and a box; when fitted; then it equals what Image.thumbnail makes
    reference = Image.new("L", size)
    reference.thumbnail((box, box))
    assert pipeline.fit(*size, box) == reference.size


def test_sizes_fit_their_box_keep_aspect_and_never_upscale() -> None:
    # given a 1200x800 JPEG; when rendered at 128, 512 and 2000
    variants = render(samples.jpeg(1200, 800), [128, 512, 2000], ["jpeg"])
    # then each fits its box with a 3:2 aspect, and 2000 keeps the original size
    assert {(v.size, v.width, v.height) for v in variants} == {
        (128, 128, 85),
        (512, 512, 341),
        (2000, 1200, 800),
    }
    assert all(opened(v).size == (v.width, v.height) for v in variants)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("box", [96, 300])
def test_every_exif_orientation_is_applied_before_resizing(orientation: int, box: int) -> None:
    # given a JPEG whose pixels are stored transposed, displaying as a 1203x805 photo (not a
    # multiple of 8, so the JPEG draft's partial edge pixels must be transposed correctly too)
    data = samples.oriented_jpeg(orientation, 1203, 805)
    # when thumbnailed (96 px uses a 1/8 JPEG draft, 300 px a 1/2 draft)
    (variant,) = render(data, [box], ["png"])
    # then the output is upright: landscape, the red block top-left, and it matches a slow
    # full-resolution reference
    image = opened(variant).convert("RGB")
    assert image.width > image.height
    r, g, b = image.getpixel((2, 2))
    assert r > 180
    assert g < 80
    assert b < 80
    assert samples.mad(image, samples.reference_thumbnail(data, box)) < 2.0


def test_transparency_survives_in_png_webp_and_is_flattened_on_white_in_jpeg() -> None:
    # given a PNG whose left half is transparent and right half opaque blue
    variants = {v.format.name: opened(v) for v in render(samples.rgba_png(), [100], FORMATS)}
    for name in ("png", "webp", *(["avif"] if "avif" in FORMATS else [])):
        # then alpha-capable formats keep transparent and opaque halves
        image = variants[name].convert("RGBA")
        assert image.getpixel((5, 30))[3] == 0, name
        assert image.getpixel((95, 30))[3] == 255, name
    # and the JPEG shows white where the source was transparent
    left = variants["jpeg"].convert("RGB").getpixel((5, 30))
    assert min(left) > 245


def test_palette_with_transparency_becomes_rgba() -> None:
    # given a GIF with a transparent palette entry; when rendered as PNG
    (variant,) = render(samples.palette_gif(), [100], ["png"])
    image = opened(variant).convert("RGBA")
    # then the transparent half is transparent and the red half red
    assert image.getpixel((5, 5))[3] == 0
    assert image.getpixel((95, 5))[:3] == samples.RED


def test_animated_gif_renders_its_first_frame_as_a_still() -> None:
    # given a red, green, blue animation; when rendered as WebP
    (variant,) = render(samples.animated_gif(), [60], ["webp"])
    image = opened(variant)
    # then the variant is one still frame, red
    assert getattr(image, "n_frames", 1) == 1
    r, g, b = image.convert("RGB").getpixel((30, 20))
    assert r > 180
    assert g < 80
    assert b < 80


def test_cmyk_jpeg_is_converted_to_rgb() -> None:
    # given a CMYK JPEG that is pure red; when rendered
    (variant,) = render(samples.cmyk_jpeg(), [100], ["jpeg"])
    image = opened(variant)
    # then the output is RGB and red
    assert image.mode == "RGB"
    r, g, b = image.getpixel((50, 30))
    assert r > 200
    assert g < 60
    assert b < 60


@pytest.mark.parametrize(
    ("data", "expected"),
    [(samples.gray16_png(32768), 128), (samples.rgb16_png(16384), 64)],
    ids=["grey-16", "rgb-16"],
)
def test_16_bit_png_is_scaled_to_8_bits_not_clipped(data: bytes, expected: int) -> None:
    # given a 16-bit PNG of a mid value; when rendered
    (variant,) = render(data, [32], ["png"])
    # then the 8-bit output has the scaled value, not white
    value = opened(variant).convert("RGB").getpixel((5, 5))
    assert all(abs(channel - expected) <= 1 for channel in value)


def test_outputs_carry_only_an_srgb_profile_no_exif_gps_xmp_or_comment() -> None:
    # given a JPEG with camera EXIF, GPS, XMP and a comment
    for variant in render(samples.jpeg_with_metadata(), [128], list(FORMATS)):
        image = opened(variant)
        # then no metadata survives in any format
        assert not image.getexif(), variant.format.name
        assert not {"exif", "xmp", "comment", "XML:com.adobe.xmp"} & set(image.info)
        assert b"secret" not in variant.body
        # and an sRGB ICC profile is embedded
        profile = ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
        assert "sRGB" in ImageCms.getProfileDescription(profile)


def test_every_supported_output_format_decodes_to_its_own_type() -> None:
    # given a PNG source; when rendered in every supported format
    variants = render(samples.png(), [64], list(FORMATS))
    # then each body is the format it claims, with the stated size
    for variant in variants:
        image = opened(variant)
        assert image.format == variant.format.pil
        assert image.size == (variant.width, variant.height) == (64, 43)


def test_avif_is_offered_exactly_when_pillow_supports_it() -> None:
    from PIL import features

    assert ("avif" in FORMATS) == bool(features.check("avif"))


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"hello, this is text", NotAnImage, "not an image"),
        (b"", NotAnImage, "empty"),
        (samples.truncated_jpeg(), CorruptImage, "truncated"),
        (samples.bomb_png(), DecompressionBomb, "decompression bomb"),
        (samples.tiff(), UnsupportedFormat, "TIFF images are not supported"),
        (b"BM" + b"\x00" * 60, UnsupportedFormat, "BMP"),
        (
            b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
            UnsupportedFormat,
            "SVG",
        ),
    ],
    ids=["text", "empty", "truncated-jpeg", "bomb-png", "tiff", "bmp", "svg"],
)
def test_hostile_input_is_a_clear_permanent_error(
    data: bytes, error: type[Exception], message: str
) -> None:
    # given hostile or unsupported bytes; when decoded; then a specific permanent error
    with pytest.raises(error, match=message):
        pipeline.decode(data, max_pixels=MAX_PIXELS, largest=128)


@pytest.mark.parametrize(
    ("action", "message"),
    [
        # in the worker, Pillow's DecompressionBombWarning is an error (set by pipeline)
        ("error", "exceeds limit of 600000 pixels"),
        # and if something resets the warning filters, our own check still refuses
        ("ignore", "more than TASKAPP_MAX_IMAGE_PIXELS=600000"),
    ],
    ids=["pillow-warning-as-error", "own-check"],
)
def test_pixel_limit_refuses_pillows_warning_band_too(action: str, message: str) -> None:
    # given a 1200x800 JPEG (960,000 px) and a limit between half its size and its size,
    # where Pillow by default only warns; when decoded; then it is refused
    data = samples.jpeg(1200, 800)
    with warnings.catch_warnings():
        warnings.simplefilter(action, Image.DecompressionBombWarning)  # type: ignore[call-overload]
        with pytest.raises(DecompressionBomb, match=message):
            pipeline.decode(data, max_pixels=600_000, largest=128)


@pytest.mark.parametrize("orientation", range(2, 9))
def test_draft_box_follows_the_orientation_transposition(orientation: int) -> None:
    # given a 40x30 image whose region (3, 2)-(17, 12) is marked
    image = Image.new("L", (40, 30), 0)
    image.paste(255, (3, 2, 17, 12))
    # when the image is transposed for an EXIF orientation
    moved = image.transpose(pipeline.ORIENTATION[orientation])
    # then the transposed box is exactly where the marked region went
    box = pipeline._transpose_box((3, 2, 17, 12), image.size, orientation)
    assert moved.getbbox() == box


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_malformed_exif_is_ignored_not_fatal() -> None:
    # given a JPEG whose EXIF segment is garbage (an IFD pointing far outside the segment)
    jpeg = samples.jpeg(200, 150)
    junk = b"Exif\x00\x00MM\x00*\xff\xff\xff\xf0" + b"\x13" * 40
    data = jpeg[:2] + b"\xff\xe1" + (len(junk) + 2).to_bytes(2, "big") + junk + jpeg[2:]
    # when rendered; then it is treated as having no orientation and renders normally
    (variant,) = render(data, [100], ["jpeg"])
    assert (variant.width, variant.height) == (100, 75)


def test_embedded_non_srgb_profile_is_converted_and_replaced_by_srgb() -> None:
    # given a JPEG carrying an RGB profile that is not called sRGB (sRGB primaries, renamed,
    # so the expected pixels are known)
    srgb = pipeline.srgb_profile()
    other = srgb.replace("sRGB".encode("utf-16-be"), "wRGB".encode("utf-16-be"))
    source = Image.new("RGB", (64, 48), (200, 120, 40))
    buffer = io.BytesIO()
    source.save(buffer, "JPEG", quality=95, icc_profile=other)
    # when decoded and rendered
    decoded = pipeline.decode(buffer.getvalue(), max_pixels=MAX_PIXELS, largest=32)
    (variant,) = pipeline.render(decoded, [(32, FORMATS["png"])])
    # then the source profile was recognised, the colours kept, and the output says sRGB
    assert decoded.icc_description == "wRGB built-in"
    image = opened(variant)
    pixel = image.getpixel((16, 12))
    assert all(abs(a - b) <= 3 for a, b in zip(pixel, (200, 120, 40), strict=True))
    assert image.info["icc_profile"] == srgb


@pytest.mark.parametrize(
    ("size", "box", "upscale", "drafted"),
    [
        ((1000, 750), 125, 1.0, 125),  # 1/8 is exactly 125x94; Pillow's rounding would pick 1/4
        ((1000, 750), 128, 1.0, 250),  # 1/8 would be short: 1/4
        ((3000, 2000), 384, 1.0, 750),
        ((1000, 750), 128, 1.03, 125),  # the short draft: 1/8, 2.4% under the box
        ((3000, 2000), 384, 1.03, 375),
    ],
)
def test_a_jpeg_is_drafted_to_the_smallest_scale_the_upscale_limit_allows(
    size: tuple[int, int], box: int, upscale: float, drafted: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a JPEG and how far below the box a draft may fall
    monkeypatch.setattr(pipeline, "DRAFT_UPSCALE", upscale)
    data = samples.jpeg(*size)
    # when decoded for that box
    decoded = pipeline.decode(data, max_pixels=MAX_PIXELS, largest=box)
    # then it was drafted to the smallest DCT scale within the limit
    assert decoded.image.width == drafted
    # and the thumbnail made from it is the right size and close to a full-resolution reference
    (variant,) = pipeline.render(decoded, [(box, FORMATS["png"])])
    image = opened(variant).convert("RGB")
    assert image.size == pipeline.fit(*size, box)
    assert samples.mad(image, samples.reference_thumbnail(data, box)) < 2.0


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=1, max_value=900),
    st.integers(min_value=1, max_value=900),
    st.integers(min_value=1, max_value=1000),
    st.sampled_from([1.0, 1.03]),
)
@example(7, 900, 64, 1.0)  # a side narrower than the 1/8 scale
@example(1000, 750, 125, 1.0)
def test_any_jpeg_size_and_box_is_drafted_within_the_limit_and_fits_the_box(
    width: int, height: int, box: int, upscale: float
) -> None:
    # given a JPEG of any size; when decoded and rendered for any box
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 90, 30)).save(buffer, "JPEG")
    shipped, pipeline.DRAFT_UPSCALE = pipeline.DRAFT_UPSCALE, upscale
    try:
        decoded = pipeline.decode(buffer.getvalue(), max_pixels=MAX_PIXELS, largest=box)
    finally:
        pipeline.DRAFT_UPSCALE = shipped
    (variant,) = pipeline.render(decoded, [(box, FORMATS["jpeg"])])
    # then the decode is never further below the box than the limit, and the output fits it
    target = pipeline.fit(width, height, box)
    assert decoded.image.width * upscale >= target[0]
    assert decoded.image.height * upscale >= target[1]
    assert (variant.width, variant.height) == target
    assert opened(variant).size == target
