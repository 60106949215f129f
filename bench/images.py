"""Benchmark: our thumbnail pipeline against the naive one, measured in the same run.

    uv run python bench/images.py [--images 4] [--rounds 3] [--sizes 128,256,512 ...]

Test set: 12-megapixel (4000x3000) JPEGs made with Pillow (gradients, shapes, sensor-like noise;
quality 90, like a phone photo), held in memory, as a worker holds a downloaded source.

- naive: for each size, ``Image.open`` -> ``thumbnail((n, n))`` -> ``save`` (Pillow's
  thumbnail already uses a JPEG draft with reducing_gap=2, so this is not a straw man).
- ours: ``pipeline.decode`` once (draft sized for the largest box) -> ``pipeline.render`` for
  every size (chained resizes), with EXIF orientation, sRGB handling and metadata stripping.

- short-draft: ours, but a JPEG may be drafted up to 3% below the largest box and the resize
  makes up the rest (``pipeline.DRAFT_UPSCALE``; the product ships 1.0; 1.03 is the limit of that
  option in issue 16).

Each is measured beside ours on the same images, so that the choice between them is a
measurement.
- vips (only if pyvips imports: ``uv run --with pyvips --with pyvips-binary python
  bench/images.py``): libvips' ``thumbnail_buffer`` for the largest size (shrink-on-load,
  sRGB export) and ``thumbnail_image`` from it for the rest, metadata stripped: the resampler
  issue 16 offered instead of Pillow.

Both write JPEG with the same encoder settings. Rounds alternate the order of the pipelines so other
load on the machine hits them alike. Prints images/s for each, their ratio (target >= 3x),
the mean absolute pixel difference of the outputs (target <= 2 on 0-255), and the peak RSS of a
fresh process running the worker's code on a 12 MP image (target < 300 MB). Exits 1 when a
target is missed.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image, ImageChops, ImageDraw, ImageFilter  # noqa: E402

from taskapp.images import pipeline  # noqa: E402

WIDTH, HEIGHT = 4000, 3000
MAX_PIXELS = 64_000_000
SHORT_DRAFT = 1.03
RATIO_TARGET = 3.0
MAD_TARGET = 2.0
RSS_TARGET_MB = 300
DEFAULT_SIZE_SETS = ["128,256,512", "128,512,1024", "256,512,1024"]


def make_photo(seed: int, noise: float) -> bytes:
    """A 12 MP photo-like JPEG: smooth light, objects with edges, fine texture and noise."""
    rnd = random.Random(seed)
    small = (WIDTH // 8, HEIGHT // 8)
    channels = [
        Image.linear_gradient("L").rotate(rnd.choice([0, 90, 180, 270])).resize(small),
        Image.radial_gradient("L").resize(small),
        Image.effect_noise(small, 50).filter(ImageFilter.GaussianBlur(6)),
    ]
    image = Image.merge("RGB", channels).resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(120):
        x, y, s = rnd.randrange(WIDTH), rnd.randrange(HEIGHT), rnd.randrange(30, 600)
        colour = tuple(rnd.randrange(256) for _ in range(3))
        shape = draw.ellipse if rnd.random() < 0.5 else draw.rectangle
        shape((x, y, x + s, y + s * rnd.uniform(0.3, 1.5)), fill=colour)
    for _ in range(400):  # thin lines: detail that a bad resize would alias
        x, y = rnd.randrange(WIDTH), rnd.randrange(HEIGHT)
        draw.line(
            (x, y, x + rnd.randrange(-300, 300), y + rnd.randrange(-300, 300)),
            width=2,
            fill=tuple(rnd.randrange(256) for _ in range(3)),
        )
    grain = Image.effect_noise((WIDTH, HEIGHT), noise).convert("RGB")
    image = ImageChops.add(image, grain, scale=1.0, offset=-128)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def naive(data: bytes, sizes: list[int], options: dict) -> list[bytes]:
    outputs = []
    for size in sizes:
        image = Image.open(io.BytesIO(data))
        image.thumbnail((size, size))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", **options)
        outputs.append(buffer.getvalue())
    return outputs


def ours(data: bytes, sizes: list[int], fmt: pipeline.OutputFormat) -> list[bytes]:
    decoded = pipeline.decode(data, max_pixels=MAX_PIXELS, largest=max(sizes))
    variants = pipeline.render(decoded, [(size, fmt) for size in sizes])
    by_size = {v.size: v.body for v in variants}
    return [by_size[size] for size in sizes]


def ours_short_draft(data: bytes, sizes: list[int], fmt: pipeline.OutputFormat) -> list[bytes]:
    """Ours with a JPEG draft allowed 3% below the largest box (issue 16's other option)."""
    shipped, pipeline.DRAFT_UPSCALE = pipeline.DRAFT_UPSCALE, SHORT_DRAFT
    try:
        return ours(data, sizes, fmt)
    finally:
        pipeline.DRAFT_UPSCALE = shipped


try:
    import pyvips  # type: ignore[import-untyped]
except ImportError:  # the usual case: the product uses Pillow
    pyvips = None


def vips(data: bytes, sizes: list[int], options: dict) -> list[bytes]:
    """libvips the way ours works: one shrink-on-load decode for the largest, then the rest."""
    # copy_memory: the thumbnail is a lazy sequential pipeline, read once per output otherwise
    largest = pyvips.Image.thumbnail_buffer(data, max(sizes), export_profile="srgb").copy_memory()
    outputs = {}
    for size in sorted(sizes, reverse=True):
        image = largest if size == max(sizes) else largest.thumbnail_image(size)
        outputs[size] = image.jpegsave_buffer(
            Q=options["quality"], optimize_coding=bool(options.get("optimize")), keep="none"
        )
    return [outputs[size] for size in sizes]


def mad(a: bytes, b: bytes) -> float:
    """Mean absolute difference per channel value (0-255) of two decoded outputs."""
    x, y = Image.open(io.BytesIO(a)).convert("RGB"), Image.open(io.BytesIO(b)).convert("RGB")
    assert x.size == y.size, (x.size, y.size)
    histogram = ImageChops.difference(x, y).histogram()
    return sum((i % 256) * n for i, n in enumerate(histogram)) / (x.width * x.height * 3)


def best_ms(action, rounds: int = 7) -> float:
    """Best-of wall time of ``action()`` in milliseconds (the CPU cost without other load)."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def draft_decode(data: bytes, scale: int) -> None:
    image = Image.open(io.BytesIO(data))
    image.draft(None, (WIDTH // scale, HEIGHT // scale))
    image.load()


def breakdown(data: bytes, sizes: list[int]) -> dict[str, float]:
    """Where our time goes for ``sizes``, against the naive pipeline on the same image."""
    fmt = pipeline.output_formats()["jpeg"]
    plan = [(size, fmt) for size in sizes]

    def decode() -> pipeline.Decoded:
        return pipeline.decode(data, max_pixels=MAX_PIXELS, largest=max(sizes))

    decoded = decode()
    return {
        "naive": best_ms(lambda: naive(data, sizes, dict(fmt.options))),
        "decode": best_ms(decode),
        "render": best_ms(lambda: pipeline.render(decoded, plan)),
    }


def compare(images: list[bytes], sizes: list[int], rounds: int) -> dict:
    """Time each pipeline on every image ``rounds`` times; compare outputs with naive's."""
    fmt = pipeline.output_formats()["jpeg"]
    options = dict(fmt.options)
    runs = {
        "naive": lambda data: naive(data, sizes, options),
        "ours": lambda data: ours(data, sizes, fmt),
    }
    runs["short-draft"] = lambda data: ours_short_draft(data, sizes, fmt)
    if pyvips is not None:
        runs["vips"] = lambda data: vips(data, sizes, options)
    diffs: dict[str, list[float]] = {name: [] for name in runs if name != "naive"}
    for data in images:  # warm-up, and the pixel comparison
        reference = runs["naive"](data)
        for name, found in diffs.items():
            found += [mad(a, b) for a, b in zip(reference, runs[name](data), strict=True)]
    # Each round runs one pipeline over every image, then the next (the order reverses every
    # round), so each runs after itself, as in a worker: run image by image, ours paid for the
    # caches and heap naive's full-size decodes had just churned (~10% here).
    times: dict[str, list[list[float]]] = {name: [[] for _ in images] for name in runs}
    for round_ in range(rounds):
        for name in sorted(runs, reverse=bool(round_ % 2)):
            for data, seconds in zip(images, times[name], strict=True):
                start = time.perf_counter()
                runs[name](data)
                seconds.append(time.perf_counter() - start)
    # Other processes share this CPU: the median is what we saw, best-of is the CPU cost.
    median = {name: sum(map(statistics.median, t)) for name, t in times.items()}
    best = {name: sum(map(min, t)) for name, t in times.items()}
    return {
        name: {
            "ips": len(images) / median[name],
            "ratio_median": median["naive"] / median[name],
            "ratio_best": best["naive"] / best[name],
            "mad_mean": statistics.fmean(diffs[name]) if name in diffs else 0.0,
            "mad_max": max(diffs[name]) if name in diffs else 0.0,
        }
        for name in runs
    }


RSS_PROBE = """
import json, sys


def hwm_mb():
    # VmHWM is this process's own peak RSS. (getrusage's ru_maxrss is not: Linux carries the
    # parent's peak across fork+exec, so it would report the benchmark's own memory.)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024


from taskapp.images import pipeline  # what the worker imports for images.thumbnails
from taskapp.images.tasks import make_thumbnails  # noqa: F401  (Celery app, task registry)
data = open(sys.argv[1], "rb").read()
before = hwm_mb()
sizes = [int(s) for s in sys.argv[2].split(",")]
plan = [(s, f) for s in sizes for f in pipeline.output_formats().values() if f.name in sys.argv[3]]
decoded = pipeline.decode(data, max_pixels=64_000_000, largest=max(sizes))
pipeline.render(decoded, plan)
print(json.dumps({"before_mb": before, "peak_mb": hwm_mb()}))
"""


def peak_rss(path: Path, sizes: str, formats: str) -> dict:
    """Peak RSS of a fresh process importing the worker's code and processing one image."""
    out = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, str(path), sizes, formats],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", action="append", help="comma-separated boxes; repeatable")
    args = parser.parse_args()
    size_sets = [[int(s) for s in spec.split(",")] for spec in (args.sizes or DEFAULT_SIZE_SETS)]

    started = time.perf_counter()
    images = [make_photo(seed, noise=(6, 10, 14, 8)[seed % 4]) for seed in range(args.images)]
    mb = sum(len(d) for d in images) / len(images) / 1e6
    print(
        f"test set: {len(images)} JPEGs, {WIDTH}x{HEIGHT} (12 MP), q90, mean {mb:.1f} MB; "
        f"made in {time.perf_counter() - started:.1f}s"
    )
    print(
        f"{'sizes':<16}{'pipeline':<10}{'img/s':>8}{'ratio':>8}{'best-of':>9}"
        f"{'MAD mean':>10}{'MAD max':>9}"
    )
    missed: list[str] = []
    for sizes in size_sets:
        label = ",".join(map(str, sizes))
        for name, r in compare(images, sizes, args.rounds).items():
            print(
                f"{label:<16}{name:<10}{r['ips']:>8.2f}{r['ratio_median']:>7.2f}x"
                f"{r['ratio_best']:>8.2f}x{r['mad_mean']:>10.2f}{r['mad_max']:>9.2f}"
            )
            if name == "ours" and r["ratio_median"] < RATIO_TARGET:
                missed.append(f"{label}: {r['ratio_median']:.2f}x naive < {RATIO_TARGET}x")
            if name == "ours" and r["mad_max"] > MAD_TARGET:
                missed.append(f"{label}: MAD {r['mad_max']:.2f} > {MAD_TARGET}")
    print(
        "img/s and ratio (to naive): per-image medians over rounds; best-of: each image's fastest "
        f"round (the CPU cost without other load). Targets for ours: ratio >= {RATIO_TARGET}x, "
        f"MAD max <= {MAD_TARGET}."
    )

    # The 3x target is bounded by libjpeg: a draft decode at 1/8 scale still entropy-decodes
    # every coefficient, so it costs a large share of a full decode. Naive pays that floor once
    # per size; we pay it once. Printed so that the bound is measured, not asserted.
    for sizes in size_sets:
        b = breakdown(images[0], sizes)
        print(
            f"{','.join(map(str, sizes))}: ours = decode {b['decode']:.0f} ms + resize/encode "
            f"{b['render']:.0f} ms; naive {b['naive']:.0f} ms; ratio bound with free "
            f"resize/encode {b['naive'] / b['decode']:.2f}x"
        )
    eighth = best_ms(lambda: draft_decode(images[0], 8))
    full = best_ms(lambda: draft_decode(images[0], 1))
    print(
        f"libjpeg floor: a 1/8-scale draft decode costs {eighth:.0f} ms, "
        f"{eighth / full:.0%} of a full decode ({full:.0f} ms)"
    )

    path = Path("/tmp") / f"taskapp-bench-12mp-{time.time_ns()}.jpg"
    path.write_bytes(images[0])
    try:
        for sizes, formats, label in [
            ("128,512", "jpeg,webp", "defaults (128,512 jpeg+webp)"),
            ("4000", "jpeg,webp", "full size (no draft: worst case)"),
        ]:
            rss = peak_rss(path, sizes, formats)
            print(
                f"peak RSS, 12 MP, {label}: {rss['peak_mb']:.0f} MB "
                f"(after imports {rss['before_mb']:.0f} MB; target < {RSS_TARGET_MB} MB)"
            )
            if rss["peak_mb"] >= RSS_TARGET_MB:
                missed.append(f"peak RSS {label}: {rss['peak_mb']:.0f} MB")
    finally:
        path.unlink(missing_ok=True)
    for miss in missed:
        print(f"NOT met: {miss}")
    if missed:
        sys.exit(1)
    print("all targets met")


if __name__ == "__main__":
    main()
