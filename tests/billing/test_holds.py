"""Credit and budget holds: atomic reserve and settle in Redis (fakeredis embedded, real Redis in CI)."""

from __future__ import annotations

import dataclasses
import threading
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing import holds, usage
from billing.holds import HOLD_TTL_SECONDS, BudgetSlot, Event, HoldStatus, Seeded, to_units
from oneflow.lib import redis, redis_keys
from oneflow.lib.scripts import Invocation
from tests.redis_state import both_ways, run

ORG = 424242
BUDGET = BudgetSlot(
    key="oneflow:budget:test:1",
    limit_units=50,
    ttl_seconds=600,
    organization_id=ORG,
    api_key_id=None,
    start=0,
    end=1_000,
)


def _clear() -> None:
    redis.sync_client().delete(
        redis_keys.credits_free(ORG),
        redis_keys.credits_holds(ORG),
        BUDGET.key,
        redis_keys.USAGE_STREAM,
        redis_keys.USAGE_PENDING,
    )


@pytest.fixture(autouse=True)
def _empty() -> None:
    _clear()


def free() -> int | None:
    return holds.free_units(redis.sync_client(), organization_id=ORG)


def event(request_id: str = "r", *, organization_id: int = ORG, api_key_id: int = 7, created_at: int = 1) -> Event:
    payload = b'{"request_id": "%s"}' % request_id.encode()
    return Event(payload=payload, organization_id=organization_id, api_key_id=api_key_id, created_at=created_at)


def settle(hold_id: str, units: int, budgets: tuple[str, ...] = (), **about: int) -> int:
    settled = run(
        holds.settle(
            organization_id=about.get("organization_id", ORG),
            hold_id=hold_id,
            charged_units=units,
            event=event(hold_id, **about),
            budget_keys=budgets,
        )
    )
    return settled.charged_units


def test_a_hold_needs_a_seeded_balance_and_must_fit() -> None:
    assert run(holds.hold(organization_id=ORG, hold_id="r1", units=5)).status is HoldStatus.CREDITS_NOT_SEEDED
    assert run(holds.seed(organization_id=ORG, ledger_units=10)) == Seeded(None, 10)
    assert run(holds.hold(organization_id=ORG, hold_id="r1", units=7)).granted is True
    refused = run(holds.hold(organization_id=ORG, hold_id="r2", units=4))
    assert (refused.status, refused.value) == (HoldStatus.CREDITS_SHORT, 3)


def test_the_hold_reads_the_configuration_version_in_the_same_script() -> None:
    version = redis.sync_client().incr(redis_keys.CONFIG_VERSION)  # as a configuration change does
    run(holds.seed(organization_id=ORG, ledger_units=10))
    assert run(holds.hold(organization_id=ORG, hold_id="r", units=1)).version == str(version).encode()


def test_settling_charges_at_most_the_hold_frees_the_rest_and_records_the_event() -> None:
    run(holds.seed(organization_id=ORG, ledger_units=100))
    run(holds.hold(organization_id=ORG, hold_id="r1", units=40))
    assert settle("r1", 25) == 25
    assert free() == 75
    run(holds.hold(organization_id=ORG, hold_id="r2", units=10))
    assert settle("r2", 999) == 10, "never more than the hold"
    assert free() == 65
    entries: Any = redis.sync_client().xrange(redis_keys.USAGE_STREAM)
    assert [fields[b"c"] for _, fields in entries] == [b"25", b"10"]
    assert entries[0][1][b"o"] == str(ORG).encode() and entries[0][1][b"k"] == b"7"
    assert redis.sync_client().hget(redis_keys.USAGE_PENDING, f"org:{ORG}") == b"35", (
        "charged but not in the ledger yet"
    )


def test_a_charge_whose_hold_is_gone_is_taken_from_the_free_balance() -> None:
    run(holds.seed(organization_id=ORG, ledger_units=100))
    run(holds.hold(organization_id=ORG, hold_id="r1", units=40))
    redis.sync_client().delete(redis_keys.credits_holds(ORG))  # lost, as in a wiped Redis
    assert settle("r1", 30) == 30
    assert free() == 60 - 30


