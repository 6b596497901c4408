"""The chaos suite: each fault of the reliability promise, staged as it comes, in the middle of
a burst of uploads through the signed form, on the real chain (gunicorn, a prefork fast worker
and a threads io worker as separate processes, beat, the emulator over HTTP, a real Redis that
is SIGKILLed and restarted empty). Each asserts what a user relies on and prints how long the
album took to converge. bench/chaos.py runs the same scenarios at N=500 on default timers.

Timers are shortened (a 5 s stage lease, heal every 2 s, Cloudinary calls time out after 5 s, and
the e2e stack's 20 s visibility timeout) so that the suite fits in CI; the mechanisms are the
production ones."""
from __future__ import annotations

from typing import Iterator

import pytest

from tests.chaos.harness import SCENARIOS, ChaosStack, Outcome, Scenario, run
from tests.conftest import TEST_JWT_SECRET

PHOTOS = 40
#: The bar: converged within this long of the fault clearing and the client's upload_done ...
CONVERGE_WITHIN = 60.0
#: ... and the count and cover exact within this long of the last photo ready.
COUNT_WITHIN = 30.0
SETTINGS = {
    "STAGE_LEASE": "5", "HEAL_INTERVAL": "2",
    "RECOUNT_DEBOUNCE": "2", "RECONCILE_COALESCE": "2", "ADMIN_BUDGET_RESERVE": "2",
    "CLOUDINARY_CALL_TIMEOUT": "5",
}


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosStack]:
    stack = ChaosStack(tmp_path_factory.mktemp("chaos"), TEST_JWT_SECRET, SETTINGS)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_every_photo_converges(chaos: ChaosStack, scenario: Scenario, tmp_path) -> None:
    outcome: Outcome = run(chaos, scenario, PHOTOS, tmp_path, timeout=CONVERGE_WITHIN + 60)
    print(f"\n{Outcome.HEADER}\n{outcome.row()}")
    if scenario.calls_time_out:
        print(f"worker calls that hung until they timed out: {outcome.calls_given_up}")
    assert outcome.missing == 0, outcome
    assert outcome.rows == PHOTOS, outcome  # each photo once
    # Every fault here is one a retry can outlast: nothing may end failed.
    assert outcome.failed == {}, outcome.failed
    assert outcome.ready == PHOTOS, outcome
    assert outcome.images_count == PHOTOS and outcome.cover_exact, outcome
    assert outcome.rate_limited == 0 and outcome.admin_calls <= outcome.admin_budget, outcome
    if scenario.calls_time_out:
        assert outcome.calls_given_up > 0, outcome  # the calls did wait out CLOUDINARY_CALL_TIMEOUT
    heals = scenario.converge_within_heals
    assert outcome.converged_after <= (heals * float(SETTINGS["HEAL_INTERVAL"]) if heals else CONVERGE_WITHIN), outcome
    assert outcome.count_lag <= COUNT_WITHIN, outcome


def test_delete_and_reprocess_with_redis_down_complete_once_it_is_back(chaos: ChaosStack, tmp_path) -> None:
    """Either complete or change nothing: with the broker gone, DELETE and reprocess still commit
    their intent and answer; heal carries them out once Redis is back (restarted empty)."""
    import time

    from common import db
    from common.models import Image
    from tests.e2e.stack import wait_for

    outcome = run(chaos, SCENARIOS[0], 3, tmp_path, timeout=60)
    assert outcome.ready == 3
    album = outcome.album
    images = chaos.images(album)
    victim, kept = images[0], images[1]
    destroys_before = chaos.emulator.stats()["calls"]["destroy"]
    explicit_before = chaos.emulator.stats()["calls"]["explicit"]
    chaos.redis.kill()
    try:
        deleted = chaos.api("DELETE", f"/api/v1/albums/{album}/images/{victim['id']}", album)
        assert deleted.status_code == 202, deleted.text
        redone = chaos.api("POST", f"/api/v1/albums/{album}/reprocess", album, json={"mode": "all"})
        assert redone.status_code == 202 and redone.json()["images"] == 2, redone.text
        assert [i["id"] for i in chaos.images(album)] == [kept["id"], images[2]["id"]]
        time.sleep(2)
    finally:
        chaos.redis.start()
    back = time.monotonic()

    def carried_out() -> bool:
        with db.session_scope() as session:
            gone = session.get(Image, victim["id"]).destroyed_at is not None
        stats = chaos.emulator.stats()["calls"]
        return gone and stats["destroy"] > destroys_before and stats["explicit"] >= explicit_before + 4

    wait_for(carried_out, CONVERGE_WITHIN, what="the destroy and the reprocess after Redis came back")
    assert all(i["status"] == "ready" for i in chaos.wait_all_ready(album, 2, timeout=CONVERGE_WITHIN))
    wait_for(lambda: chaos.album(album)["images_count"] == 2, COUNT_WITHIN, what="the count after the delete")
    print(f"\ndelete and reprocess carried out {time.monotonic() - back:.1f} s after Redis came back")

