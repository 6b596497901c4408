"""Albums of 1,000 / 10,000 / 50,000 photos (generated rows): what a duplicates answer and an
idle poll of the live page cost now, beside what they cost before, in the same run.

    python bench/album_scale.py [--sizes 1000,10000,50000] [--old-max 10000] [--with-reconcile]
    python bench/album_scale.py --shared 10,100,1000 [--baseline bc8b412]

- duplicates: ``GET /duplicates`` (default threshold 6, first page of 50 groups) answered from the
  index (``common/duplicates.py``), against the old answer: every live hashed image loaded and
  every pair compared (``pipeline.duplicate_groups``), run only up to ``--old-max`` photos
  (quadratic: 50,000 would take minutes);
- idle poll: what the live page fetched each second to learn that nothing changed — every page
  of ``/images`` (200 a page) — against one ``/changes?since=<cursor>``;
- ``--with-reconcile`` also runs ``bench/reconcile_scale.py`` (Admin calls of a reconcile after
  10 new uploads) with the same sizes.
- ``--shared K,...`` instead: albums of 200 random photos where K more photos arrive with one
  and the same pHash (a burst of identical frames; every all-black photo), indexed one by one as
  the workers do: the index rows stored, ``album.index_duplicates`` per photo (median of all K
  and of the last 10), and ``GET /duplicates``. ``--baseline REV`` runs the same with the code of
  git revision REV (a detached worktree in a temporary directory, removed after; its own
  database), e.g. the index that stored an edge per pair of images.

Requests go through the app in-process (Flask's test client, the real routes, auth and
serializers; no HTTP server), on SQLite in a temporary directory unless ``--database-url``.
Each photo row carries an analysis like the emulator's (faces, colours, EXIF, signed URLs); a
tenth of the photos are near-copies (1 to 6 bits) of an earlier one.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
#: The code measured: this tree, or a baseline's worktree (``--baseline`` sets it for its run).
CODE_ROOT = Path(os.environ.get("BENCH_CODE_ROOT") or ROOT)
sys.path.insert(0, str(CODE_ROOT))
#: The duplicates index's tables in any version of it, and which of them hold edges.
INDEX_TABLES = ("image_hashes", "album_hashes", "hash_edges", "duplicate_edges")
EDGE_TABLES = ("hash_edges", "duplicate_edges")
SHARED_BACKGROUND = 200


def _photo_row(album_id: str, n: int, phash: int, created: datetime) -> dict[str, Any]:
    public_id = f"{album_id}/photo-{n:06d}"
    url = f"http://127.0.0.1:9443/bench/image/authenticated/s--AbCdEfGh--/c_thumb,g_faces,h_256,w_256/v1/{public_id}.jpg"
    return {
        "album_id": album_id, "public_id": public_id, "asset_id": f"{album_id}-{n}", "version": 1700000000 + n,
        "type": "authenticated", "format": "jpg", "width": 4000, "height": 3000, "bytes": 3_500_000 + n,
        "faces": [[1200, 800, 400, 400]], "colors": [["#2B3A4C", 31.2], ["#D8C8B0", 22.5], ["#6F7F5A", 12.1]],
        "predominant": {"google": [["blue", 41.0], ["white", 30.2], ["green", 12.0]]},
        "phash": f"{phash:016x}",
        "image_metadata": {"Make": "Canon", "Model": "Canon EOS R6", "DateTimeOriginal": "2026:06:13 15:02:11",
                           "ExposureTime": "1/250", "FNumber": "2.8", "ISOSpeedRatings": "400"},
        "thumbnail_url": url, "preview_url": url.replace("c_thumb,g_faces,h_256,w_256", "c_limit,h_1280,w_1280"),
        "metadata_status": "done", "thumbnails_status": "done", "attempts": 0, "source": "webhook",
        "created_at": created, "updated_at": created, "change_seq": n + 1,
    }


def _seed(album_id: str, size: int, rng: random.Random, same_hash: int = 0) -> None:
    """``size`` photos, a tenth of them near-copies, then ``same_hash`` photos with the all-zero
    pHash (what every all-black photo has)."""
    from sqlalchemy import insert, update

    from common import db
    from common.models import Album, Image, Organization

    with db.session_scope() as session:
        org = Organization(name="bench")
        session.add(org)
        session.flush()
        session.add(Album(id=album_id, organization_id=org.id))
    hashes: list[int] = []
    start = datetime.now(timezone.utc) - timedelta(seconds=size + same_hash)
    rows = []
    for n in range(size):
        if hashes and rng.random() < 0.1:  # a near-copy (burst shot, re-upload) of an earlier photo
            value = rng.choice(hashes)
            for bit in rng.sample(range(64), rng.randint(1, 6)):
                value ^= 1 << bit
        else:
            value = rng.getrandbits(64)
        hashes.append(value)
        rows.append(_photo_row(album_id, n, value, start + timedelta(seconds=n)))
    rows += [_photo_row(album_id, n, 0, start + timedelta(seconds=n)) for n in range(size, size + same_hash)]
    engine = db.get_engine()
    with engine.begin() as conn:  # generated rows: straight in, numbered as the hook would number them
        for chunk in range(0, len(rows), 5000):
            conn.execute(insert(Image), rows[chunk:chunk + 5000])
        conn.execute(update(Album).where(Album.id == album_id).values(change_seq=len(rows)))


def _median_ms(run: Callable[[], Any], times: int) -> float:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def _old_duplicates(album_id: str, threshold: int) -> list[list[dict[str, Any]]]:
    """The endpoint as it was before the index: load every live hashed image, compare every pair."""
    from sqlalchemy import select

    from common import db, pipeline
    from common.models import Image

    with db.session_scope() as session:
        rows = session.scalars(select(Image).where(Image.album_id == album_id, Image.deleted_at.is_(None),
                                                   Image.phash.is_not(None)).order_by(Image.id)).all()
        return [[{"id": i.id, "public_id": i.public_id, "phash": i.phash, "thumbnail_url": i.thumbnail_url} for i in g]
                for g in pipeline.duplicate_groups(list(rows), threshold)]


def _index_rows(album_id: str) -> tuple[int, int]:
    """(edges, all rows) the album has in the duplicates index, whichever version of it runs."""
    from sqlalchemy import inspect, text

    from common import db

    engine = db.get_engine()
    present = [name for name in INDEX_TABLES if inspect(engine).has_table(name)]
    with engine.connect() as conn:
        counts = {name: conn.execute(text(f"SELECT count(*) FROM {name} WHERE album_id = :a"), {"a": album_id}).scalar()
                  for name in present}
    return sum(counts.get(name, 0) for name in EDGE_TABLES), sum(counts.values())


def _shared_hash_runs(ks: list[int], client: Any, jwt_secret: str) -> list[dict[str, Any]]:
    """For each K: an album of SHARED_BACKGROUND random photos (backfilled), then K photos with
    one pHash indexed one by one, each in its own transaction as the worker's task runs."""
    from common import db, duplicates, tokens

    rng = random.Random(16)
    results = []
    for k in ks:
        album_id = f"SHARED{k}"
        _seed(album_id, SHARED_BACKGROUND, rng, same_hash=k)
        with db.session_scope() as session:
            duplicates.index_album(session, album_id)
            blank = duplicates.groups(session, album_id, 0)[-1]
            assert len(blank) == k, "the identical photos are one group"
            duplicates.forget(session, album_id, blank)  # and arrive one by one below
        samples = []
        for image_id in blank:
            started = time.perf_counter()
            with db.session_scope() as session:
                duplicates.index_image(session, image_id)
            samples.append((time.perf_counter() - started) * 1000)
        edges, rows = _index_rows(album_id)
        token = tokens.issue_session("bench", {album_id: ("read",)}, jwt_secret, 3600)
        url = f"/api/v1/albums/{album_id}/duplicates"

        def get() -> Any:
            response = client.get(url, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200, response.get_data(as_text=True)[:300]
            return response

        assert k in [len(group) for group in get().get_json()["groups"]]
        results.append({"k": k, "edges": edges, "rows": rows, "index_ms": statistics.median(samples),
                        "last_ms": statistics.median(samples[-10:]), "index_s": sum(samples) / 1000,
                        "dup_ms": _median_ms(get, 5)})
        print(f"k={k}: {edges} edges, {rows} index rows, index {sum(samples) / 1000:.1f} s", flush=True)
    return results


def _baseline_runs(revision: str, ks: list[int], database_url: str | None) -> list[dict[str, Any]]:
    """``_shared_hash_runs`` with the code of ``revision``: this script in a child process whose
    imports come from a detached worktree of it, on a database of its own."""
    worktree = Path(tempfile.mkdtemp(prefix="bench-baseline-")) / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), revision],
                   check=True, capture_output=True)
    command = [sys.executable, __file__, "--shared", ",".join(map(str, ks)), "--json"]
    baseline_db = None
    if database_url:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        url = make_url(database_url)
        baseline_db = f"{url.database}_baseline"
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{baseline_db}"'))
            conn.execute(text(f'CREATE DATABASE "{baseline_db}"'))
        command += ["--database-url", url.set(database=baseline_db).render_as_string(hide_password=False)]
    try:
        done = subprocess.run(command, env={**os.environ, "BENCH_CODE_ROOT": str(worktree)}, check=True,
                              capture_output=True, text=True)
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=True)
        if baseline_db:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{baseline_db}" WITH (FORCE)'))
            admin.dispose()