def test_the_drain_acknowledging_events_clears_their_pending_charges() -> None:
    client = redis.sync_client()
    client.xgroup_create(redis_keys.USAGE_STREAM, usage.GROUP, id="0", mkstream=True)
    run(holds.seed(organization_id=ORG, ledger_units=100))
    run(holds.hold(organization_id=ORG, hold_id="r1", units=40))
    settle("r1", 30)
    delivered: Any = client.xreadgroup(usage.GROUP, "c", {redis_keys.USAGE_STREAM: ">"})
    ids = [entry_id for entry_id, _ in delivered[0][1]]
    assert run(holds.ack(group=usage.GROUP, ids=ids)) == 1
    assert client.xlen(redis_keys.USAGE_STREAM) == 0
    assert client.hget(redis_keys.USAGE_PENDING, f"org:{ORG}") is None


def test_holds_of_requests_that_died_are_given_back() -> None:
    run(holds.seed(organization_id=ORG, ledger_units=100))
    redis.sync_client().set(BUDGET.key, 0)
    run(holds.hold(organization_id=ORG, hold_id="dead", units=30, budgets=[BUDGET], now=1_000))
    run(holds.hold(organization_id=ORG, hold_id="alive", units=20, now=1_000 + HOLD_TTL_SECONDS))
    assert run(holds.expire(organization_id=ORG, now=1_000 + HOLD_TTL_SECONDS)) == 30
    assert free() == 80
    assert int(redis.sync_client().get(BUDGET.key) or 0) == 0, "the budget gets the dead hold back too"


def test_seeding_keeps_what_open_holds_reserve_and_pending_charges_took() -> None:
    run(holds.seed(organization_id=ORG, ledger_units=100))
    run(holds.hold(organization_id=ORG, hold_id="r1", units=30))
    run(holds.hold(organization_id=ORG, hold_id="r2", units=20))
    settle("r2", 15)  # charged, but the ledger (still at 100) does not know yet
    redis.sync_client().delete(redis_keys.credits_free(ORG))
    assert run(holds.seed(organization_id=ORG, ledger_units=100)) == Seeded(None, 100 - 30 - 15)
    assert run(holds.seed(organization_id=ORG, ledger_units=500)) == Seeded(55, 55), "seeding never overwrites"
    assert run(holds.seed(organization_id=ORG, ledger_units=85, force=True)) == Seeded(55, 85 - 30 - 15), (
        "reconciling does"
    )


def test_a_budget_window_refuses_what_it_cannot_cover() -> None:
    run(holds.seed(organization_id=ORG, ledger_units=1_000))
    missing = run(holds.hold(organization_id=ORG, hold_id="r1", units=30, budgets=[BUDGET]))
    assert (missing.status, missing.value) == (HoldStatus.BUDGET_NOT_SEEDED, 1)
    assert run(holds.seed_budget(slot=BUDGET, stored_units=10)) == 10
    assert 0 < redis.sync_client().ttl(BUDGET.key) <= BUDGET.ttl_seconds
    assert run(holds.hold(organization_id=ORG, hold_id="r1", units=30, budgets=[BUDGET])).granted
    refused = run(holds.hold(organization_id=ORG, hold_id="r2", units=11, budgets=[BUDGET]))
    assert (refused.status, refused.value) == (HoldStatus.BUDGET_SHORT, 1)
    assert free() == 970, "a refused hold takes nothing"
    settle("r1", 5, (BUDGET.key,))
    assert int(redis.sync_client().get(BUDGET.key) or 0) == 15, "the window keeps what was charged"
    assert run(holds.hold(organization_id=ORG, hold_id="r3", units=35, budgets=[BUDGET])).granted


def test_a_seeded_budget_window_counts_open_holds_and_pending_charges() -> None:
    run(holds.seed(organization_id=ORG, ledger_units=1_000))
    run(holds.seed_budget(slot=BUDGET, stored_units=0))
    run(holds.hold(organization_id=ORG, hold_id="open", units=12, budgets=[BUDGET]))
    run(holds.hold(organization_id=ORG, hold_id="done", units=9, budgets=[BUDGET]))
    settle("done", 4, (BUDGET.key,))
    redis.sync_client().delete(BUDGET.key)
    assert run(holds.seed_budget(slot=BUDGET, stored_units=7)) == 7 + 12 + 4


