"""Credit holds: atomic reserve and settle in Redis (fakeredis embedded, real Redis in CI)."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.holds import HOLD_TTL_SECONDS, Holds, to_units
from oneflow.lib import redis

ORG = 424242


@pytest.fixture
def holds() -> Holds:
    client = redis.sync_client()
    client.delete(f"oneflow:credits:{ORG}:free", f"oneflow:credits:{ORG}:holds")
    return Holds(client)


def test_a_hold_needs_a_seeded_balance_and_must_fit(holds: Holds) -> None:
    assert holds.hold(organization_id=ORG, hold_id="r1", units=5).seeded is False
    assert holds.seed(organization_id=ORG, ledger_units=10) == 10
    assert holds.hold(organization_id=ORG, hold_id="r1", units=7).granted is True
    refused = holds.hold(organization_id=ORG, hold_id="r2", units=4)
    assert (refused.granted, refused.seeded, refused.free_units) == (False, True, 3)


def test_settling_charges_at_most_the_hold_and_frees_the_rest(holds: Holds) -> None:
    holds.seed(organization_id=ORG, ledger_units=100)
    holds.hold(organization_id=ORG, hold_id="r1", units=40)
    assert holds.settle(organization_id=ORG, hold_id="r1", actual_units=25) == 25
    assert holds.free_units(organization_id=ORG) == 75
    holds.hold(organization_id=ORG, hold_id="r2", units=10)
    assert holds.settle(organization_id=ORG, hold_id="r2", actual_units=999) == 10, "never more than the hold"
    assert holds.free_units(organization_id=ORG) == 65
    assert holds.settle(organization_id=ORG, hold_id="r2", actual_units=1) == -1, "settled once"


def test_holds_of_requests_that_died_are_given_back(holds: Holds) -> None:
    holds.seed(organization_id=ORG, ledger_units=100)
    holds.hold(organization_id=ORG, hold_id="dead", units=30, now=1_000)
    holds.hold(organization_id=ORG, hold_id="alive", units=20, now=1_000 + HOLD_TTL_SECONDS)
    assert holds.expire(organization_id=ORG, now=1_000 + HOLD_TTL_SECONDS) == 30
    assert holds.free_units(organization_id=ORG) == 80


def test_seeding_after_a_loss_keeps_what_open_holds_reserve(holds: Holds) -> None:
    holds.seed(organization_id=ORG, ledger_units=100)
    holds.hold(organization_id=ORG, hold_id="r1", units=30)
    redis.sync_client().delete(f"oneflow:credits:{ORG}:free")
    assert holds.seed(organization_id=ORG, ledger_units=100) == 70
    assert holds.seed(organization_id=ORG, ledger_units=500) == 70, "seeding never overwrites"


def test_units_round_up_for_holds() -> None:
    assert to_units(Decimal("0.0000001"), round_up=True) == 1
    assert to_units(Decimal("0.0000001"), round_up=False) == 0
    assert to_units(Decimal("2.5"), round_up=True) == 2_500_000


def test_concurrent_holds_never_overspend(holds: Holds) -> None:
    holds.seed(organization_id=ORG, ledger_units=1_000)
    barrier = threading.Barrier(40)
    granted: list[bool] = []

    def reserve(index: int) -> None:
        barrier.wait()
        granted.append(holds.hold(organization_id=ORG, hold_id=f"r{index}", units=100).granted)

    threads = [threading.Thread(target=reserve, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert granted.count(True) == 10
    assert holds.free_units(organization_id=ORG) == 0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 500), st.integers(0, 800)), max_size=30), st.integers(0, 5_000))
def test_free_plus_charged_is_the_seed_and_never_negative(ops: list[tuple[int, int]], seed: int) -> None:
    client = redis.sync_client()
    client.delete(f"oneflow:credits:{ORG}:free", f"oneflow:credits:{ORG}:holds")
    holds = Holds(client)
    holds.seed(organization_id=ORG, ledger_units=seed)
    charged = 0
    for index, (units, actual) in enumerate(ops):
        if holds.hold(organization_id=ORG, hold_id=f"h{index}", units=units).granted:
            settled = holds.settle(organization_id=ORG, hold_id=f"h{index}", actual_units=actual)
            assert 0 <= settled <= units
            charged += settled
    free = holds.free_units(organization_id=ORG)
    assert free is not None
    assert free >= 0
    assert free + charged == seed