def _print_shared(rows: list[tuple[str, dict[str, Any]]]) -> None:
    print("\nK photos with one pHash, indexed one by one after 200 others (album.index_duplicates)")
    print("| code | K | edges stored | index rows | per photo (median of K) | per photo (last 10) | all K | "
          "GET /duplicates |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for code, r in rows:
        print(f"| {code} | {r['k']} | {r['edges']:,} | {r['rows']:,} | {r['index_ms']:.1f} ms | {r['last_ms']:.1f} ms "
              f"| {r['index_s']:.1f} s | {r['dup_ms']:.1f} ms |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--old-max", type=int, default=10000, help="largest album the old brute force is run on")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary directory")
    parser.add_argument("--with-reconcile", action="store_true", help="also run bench/reconcile_scale.py")
    parser.add_argument("--shared", default=None, help="K,...: albums where K photos share one pHash, instead")
    parser.add_argument("--baseline", default=None, help="with --shared: also with the code of this git revision")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # a baseline's child: results only
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="bench-album-scale-"))
    os.environ.update({"APP_ENV": "bench", "DATABASE_URL": args.database_url or f"sqlite:///{tmp / 'bench.db'}",
                       "VIEW_COUNTING": "0", "JWT_SECRET": "bench-secret-bench-secret-bench-secret-0123"})
    from common import db, duplicates, tokens
    from common.config import get_settings
    from common.migrate import upgrade
    from common.models import Image
    from web import create_app

    upgrade(os.environ["DATABASE_URL"])
    settings = get_settings()
    client = create_app(settings).test_client()
    rng = random.Random(16)
    if args.shared:
        ks = [int(k) for k in args.shared.split(",")]
        if args.json:
            print(json.dumps(_shared_hash_runs(ks, client, settings.jwt_secret)))
            return
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"{db.get_engine().dialect.name}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
        rows = [("this tree", r) for r in _shared_hash_runs(ks, client, settings.jwt_secret)]
        if args.baseline:
            print(f"baseline: {args.baseline}", flush=True)
            rows += [(args.baseline, r) for r in _baseline_runs(args.baseline, ks, args.database_url)]
        _print_shared(rows)
        db.dispose(close=True)
        return
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{db.get_engine().dialect.name}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    results = []
    for size in sizes:
        album_id = f"SCALE{size}"
        token = tokens.issue_session("bench", {album_id: ("read",)}, settings.jwt_secret, 3600)
        headers = {"Authorization": f"Bearer {token}"}
        base = f"/api/v1/albums/{album_id}"

        def get(path: str, **query: Any) -> Any:
            response = client.get(base + path, query_string=query, headers=headers)
            assert response.status_code == 200, response.get_data(as_text=True)[:300]
            return response

        seeded = time.perf_counter()
        _seed(album_id, size, rng)
        seed_s = time.perf_counter() - seeded
        started = time.perf_counter()
        with db.session_scope() as session:
            duplicates.index_album(session, album_id)
        backfill_s = time.perf_counter() - started
        edges = _index_rows(album_id)[0]
        with db.session_scope() as session:
            groups_6 = len(duplicates.groups(session, album_id, 6))

        new_dup_ms = _median_ms(lambda: get("/duplicates"), 15)
        first_page = get("/duplicates").get_json()
        old_dup_ms = None
        if size <= args.old_max:
            old_dup_ms = _median_ms(lambda: _old_duplicates(album_id, 6), 3 if size <= 1000 else 1)
            old_groups = [[m["id"] for m in g] for g in _old_duplicates(album_id, 6)]
            with db.session_scope() as session:
                assert old_groups == duplicates.groups(session, album_id, 6), "index and brute force disagree"
        assert len(first_page["groups"]) == min(50, groups_6)

        # Idle poll: old, every /images page; new, one /changes from the current cursor.
        old_requests = old_bytes = 0
        started = time.perf_counter()
        cursor = None
        while True:
            page = get("/images", limit=200, **({"cursor": cursor} if cursor else {}))
            old_requests += 1
            old_bytes += len(page.get_data())
            cursor = page.get_json()["next_cursor"]
            if cursor is None:
                break
        old_poll_ms = (time.perf_counter() - started) * 1000
        since = get("/changes").get_json()["cursor"]
        idle = get("/changes", since=since)
        assert idle.get_json() == {"images": [], "deleted": [], "cursor": since, "more": False}
        new_poll_ms = _median_ms(lambda: get("/changes", since=since), 50)

        # What a worker's album.index_duplicates costs per new photo in an album this size.
        with db.session_scope() as session:
            arrivals = [Image(album_id=album_id, public_id=f"{album_id}/new-{k}", phash=f"{rng.getrandbits(64):016x}",
                              metadata_status="done", thumbnails_status="done") for k in range(20)]
            session.add_all(arrivals)
        index_samples = []
        for image in arrivals:
            started = time.perf_counter()
            with db.session_scope() as session:
                duplicates.index_image(session, image.id)
            index_samples.append((time.perf_counter() - started) * 1000)
        after_new = get("/changes", since=since).get_json()
        assert len(after_new["images"]) == 20 and after_new["more"] is False
        results.append({
            "size": size, "seed_s": seed_s, "backfill_s": backfill_s, "edges": edges, "groups": groups_6,
            "new_dup_ms": new_dup_ms, "old_dup_ms": old_dup_ms, "old_requests": old_requests, "old_bytes": old_bytes,
            "old_poll_ms": old_poll_ms, "new_bytes": len(idle.get_data()), "new_poll_ms": new_poll_ms,
            "index_ms": statistics.median(index_samples),
        })
        r = results[-1]
        print(f"{size} photos: seeded in {seed_s:.1f} s, index backfill {backfill_s:.1f} s, {edges} edges, "
              f"{groups_6} groups at threshold 6", flush=True)

    print("\nduplicates (GET /duplicates, threshold 6, first page; median)")
    print("| photos | index edges | groups | old: compare every pair | new: from the index | ratio new/old |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        old = f"{r['old_dup_ms']:.0f} ms" if r["old_dup_ms"] is not None else "not run (quadratic)"
        ratio = f"{r['new_dup_ms'] / r['old_dup_ms']:.4f}" if r["old_dup_ms"] else "—"
        print(f"| {r['size']} | {r['edges']} | {r['groups']} | {old} | {r['new_dup_ms']:.1f} ms | {ratio} |")
    print("\nidle poll of the live page (nothing changed)")
    print("| photos | old: every /images page | new: one /changes | ratio (requests, bytes, time) |")
    print("| --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['size']} | {r['old_requests']} requests, {r['old_bytes']:,} bytes, {r['old_poll_ms']:.0f} ms "
              f"| 1 request, {r['new_bytes']} bytes, {r['new_poll_ms']:.2f} ms "
              f"| {1 / r['old_requests']:.4f}, {r['new_bytes'] / r['old_bytes']:.6f}, {r['new_poll_ms'] / r['old_poll_ms']:.5f} |")
    print("\nalbum.index_duplicates per new photo (median of 20): "
          + ", ".join(f"{r['size']}: {r['index_ms']:.1f} ms" for r in results))
    print("index backfill (flask --app web albums index-duplicates): "
          + ", ".join(f"{r['size']}: {r['backfill_s']:.1f} s" for r in results))
    if args.with_reconcile:
        print("\nreconcile (bench/reconcile_scale.py, same sizes):", flush=True)
        subprocess.run([sys.executable, str(ROOT / "bench" / "reconcile_scale.py"), "--sizes", args.sizes], check=True)
    db.dispose(close=True)


if __name__ == "__main__":
    main()