def test_a_window_seeded_after_charges_still_in_the_stream_counts_them() -> None:
    """Issue 11: a budget created while charges of its window were not drained yet
    (settled before the budget existed, so no window counter took them) must count them."""
    run(holds.seed(organization_id=ORG, ledger_units=1_000))
    run(holds.hold(organization_id=ORG, hold_id="before-the-budget", units=9))
    settle("before-the-budget", 6)  # no budget keys: the budget did not exist yet
    settle("same-org-another-key", 5, api_key_id=8)
    settle("another-organization", 100, organization_id=ORG + 1)
    settle("before-the-window", 50, created_at=BUDGET.end + 1)

    assert run(holds.seed_budget(slot=BUDGET, stored_units=3)) == 3 + 6 + 5
    key_budget = dataclasses.replace(BUDGET, key="oneflow:budget:test:key", api_key_id=7)
    assert run(holds.seed_budget(slot=key_budget, stored_units=0)) == 6, "a key's budget counts that key's charges"
    later = dataclasses.replace(BUDGET, key="oneflow:budget:test:later", start=BUDGET.end, end=BUDGET.end * 2)
    assert run(holds.seed_budget(slot=later, stored_units=0)) == 50, "each window counts its own charges"


def test_units_round_up_for_holds() -> None:
    assert to_units(Decimal("0.0000001"), round_up=True) == 1
    assert to_units(Decimal("0.0000001"), round_up=False) == 0
    assert to_units(Decimal("2.5"), round_up=True) == 2_500_000


def test_concurrent_holds_never_overspend() -> None:
    run(holds.seed(organization_id=ORG, ledger_units=1_000))
    barrier = threading.Barrier(40)
    granted: list[bool] = []

    def reserve(index: int) -> None:
        barrier.wait()
        granted.append(run(holds.hold(organization_id=ORG, hold_id=f"r{index}", units=100)).granted)

    threads = [threading.Thread(target=reserve, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert granted.count(True) == 10
    assert free() == 0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 500), st.integers(0, 800)), max_size=30), st.integers(0, 5_000))
def test_free_plus_charged_is_the_seed_and_never_negative(ops: list[tuple[int, int]], seed: int) -> None:
    _clear()
    run(holds.seed(organization_id=ORG, ledger_units=seed))
    redis.sync_client().set(BUDGET.key, 0)
    budget = dataclasses.replace(BUDGET, limit_units=seed // 2)
    charged = 0
    for index, (units, actual) in enumerate(ops):
        if run(holds.hold(organization_id=ORG, hold_id=f"h{index}", units=units, budgets=[budget])).granted:
            settled = settle(f"h{index}", actual, (budget.key,))
            assert 0 <= settled <= units
            charged += settled
    left = free()
    assert left is not None
    assert left >= 0
    assert left + charged == seed
    assert int(redis.sync_client().get(budget.key) or 0) == charged <= budget.limit_units


def test_the_gateways_asyncio_client_gets_the_same_replies() -> None:
    invocations: list[Invocation[Any]] = [
        holds.seed(organization_id=ORG, ledger_units=100),
        holds.seed_budget(slot=BUDGET, stored_units=5),
        holds.hold(organization_id=ORG, hold_id="r1", units=40, budgets=[BUDGET], now=1_000),
        holds.hold(organization_id=ORG, hold_id="r2", units=70, now=1_000),
        holds.hold(organization_id=ORG, hold_id="r3", units=20, now=1_000 - HOLD_TTL_SECONDS),
        holds.settle(organization_id=ORG, hold_id="r1", charged_units=0, event=holds.RELEASE, budget_keys=[BUDGET.key]),
        holds.expire(organization_id=ORG, now=1_000),
    ]
    synced, replies = both_ways(invocations, between=_clear)
    assert replies == synced
    assert synced[2].granted and synced[3].status is HoldStatus.CREDITS_SHORT and synced[-1] == 20
