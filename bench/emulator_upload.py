"""Uploads per second to the Cloudinary emulator, with analysis, against a bare upload baseline.

For a 0.3 MP and a 2 MP photo (made from the fixtures, so nothing is downloaded), one emulator
process, the official SDK over HTTP, N sequential uploads each way:

- baseline: the same bytes uploaded as ``raw`` (same HTTP, form parsing, signature check,
  storage and answer, but no decoding and no analysis: the emulator analyses every image at
  upload, whatever the flags, so an image upload without flags is no baseline);
- with analysis: ``faces``, ``colors``, ``phash``, ``image_metadata`` (what the product's
  signed form asks for).

Prints uploads/s, ms per upload (median), and the ratio, plus where the analysis time goes
(measured in-process on the same image).

    .venv/bin/python bench/emulator_upload.py --uploads 30
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cloudinary
import cloudinary.uploader
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cloudinary_emulator import analysis  # noqa: E402
from cloudinary_emulator.testing import EmulatorProcess  # noqa: E402

ANALYSIS = {"faces": True, "colors": True, "phash": True, "image_metadata": True}


def photo(megapixels: float) -> bytes:
    """A JPEG of about ``megapixels`` from the astronaut fixture (it has a face to find)."""
    source = Image.open(ROOT / "tests" / "fixtures" / "photos" / "astronaut.jpg").convert("RGB")
    side = round((megapixels * 1_000_000) ** 0.5)
    buffer = io.BytesIO()
    source.resize((side, side), Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


RAW = {"resource_type": "raw"}


def timed_uploads(data: bytes, count: int, options: dict[str, object]) -> list[float]:
    times = []
    for n in range(count):
        started = time.perf_counter()
        cloudinary.uploader.upload(data, public_id=f"bench/{n}", **options)
        times.append(time.perf_counter() - started)
    return times


def breakdown(data: bytes) -> str:
    """CPU milliseconds of each analysis step on this image, in-process (median of 5).

    CPU time, not wall time: on a shared machine it is what an idle one would take for this
    single-threaded work (OpenCV runs one thread per request here)."""
    steps = {
        "decode": lambda: analysis.open_image(data),
        "analyse (all)": lambda: analysis.analyse(data),
    }
    image = analysis.open_image(data).convert("RGB")
    steps.update({
        "faces": lambda: analysis.detect_faces(image),
        "colors": lambda: analysis.dominant_colors(image),
        "phash": lambda: analysis.imagehash.phash(image),
    })
    parts = []
    for name, step in steps.items():
        runs = []
        for _ in range(5):
            started = time.process_time()
            step()
            runs.append(time.process_time() - started)
        parts.append(f"{name} {statistics.median(runs) * 1000:.1f} ms")
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=30, help="uploads per case and side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmulatorProcess(Path(tmp) / "data") as emu:
        cloudinary.config(**emu.cloudinary_config())
        for megapixels in (0.3, 2.0):
            data = photo(megapixels)
            timed_uploads(data, 3, ANALYSIS)  # warm-up: imports, cascade load, caches
            # Alternate the two sides in halves so a busy machine moves both alike.
            half = max(1, args.uploads // 2)
            bare = timed_uploads(data, half, RAW)
            full = timed_uploads(data, half, ANALYSIS)
            bare += timed_uploads(data, half, RAW)
            full += timed_uploads(data, half, ANALYSIS)
            bare_ms, full_ms = statistics.median(bare) * 1000, statistics.median(full) * 1000
            print(f"{megapixels} MP ({len(data) // 1024} KB JPEG), {len(bare)} uploads each:")
            print(f"  raw upload      {1000 / bare_ms:6.1f} uploads/s  {bare_ms:6.1f} ms median")
            print(f"  with analysis   {1000 / full_ms:6.1f} uploads/s  {full_ms:6.1f} ms median"
                  f"  (p90 {sorted(full)[int(len(full) * 0.9) - 1] * 1000:.1f} ms)")
            print(f"  ratio analysed/raw throughput: {bare_ms / full_ms:.2f}")
            print(f"  in-process CPU time: {breakdown(data)}")


if __name__ == "__main__":
    main()
