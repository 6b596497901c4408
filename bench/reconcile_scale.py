"""Admin API calls per reconcile as the album grows: a full walk of the album's tag (what every
reconcile cost before it became incremental: one call per 500 photos) against the incremental
reconcile after 10 new uploads, in the same run.

    python bench/reconcile_scale.py [--sizes 1000,10000,50000]

The emulator is seeded through its bulk test path (one stored image shared by every asset, one
asset every 2 s up to now), the database gets the same photos as rows, and the reconcile task's
pages run in this process against the emulator over HTTP with the official SDK.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,50000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    import services

    tmp = Path(tempfile.mkdtemp(prefix="bench-reconcile-"))
    redis_url, redis_proc = services.start_private_redis(tmp / "redis")
    os.environ.update({"APP_ENV": "bench", "DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}",
                       "CELERY_BROKER_URL": redis_url, "REDIS_URL": redis_url, "ADMIN_BUDGET_RESERVE": "0"})
    from cloudinary_emulator.testing import EmulatorProcess
    from common import db
    from common.config import get_settings
    from common.migrate import upgrade
    from common.models import Album, Image, Organization
    from tasks import pipeline as tasks

    upgrade(os.environ["DATABASE_URL"])
    rows = []
    with EmulatorProcess(tmp / "cloudinary", extra_args=["--admin-budget", "100000"]) as emu:
        settings = get_settings().with_overrides(cloudinary_url=emu.cloudinary_url)
        tasks.get_settings = lambda: settings  # the emulator's URL for the task's Cloudinary calls

        def calls() -> int:
            return emu.stats()["calls"]["admin_resources_by_tag"]

        def reconcile(album_id: str, full: bool) -> float:
            started = time.monotonic()
            while True:
                tasks.reconcile.run(album_id, full=full)
                with db.session_scope() as session:
                    if session.get(Album, album_id).reconcile_progress is None:
                        return time.monotonic() - started

        for size in sizes:
            album_id = f"BENCH{size}"
            with db.session_scope() as session:
                org = Organization(name="bench")
                session.add(org)
                session.flush()
                session.add(Album(id=album_id, organization_id=org.id))
            now = time.time()
            emu.seed(size, tags=[album_id], prefix=f"{album_id}/old/", type="authenticated",
                     start=now - size * 2, interval=2)
            with db.session_scope() as session:
                session.bulk_save_objects([
                    Image(album_id=album_id, public_id=f"{album_id}/old/{i}", metadata_status="done",
                          thumbnails_status="done") for i in range(size)])
            before = calls()
            full_time = reconcile(album_id, full=True)
            full_calls = calls() - before
            emu.seed(10, tags=[album_id], prefix=f"{album_id}/new/", type="authenticated", start=time.time(),
                     interval=0.1)
            before = calls()
            incremental_time = reconcile(album_id, full=False)
            incremental_calls = calls() - before
            rows.append((size, full_calls, full_time, incremental_calls, incremental_time))
            print(f"{size}: full {full_calls} calls {full_time:.1f} s, incremental {incremental_calls} calls "
                  f"{incremental_time:.2f} s", flush=True)
    redis_proc.terminate()

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; SQLite")
    print("| photos in the album | full walk (every reconcile before) | incremental, 10 new uploads | ratio |")
    print("| --- | --- | --- | --- |")
    for size, full_calls, full_time, inc_calls, inc_time in rows:
        print(f"| {size} | {full_calls} Admin calls, {full_time:.1f} s | {inc_calls} Admin call(s), {inc_time:.2f} s "
              f"| {inc_calls / full_calls:.3f} |")


if __name__ == "__main__":
    main()
