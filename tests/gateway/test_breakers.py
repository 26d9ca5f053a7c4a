"""Circuit breakers per deployment, shared through Redis: when they open, the one
probe of a half-open breaker, the operator's switches, health, and the admin page."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from accounts.models import User
from gateway import breakers
from gateway.breakers import BreakerPolicy, Outcome, State, Verdict
from oneflow.lib import redis, redis_keys
from oneflow.lib.scripts import Invocation
from providers.models import Deployment
from providers.services import catalog_seed_demo
from tests.redis_state import both_ways, forget, fresh, run

NOW = 1_800_000_000.0  # a frozen clock: every call below passes it explicitly
POLICY = BreakerPolicy()  # 5 in a row, over 50 % of at least 20 in 60 s, one probe after 60 s
ID = 4242


_no_breakers = fresh(redis_keys.BREAKER_PATTERN)


def fail(times: int = 1, *, now: float = NOW, deployment: int = ID, policy: BreakerPolicy = POLICY) -> State:
    state = State.CLOSED
    for index in range(times):
        failed = breakers.record(deployment, request_id=f"f{index}", outcome=Outcome.FAILURE, policy=policy, now=now)
        state = run(failed).after
    return state


def succeed(*, now: float = NOW, request_id: str = "ok", latency: float | None = None) -> State:
    return run(
        breakers.record(ID, request_id=request_id, outcome=Outcome.SUCCESS, latency_ms=latency, now=now, policy=POLICY)
    ).after


def verdict(caller: str, now: float, *, policy: BreakerPolicy = POLICY) -> Verdict:
    return run(breakers.check([ID], request_id=caller, policy=policy, now=now)).verdicts[ID]


def open_breaker(now: float = NOW, *, policy: BreakerPolicy = POLICY) -> None:
    assert fail(5, now=now, policy=policy) is State.OPEN


# Opening -------------------------------------------------------------------------------------


def test_it_opens_after_five_failures_in_a_row() -> None:
    assert fail(4) is State.CLOSED
    assert succeed() is State.CLOSED, "a success ends the run"
    assert fail(4) is State.CLOSED
    assert verdict("c", NOW) is Verdict.CLOSED
    assert fail() is State.OPEN
    assert run(breakers.check([ID, ID + 1], request_id="c", now=NOW + 1, policy=POLICY)).verdicts == {
        ID: Verdict.OPEN,
        ID + 1: Verdict.CLOSED,
    }


def pattern(outcomes: str, *, now: float = NOW) -> State:
    state = State.CLOSED
    for index, outcome in enumerate(outcomes):
        kind = Outcome.FAILURE if outcome == "F" else Outcome.SUCCESS
        state = run(breakers.record(ID, request_id=f"p{index}", outcome=kind, now=now, policy=POLICY)).after
    return state


def test_an_error_rate_over_the_threshold_opens_it_once_the_sample_is_large_enough() -> None:
    # Never more than two failures in a row: only the error rate can open it.
    assert pattern("FFS" * 6 + "F") is State.CLOSED, "13 of 19 failed, but 19 is below the sample"
    assert pattern("F") is State.OPEN, "14 of 20 failed"


def test_an_error_rate_at_the_threshold_keeps_it_closed() -> None:
    assert pattern("SF" * 20) is State.CLOSED, "at most half failed at every point"


def test_calls_older_than_the_window_leave_the_sample() -> None:
    assert pattern("FFS" * 5, now=NOW) is State.CLOSED
    assert pattern("FFS" * 2, now=NOW + 61) is State.CLOSED, "only 6 calls in the last minute"
    health = run(breakers.health([ID], now=NOW + 61, policy=POLICY))[ID]
    assert (health.calls, health.failures) == (6, 4)


# Half-open and the probe ---------------------------------------------------------------------


def test_after_the_cool_down_exactly_one_of_50_concurrent_callers_probes() -> None:
    open_breaker()
    assert verdict("early", NOW + 59.999) is Verdict.OPEN
    barrier = threading.Barrier(50)
    verdicts: list[Verdict] = []

    def check(index: int) -> None:
        barrier.wait()
        verdicts.append(verdict(f"caller-{index}", NOW + 60))

    threads = [threading.Thread(target=check, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert verdicts.count(Verdict.PROBE) == 1
    assert verdicts.count(Verdict.HALF_OPEN_BUSY) == 49
    assert run(breakers.health([ID], now=NOW + 60, policy=POLICY))[ID].state is State.HALF_OPEN


def test_the_probes_success_closes_it() -> None:
    open_breaker()
    assert verdict("probe", NOW + 60) is Verdict.PROBE
    assert verdict("probe", NOW + 61) is Verdict.PROBE, "asking again does not lose the probe"
    assert succeed(request_id="probe", now=NOW + 62) is State.CLOSED
    assert verdict("anyone", NOW + 62) is Verdict.CLOSED
    assert fail(4, now=NOW + 63) is State.CLOSED, "the failures before it are forgotten"


def test_the_probes_failure_opens_it_again_for_a_whole_cool_down() -> None:
    open_breaker()
    assert verdict("probe", NOW + 60) is Verdict.PROBE
    transition = run(breakers.record(ID, request_id="probe", outcome=Outcome.FAILURE, now=NOW + 65, policy=POLICY))
    assert (transition.before, transition.after) == (State.HALF_OPEN, State.OPEN)
    assert verdict("next", NOW + 124) is Verdict.OPEN
    assert verdict("next", NOW + 125) is Verdict.PROBE


def test_answers_from_other_callers_move_nothing_while_open_or_probing() -> None:
    open_breaker()
    assert succeed(request_id="straggler", now=NOW + 1) is State.OPEN
    assert verdict("probe", NOW + 60) is Verdict.PROBE
    assert succeed(request_id="straggler", now=NOW + 61) is State.HALF_OPEN
    assert verdict("other", NOW + 61) is Verdict.HALF_OPEN_BUSY


def test_a_probe_that_never_reports_lets_another_caller_probe_after_its_lease() -> None:
    open_breaker()
    assert verdict("died", NOW + 60) is Verdict.PROBE
    assert verdict("next", NOW + 60 + POLICY.probe_lease_seconds - 1) is Verdict.HALF_OPEN_BUSY
    assert verdict("next", NOW + 60 + POLICY.probe_lease_seconds) is Verdict.PROBE


def test_a_probe_sent_elsewhere_hands_the_probe_on_at_once() -> None:
    open_breaker()
    assert verdict("first", NOW + 60) is Verdict.PROBE
    run(breakers.record(ID, request_id="first", outcome=Outcome.UNUSED, now=NOW + 60, policy=POLICY))
    assert verdict("second", NOW + 60) is Verdict.PROBE


def test_the_cool_down_is_configurable() -> None:
    quick = BreakerPolicy(cooldown_seconds=5)
    open_breaker(policy=quick)
    assert verdict("probe", NOW + 5, policy=quick) is Verdict.PROBE


def test_check_and_its_reply_can_travel_in_a_pipeline() -> None:
    open_breaker()
    check = breakers.check([ID, ID + 1], request_id="p", policy=POLICY, now=NOW + 60)
    assert check.script is not None
    with redis.sync_client().pipeline(transaction=False) as pipe:
        pipe.get(redis_keys.CONFIG_VERSION)
        pipe.eval(check.script.source, len(check.keys), *check.keys, *check.args)
        _, reply = pipe.execute()
    checked = check.reply(reply)
    verdicts, moved = checked.verdicts, checked.moved
    assert verdicts == {ID: Verdict.PROBE, ID + 1: Verdict.CLOSED}
    assert [(t.before, t.after) for t in moved] == [(State.OPEN, State.HALF_OPEN)]


def test_the_gateways_asyncio_side_runs_the_same_scripts() -> None:
    invocations: list[Invocation[Any]] = [
        *(breakers.record(ID, request_id=f"f{i}", outcome=Outcome.FAILURE, policy=POLICY, now=NOW) for i in range(5)),
        breakers.check([ID], request_id="p", policy=POLICY, now=NOW + 60),
        breakers.record(ID, request_id="p", outcome=Outcome.SUCCESS, policy=POLICY, latency_ms=90, now=NOW + 61),
        breakers.health([ID], policy=POLICY, now=NOW + 61),
    ]
    synced, replies = both_ways(invocations, between=lambda: forget(redis_keys.BREAKER_PATTERN))
    *_, probe, closed, health = replies
    assert [probe.verdicts[ID], closed.after, health[ID].latency_ms] == [Verdict.PROBE, State.CLOSED, 90.0]
    assert replies == synced, "the synchronous client reads the same replies"


# Operators -----------------------------------------------------------------------------------


def test_a_forced_open_breaker_stays_open_until_forced_closed() -> None:
    [transition] = run(breakers.force_open([ID], now=NOW))
    assert (transition.before, transition.after) == (State.CLOSED, State.OPEN)
    assert verdict("c", NOW + 3600) is Verdict.OPEN, "no half-open for a breaker held open"
    assert succeed(request_id="c", now=NOW + 3600) is State.OPEN
    assert run(breakers.health([ID], now=NOW, policy=POLICY))[ID].forced
    run(breakers.force_close([ID], now=NOW + 3601))
    assert verdict("c", NOW + 3601) is Verdict.CLOSED
    assert not run(breakers.health([ID], now=NOW + 3601, policy=POLICY))[ID].forced


def test_forcing_closed_forgets_the_failures() -> None:
    fail(4)
    run(breakers.force_close([ID], now=NOW))
    assert fail(4, now=NOW + 1) is State.CLOSED


# Health and metrics --------------------------------------------------------------------------


def test_record_keeps_ewma_latency_ttft_and_the_error_rate() -> None:
    run(
        breakers.record(ID, request_id="a", outcome=Outcome.SUCCESS, latency_ms=100, ttft_ms=50, now=NOW, policy=POLICY)
    )
    run(breakers.record(ID, request_id="b", outcome=Outcome.SUCCESS, latency_ms=200, now=NOW, policy=POLICY))
    run(breakers.record(ID, request_id="c", outcome=Outcome.FAILURE, latency_ms=30_000, now=NOW, policy=POLICY))
    run(breakers.record(ID, request_id="d", outcome=Outcome.SUCCESS, ttft_ms=150, now=NOW, policy=POLICY))
    health = run(breakers.health([ID], now=NOW, policy=POLICY))[ID]
    assert health.latency_ms == pytest.approx(120.0), "100, then 20 % of the way to 200; failures do not count"
    assert health.ttft_ms == pytest.approx(70.0)
    assert (health.calls, health.failures, health.error_rate) == (4, 1, 0.25)
    assert health.state is State.CLOSED


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_state_changes_set_the_gauge_and_count_the_transitions() -> None:
    label = {"deployment": str(ID)}
    opened = sample("oneflow_breaker_transitions_total", {**label, "from": "closed", "to": "open"})
    open_breaker()
    assert sample("oneflow_breaker_state", label) == 2
    assert sample("oneflow_breaker_transitions_total", {**label, "from": "closed", "to": "open"}) == opened + 1
    verdict("probe", NOW + 60)
    assert sample("oneflow_breaker_state", label) == 1
    succeed(request_id="probe", now=NOW + 61)
    assert sample("oneflow_breaker_state", label) == 0


# The state machine, whatever happens ---------------------------------------------------------

_step = st.one_of(
    st.tuples(st.just("check"), st.sampled_from("abc"), st.integers(0, 90)),
    st.tuples(st.sampled_from(["success", "failure", "unused"]), st.sampled_from("abc"), st.integers(0, 90)),
)
_LEGAL = {
    State.CLOSED: {State.CLOSED, State.OPEN},
    State.OPEN: {State.OPEN},
    State.HALF_OPEN: {State.HALF_OPEN, State.CLOSED, State.OPEN},
}


@settings(max_examples=60, deadline=None)
@given(st.lists(_step, max_size=40))
def test_any_sequence_of_outcomes_keeps_the_state_machine_valid(steps: list[tuple[str, str, int]]) -> None:
    forget(redis_keys.BREAKER_PATTERN)
    now, opened_at, row = NOW, None, 0
    for action, caller, wait in steps:
        now += wait
        if action == "check":
            before = run(breakers.health([ID], now=now, policy=POLICY))[ID].state
            got = verdict(caller, now)
            if before is State.CLOSED:
                assert got is Verdict.CLOSED
            elif before is State.OPEN:
                assert opened_at is not None
                assert got is (Verdict.PROBE if now - opened_at >= POLICY.cooldown_seconds else Verdict.OPEN)
            else:
                assert got in (Verdict.PROBE, Verdict.HALF_OPEN_BUSY)
            continue
        transition = run(breakers.record(ID, request_id=caller, outcome=Outcome(action), now=now, policy=POLICY))
        assert transition.after in _LEGAL[transition.before]
        if transition.after is State.OPEN and transition.changed:
            opened_at = now
        row = row + 1 if action == "failure" else 0 if action == "success" else row
        if transition.before is State.CLOSED and row >= POLICY.consecutive_failures:
            assert transition.after is State.OPEN, "five in a row always open it"
        if transition.before is State.CLOSED and transition.after is State.OPEN and row < 5:
            assert run(breakers.health([ID], now=now, policy=POLICY))[ID].calls >= POLICY.min_sample, (
                "else only the error rate may"
            )
        if transition.after is not State.CLOSED:
            row = 0
    _assert_one_probe_at_most(now)
    forget(redis_keys.BREAKER_PATTERN)


def _assert_one_probe_at_most(now: float) -> None:
    verdicts = [verdict(f"late-{index}", now) for index in range(5)]
    assert verdicts.count(Verdict.PROBE) <= 1


# Deployments: the enabled switch, and the admin page -----------------------------------------


@pytest.fixture
def as_operator(client: Client, db: None) -> Client:
    client.force_login(User.objects.create_superuser("ops@oneflow.local", "operator password 123"))
    return client


@pytest.fixture
def deployments(db: None) -> list[Deployment]:
    catalog_seed_demo()
    return list(Deployment.objects.select_related("public_model", "provider").order_by("pk"))


def test_the_breaker_never_touches_the_enabled_switch(deployments: list[Deployment]) -> None:
    first, second = deployments[:2]
    Deployment.objects.filter(pk=second.pk).update(enabled=False)
    fail(5, deployment=first.pk)
    run(breakers.force_close([first.pk, second.pk], now=NOW))
    run(breakers.force_open([first.pk], now=NOW))
    assert dict(Deployment.objects.values_list("pk", "enabled")) == {first.pk: True, second.pk: False}


def test_the_health_page_shows_each_breaker_and_its_figures(as_operator: Client, deployments: list[Deployment]) -> None:
    healthy, broken = deployments[:2]
    run(breakers.record(healthy.pk, request_id="a", outcome=Outcome.SUCCESS, latency_ms=240, ttft_ms=80, policy=POLICY))
    run(breakers.record(healthy.pk, request_id="b", outcome=Outcome.FAILURE, policy=POLICY))
    run(breakers.force_open([broken.pk]))
    page = as_operator.get(reverse("admin:routing_deploymenthealth_changelist")).content.decode()
    assert "open (forced)" in page
    assert "240 ms" in page
    assert "80 ms" in page
    assert "50% of 2" in page
    detail = as_operator.get(reverse("admin:routing_deploymenthealth_change", args=[healthy.pk]))
    assert detail.status_code == 200
    assert "240 ms" in detail.content.decode()
    assert as_operator.get(reverse("admin:routing_deploymenthealth_changelist"), {"q": "gpt"}).status_code == 200


def test_the_admin_actions_open_and_close_breakers(as_operator: Client, deployments: list[Deployment]) -> None:
    target = deployments[0]
    changelist = reverse("admin:routing_deploymenthealth_changelist")
    response = as_operator.post(changelist, {"action": "open_breakers", "_selected_action": [target.pk]}, follow=True)
    assert "Opened 1 breaker" in response.content.decode()
    assert run(breakers.check([target.pk], request_id="c", policy=POLICY)).verdicts[target.pk] is Verdict.OPEN
    as_operator.post(changelist, {"action": "close_breakers", "_selected_action": [target.pk]})
    assert run(breakers.check([target.pk], request_id="c", policy=POLICY)).verdicts[target.pk] is Verdict.CLOSED
    assert Deployment.objects.get(pk=target.pk).enabled


def test_operators_without_change_permission_get_no_breaker_switches(
    client: Client, deployments: list[Deployment]
) -> None:
    viewer = User.objects.create_user("viewer@oneflow.local", "viewer password 123", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename="view_deploymenthealth"))
    client.force_login(viewer)
    page = client.get(reverse("admin:routing_deploymenthealth_changelist"))
    assert page.status_code == 200
    assert "open_breakers" not in page.content.decode()
