"""The Redis-backed helpers: the recount/reconcile gate, the Admin budget, the heal lease and
the broker-loss check (fakeredis for the logic, the suite's real Redis where Redis itself is
what is tested)."""
from __future__ import annotations

import pickle
import time
from concurrent.futures import ThreadPoolExecutor

import fakeredis
import pytest
import redis

from common.cloudinary_client import PermanentError, RateLimitedError, TransientError
from common.coordination import AdminBudget, BrokerEpoch, CloudinaryOutage, Gate, Lease


@pytest.fixture
def r():
    return fakeredis.FakeRedis()


def test_gate_lets_one_claim_through_until_the_run_releases_it(r):
    gate = Gate("test", r)
    assert gate.claim("album", delay=5)
    assert not gate.claim("album", delay=5)  # a run is already scheduled
    assert gate.claim("other", delay=5)  # per album
    gate.release("album")  # the run starts: changes after this need a new run
    assert gate.claim("album", delay=5)


def test_a_burst_of_claims_schedules_one_run(r):
    gate = Gate("burst", r)
    with ThreadPoolExecutor(16) as pool:
        wins = sum(pool.map(lambda _: gate.claim("album", delay=5), range(200)))
    assert wins == 1


def test_a_lost_run_stops_holding_the_gate_shortly_after_it_was_due(r):
    # The run was due after 0.05 s; its message is lost (a killed worker holds it for the broker's
    # visibility timeout): the gate lapses `grace` later, not an hour later.
    gate = Gate("lost", r, grace=0.1)
    assert gate.claim("album", delay=0.05)
    assert not gate.claim("album", delay=0.05)
    time.sleep(0.2)
    assert gate.claim("album", delay=0.05)


def test_hold_keeps_the_gate_shut_while_a_run_waits(r):
    gate = Gate("hold", r, grace=0.05)
    assert gate.claim("album", delay=0)
    gate.hold("album", 0.3)  # e.g. a reconcile waiting for the Admin budget
    time.sleep(0.15)
    assert not gate.claim("album", delay=0)
    time.sleep(0.3)
    assert gate.claim("album", delay=0)


def test_an_unknown_budget_lets_one_probe_through_at_a_time(r):
    budget = AdminBudget(r)
    with ThreadPoolExecutor(8) as pool:
        waits = list(pool.map(lambda _: budget.acquire(), range(20)))
    assert waits.count(0.0) == 1  # one call learns the budget; the others wait ~1 s for its answer
    assert all(0 < w <= 1.5 for w in waits if w)
    budget.record(remaining=5, reset_at=time.time() + 60)  # the probe's answer
    assert budget.acquire() == 0


def test_a_failed_probe_lets_the_next_caller_probe_at_once(r):
    budget = AdminBudget(r)
    assert budget.acquire() == 0
    assert budget.acquire() > 0
    budget.release_probe()
    assert budget.acquire() == 0


def test_budget_is_spent_atomically_and_never_below_zero(r):
    budget = AdminBudget(r)
    budget.record(remaining=10, reset_at=time.time() + 60)
    with ThreadPoolExecutor(8) as pool:
        waits = list(pool.map(lambda _: budget.acquire(), range(50)))
    assert sum(1 for w in waits if w == 0) == 10
    assert all(55 < w <= 60 for w in waits if w)


def test_a_late_answer_never_hands_back_calls_already_spent(r):
    budget = AdminBudget(r)
    reset = time.time() + 60
    budget.record(remaining=3, reset_at=reset)
    budget.record(remaining=7, reset_at=reset)  # an earlier call's answer, arriving last
    assert [budget.acquire() == 0 for _ in range(4)] == [True, True, True, False]


def test_a_new_window_replaces_the_old_and_an_old_answer_is_ignored(r):
    budget = AdminBudget(r)
    now = time.time()
    budget.record(remaining=0, reset_at=now + 30)
    budget.record(remaining=500, reset_at=now + 3630)  # the window reset
    budget.record(remaining=0, reset_at=now + 30)  # a straggler from the old window
    assert budget.acquire() == 0


def test_reserve_is_left_for_others(r):
    budget = AdminBudget(r)
    budget.record(remaining=3, reset_at=time.time() + 30)
    assert budget.acquire(reserve=2) == 0  # 3 > 2: go (2 left)
    assert budget.acquire(reserve=2) > 0  # 2 left: kept for the account's other users
    assert budget.acquire(reserve=0) == 0


def test_the_reserve_is_at_most_a_tenth_of_a_small_plans_limit(r):
    budget = AdminBudget(r)
    budget.record(remaining=3, reset_at=time.time() + 30, limit=20)
    assert budget.acquire(reserve=50) == 0  # 3 left > min(50, 20 // 10)
    assert budget.acquire(reserve=50) > 0  # 2 left: the reserve


def test_exhausted_waits_until_the_reset_then_goes(r):
    budget = AdminBudget(r)
    budget.exhausted(time.time() + 0.2)
    assert budget.acquire() > 0
    time.sleep(0.3)
    assert budget.acquire() == 0


def test_a_420_without_a_reset_keeps_the_known_reset_an_hour_away(r):
    budget = AdminBudget(r)
    reset = time.time() + 3500
    budget.record(remaining=4, reset_at=reset)
    wait = budget.exhausted(None)  # the 420 said nothing of the reset: the window's own stands
    assert 3490 < wait <= 3500
    assert 3490 < budget.acquire() <= 3500


def test_exceptions_that_cross_celerys_result_path_survive_pickling():
    for exc in (RateLimitedError(42.5), PermanentError("Resource not found - x"), TransientError("GeneralError: 500")):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc)
    assert pickle.loads(pickle.dumps(RateLimitedError(42.5))).wait == 42.5


def test_one_lease_holder_at_a_time(r):
    lease = Lease("heal", r)
    assert lease.acquire(5)
    assert not lease.acquire(5)
    lease.release()
    assert lease.acquire(5)


def test_the_broker_epoch_notices_a_redis_that_lost_its_data(redis_url):
    real = redis.Redis.from_url(redis_url)
    epoch = BrokerEpoch(real)
    real.delete(BrokerEpoch.KEY)
    assert epoch.changed()  # first look: nothing known yet
    assert not epoch.changed()  # same Redis, nothing lost
    real.delete(BrokerEpoch.KEY)  # what a restart without persistence leaves
    assert epoch.changed()
    real.set(BrokerEpoch.KEY, "another-servers-run-id")  # a snapshot or replica of another process
    assert epoch.changed()
    assert not epoch.changed()


def test_sporadic_failures_are_no_outage(r):
    outage = CloudinaryOutage(r)
    for _ in range(5):
        outage.failed()
        outage.failed()
        outage.succeeded()
    assert (outage.failing_for(), outage.take_recovery()) == (0.0, False)


def test_the_end_of_a_spell_of_failures_is_told_to_heal_once(r):
    outage = CloudinaryOutage(r)
    outage.failed()
    # Every call has been failing for longer than OUTAGE_AFTER (the first failure is kept).
    r.set(CloudinaryOutage.FAILING_SINCE, time.time() - CloudinaryOutage.OUTAGE_AFTER - 1)
    outage.failed()
    assert outage.failing_for() > CloudinaryOutage.OUTAGE_AFTER and not outage.take_recovery()
    outage.succeeded()
    assert outage.failing_for() == 0.0
    assert outage.take_recovery() and not outage.take_recovery()


def test_redis_away_never_fails_a_cloudinary_call():
    outage = CloudinaryOutage(redis.Redis(port=1, socket_connect_timeout=0.2))
    outage.failed()
    outage.succeeded()
