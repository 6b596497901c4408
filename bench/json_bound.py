"""The cost of bounding a JSON body (web/body.py) against parsing it unbounded, in one run.

Baseline: ``json.loads(raw)``, what the webhook did before. Measured: ``web.body.parse_json(raw)``
(UTF-8 decode, the depth scan, the same parse), and the full scan alone (what a body with more
brackets than ``MAX_JSON_DEPTH`` pays; fewer brackets skip it). Bodies: the notifications the emulator sends for
the fixture photos (an upload with faces, colours, pHash and EXIF, a few KiB), and a 1 MiB body
of many shallow arrays, the scan's worst case below the size limit.

    .venv/bin/python bench/json_bound.py [--number 2000]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cloudinary  # noqa: E402
import cloudinary.uploader  # noqa: E402

from cloudinary_emulator.testing import EmulatorProcess  # noqa: E402
from web.body import nesting_within, parse_json  # noqa: E402

PHOTOS = sorted((ROOT / "tests" / "fixtures" / "photos").glob("*.jpg"))


def notifications() -> list[tuple[str, bytes]]:
    """What Cloudinary (the emulator) posts to the webhook for each fixture photo."""
    with tempfile.TemporaryDirectory() as tmp, EmulatorProcess(Path(tmp) / "data") as emulator:
        cloudinary.config(**emulator.cloudinary_config())
        bodies = []
        for photo in PHOTOS:
            uploaded = cloudinary.uploader.upload(str(photo), type="authenticated", tags=["ALBUM"], colors=True,
                                                  faces=True, image_metadata=True, phash=True)
            bodies.append((photo.name, json.dumps({**uploaded, "notification_type": "upload"}).encode()))
    return bodies


def best(statement: object, number: int) -> float:
    return min(timeit.repeat(statement, number=number, repeat=5)) / number  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--number", type=int, default=2000, help="parses per timing (the 1 MiB body: number/100)")
    args = parser.parse_args()
    bodies = notifications()
    wide = json.dumps({"notification_type": "upload", "pairs": [[i, i + 1] for i in range(65_000)]}).encode()
    bodies.append(("1 MiB of [x, y] pairs", wide))
    print(f"{'body':<24} {'bytes':>8} {'[{':>6} {'json.loads':>11} {'parse_json':>11} {'ratio':>6} {'added':>9}"
          f" {'full scan':>10}")
    for name, raw in bodies:
        number = args.number if len(raw) < 100_000 else max(1, args.number // 100)
        base = best(lambda: json.loads(raw), number)
        bounded = best(lambda: parse_json(raw), number)
        brackets = raw.count(b"[") + raw.count(b"{")
        # The scan a body gets when it has more brackets than the limit (a limit just below its count).
        scan = best(lambda: nesting_within(raw, brackets - 1), number)
        print(f"{name:<24} {len(raw):>8} {brackets:>6} {base * 1e6:>9.1f}µs {bounded * 1e6:>9.1f}µs "
              f"{bounded / base:>6.2f} {(bounded - base) * 1e6:>7.1f}µs {scan * 1e6:>8.1f}µs")


if __name__ == "__main__":
    main()
