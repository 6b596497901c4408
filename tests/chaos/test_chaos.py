"""The chaos suite: each fault of the reliability promise, staged as it comes, in the middle of
a burst of uploads through the signed form, on the real chain (gunicorn, a prefork fast worker
and a threads io worker as separate processes, beat, the emulator over HTTP, a real Redis that
is SIGKILLed and restarted empty). Each asserts what a user relies on and prints how long the
album took to converge. bench/chaos.py runs the same scenarios at N=500 on default timers.

Timers are shortened (a 5 s stage lease, heal every 2 s; the visibility timeout is the default 120 s) so that the
suite fits in CI; the mechanisms are the production ones."""
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
    assert outcome.missing == 0, outcome
    assert outcome.rows == PHOTOS, outcome  # each photo once
    # Every fault here is one a retry can outlast: nothing may end failed.
    assert outcome.failed == {}, outcome.failed
    assert outcome.ready == PHOTOS, outcome
    assert outcome.images_count == PHOTOS and outcome.cover_exact, outcome
    assert outcome.rate_limited == 0 and outcome.admin_calls <= outcome.admin_budget, outcome
    assert outcome.converged_after <= CONVERGE_WITHIN, outcome
    assert outcome.count_lag <= COUNT_WITHIN, outcome
