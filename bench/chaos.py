"""The chaos scenarios of tests/chaos at full size, on the product's default timers.

Each scenario uploads N photos through the signed form (8 upload threads, the fault fired
after 35 % of them), the client calls upload_done, and the script waits until every photo is
ready and the album's count and cover are exact. It prints one table row per scenario: photos
ready, extra rows (duplicates), photos missing, images_count, cover, Admin API calls against
the budget, the time from the fault clearing (and upload_done) to convergence, and the count's
lag behind the last photo ready. The baseline is the "no fault" row of the same run.

    python bench/chaos.py [--photos 500] [--database-url postgresql+psycopg://...] [--only SUBSTRING]

Everything runs on private processes: its own Redis, emulator, gunicorn, workers and beat;
SQLite in a temporary directory unless --database-url is given.
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

JWT_SECRET = "bench-jwt-secret-bench-jwt-secret-0123456789"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=500)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--only", default=None, help="run the scenarios whose name contains this")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up on a scenario after this long")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-chaos-"))
    database_url = args.database_url or f"sqlite:///{tmp / 'bench.db'}"
    os.environ.update({"APP_ENV": "bench", "DATABASE_URL": database_url, "JWT_SECRET": JWT_SECRET})
    from common.config import Settings
    from common.migrate import upgrade
    from tests.chaos.harness import SCENARIOS, ChaosStack, Outcome, run

    upgrade(database_url)
    # The product's defaults, but for ADMIN_BUDGET_RESERVE, which is capped at a tenth of the
    # emulator's budget anyway, and the io worker's Procfile concurrency. Named here: the e2e
    # stack underneath sets short timers of its own (a 4 s lease, heal every 1 s, a 20 s
    # visibility timeout), which the runs recorded up to commit 12a3242 used by mistake.
    defaults = Settings()
    timers = {"STAGE_LEASE": defaults.stage_lease, "HEAL_INTERVAL": defaults.heal_interval,
              "BROKER_VISIBILITY_TIMEOUT": defaults.broker_visibility_timeout,
              "CLOUDINARY_CALL_TIMEOUT": defaults.cloudinary_call_timeout,
              "RECOUNT_DEBOUNCE": defaults.recount_debounce, "RECONCILE_COALESCE": defaults.reconcile_coalesce}
    stack = ChaosStack(tmp, JWT_SECRET, settings={k: f"{v:g}" for k, v in timers.items()}, io_concurrency=16)
    scenarios = [s for s in SCENARIOS if not args.only or args.only in s.name]
    outcomes: list[Outcome] = []
    started = time.monotonic()
    try:
        stack.start()
        for scenario in scenarios:
            work = tmp / "photos"
            work.mkdir(exist_ok=True)
            outcome = run(stack, scenario, args.photos, work, timeout=args.timeout)
            outcomes.append(outcome)
            print(outcome.row(), flush=True)
    finally:
        stack.stop()

    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"database: {database_url.split(':', 1)[0]}; {args.photos} photos per scenario; "
          f"default timers ({', '.join(f'{k} {v:g} s' for k, v in timers.items())}); "
          f"{time.monotonic() - started:.0f} s in all")
    print(Outcome.HEADER)
    for outcome in outcomes:
        print(outcome.row())
    bad = [o for o in outcomes if o.ready != o.photos or o.missing or o.rows != o.photos or not o.cover_exact
           or o.images_count != o.photos or o.admin_calls > o.admin_budget]
    if bad:
        raise SystemExit(f"{len(bad)} scenario(s) did not converge: {[o.scenario for o in bad]}")


if __name__ == "__main__":
    main()
