"""The Redis-backed helpers on fakeredis: the recount/reconcile gate and the Admin budget."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import fakeredis
import pytest

from common.coordination import AdminBudget, Gate


@pytest.fixture
def r():
    return fakeredis.FakeRedis()


def test_gate_lets_one_claim_through_until_the_run_releases_it(r):
    gate = Gate("test", r)
    assert gate.claim("album", ttl=5)
    assert not gate.claim("album", ttl=5)  # a run is already scheduled
    assert gate.claim("other", ttl=5)  # per album
    gate.release("album")  # the run starts: changes after this need a new run
    assert gate.claim("album", ttl=5)


def test_a_burst_of_claims_schedules_one_run(r):
    gate = Gate("burst", r)
    with ThreadPoolExecutor(16) as pool:
        wins = sum(pool.map(lambda _: gate.claim("album", ttl=5), range(200)))
    assert wins == 1


def test_a_lost_run_frees_its_gate_after_the_ttl(r):
    gate = Gate("ttl", r)
    assert gate.claim("album", ttl=0.05)
    time.sleep(0.1)
    assert gate.claim("album", ttl=5)


def test_unknown_budget_lets_calls_through(r):
    assert AdminBudget(r).acquire() == 0


def test_budget_is_spent_atomically_and_never_below_zero(r):
    budget = AdminBudget(r)
    budget.record(remaining=10, reset_at=time.time() + 60)
    with ThreadPoolExecutor(8) as pool:
        waits = list(pool.map(lambda _: budget.acquire(), range(50)))
    assert sum(1 for w in waits if w == 0) == 10
    assert all(55 < w <= 60 for w in waits if w)


def test_reserve_is_left_for_others(r):
    budget = AdminBudget(r)
    budget.record(remaining=3, reset_at=time.time() + 30)
    assert budget.acquire(reserve=2) == 0  # 3 > 2: go (2 left)
    assert budget.acquire(reserve=2) > 0  # 2 left: keep them for fetch_metadata
    assert budget.acquire(reserve=0) == 0  # fetch_metadata may still spend them


def test_exhausted_waits_until_the_reset_then_goes(r):
    budget = AdminBudget(r)
    budget.exhausted(time.time() + 0.2)
    assert budget.acquire() > 0
    time.sleep(0.3)
    assert budget.acquire() == 0
