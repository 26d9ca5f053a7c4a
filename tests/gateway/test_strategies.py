"""Route planning: which deployments a request tries, in which order.

Pure tests of gateway.strategies: the catalog is built in memory, health and
preferences are handed in, and every rule is checked on the plan it returns.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.strategies import (
    NO_PREFERENCES,
    Breaker,
    Health,
    Plan,
    Preferences,
    plan,
    preferences_parse,
)
from providers.adapters.base import Target
from providers.models import Deployment
from providers.selectors import DeploymentView, ModelView, catalog_build
from tests.factories import DeploymentFactory, ProviderFactory, PublicModelFactory

BREAKERS: tuple[Breaker, ...] = ("closed", "half_open", "open")
STRATEGIES = ("priority", "weighted", "cheapest", "fastest", "quality")


def deployment(
    id: int,  # noqa: A002 - the field's name
    provider: str = "OpenAI",
    *,
    priority: int = 1,
    weight: int = 100,
    cost_in: str = "1",
    cost_out: str = "2",
    quality: int = 50,
    model: str = "smart",
) -> DeploymentView:
    target = Target(
        deployment_id=id, provider_name=provider, kind="simulator", base_url="", upstream_model=model, api_key=""
    )
    return DeploymentView(
        id=id,
        target=target,
        priority=priority,
        weight=weight,
        capabilities=(),
        cost_input_per_1m=Decimal(cost_in),
        cost_cached_input_per_1m=Decimal(0),
        cost_output_per_1m=Decimal(cost_out),
        rpm_quota=None,
        tpm_quota=None,
        quality_score=quality,
        model_name=model,
    )


_model_ids = iter(range(1, 10**9))


def model(
    name: str,
    *deployments: DeploymentView,
    strategy: str = "priority",
    fallbacks: Iterable[str] = (),
    max_latency_ms: int | None = None,
    kind: str = "chat",
) -> ModelView:
    return ModelView(
        id=next(_model_ids),
        name=name,
        kind=kind,
        owned_by="oneflow",
        is_public=True,
        created=0,
        deployments=tuple(deployments),
        strategy=strategy,
        max_latency_ms=max_latency_ms,
        fallback_models=tuple(fallbacks),
    )


def finder(*models: ModelView) -> Any:
    by_name = {m.name: m for m in models}
    return by_name.get


def ids(route: Plan) -> list[int]:
    return [d.id for d in route.deployments]


def plan_of(
    main: ModelView,
    *others: ModelView,
    health: dict[int, Health] | None = None,
    preferences: Preferences = NO_PREFERENCES,
    sticky: str | None = "key-1",
    stream: bool = False,
    max_attempts: int = 99,
) -> Plan:
    return plan(
        main,
        catalog_find=finder(main, *others),
        health=health or {},
        preferences=preferences,
        sticky=sticky,
        stream=stream,
        max_attempts=max_attempts,
    )


# --- Generated catalogs -----------------------------------------------------------------------------------------


@st.composite
def catalogs(draw: st.DrawFn, *, strategies: Iterable[str] = STRATEGIES) -> tuple[list[ModelView], dict[int, Health]]:
    """A model with up to two fallback models, random deployments and random breaker states."""
    strategy_names = list(strategies)
    names = ["smart", "backup", "spare"][: draw(st.integers(1, 3))]
    next_id = 1
    models, health = [], {}
    for name in names:
        deployments = []
        for _ in range(draw(st.integers(0 if name != "smart" else 1, 5))):
            deployments.append(
                deployment(
                    next_id,
                    draw(st.sampled_from(["OpenAI", "Azure", "Groq"])),
                    priority=draw(st.integers(1, 3)),
                    weight=draw(st.integers(0, 100)),
                    cost_in=str(draw(st.integers(0, 5))),
                    quality=draw(st.integers(0, 100)),
                    model=name,
                )
            )
            health[next_id] = Health(
                breaker=draw(st.sampled_from(BREAKERS)),
                latency_ewma_ms=draw(st.none() | st.floats(1, 5000)),
                ttft_ewma_ms=draw(st.none() | st.floats(1, 1000)),
            )
            next_id += 1
        fallbacks = names[names.index(name) + 1 :] if name == "smart" else []
        models.append(model(name, *deployments, strategy=draw(st.sampled_from(strategy_names)), fallbacks=fallbacks))
    return models, health


def live(models: list[ModelView], health: dict[int, Health]) -> set[int]:
    return {d.id for m in models for d in m.deployments if health[d.id].breaker != "open"}


@given(catalogs(), st.none() | st.text(max_size=8))
def test_it_never_plans_an_open_breaker_unless_nothing_else_exists(
    catalog: tuple[list[ModelView], dict[int, Health]], sticky: str | None
) -> None:
    models, health = catalog
    route = plan_of(*models, health=health, sticky=sticky)
    everything = {d.id for m in models for d in m.deployments}
    if live(models, health):
        assert set(ids(route)) == live(models, health), "every live deployment, and only those"
    else:
        assert set(ids(route)) == everything, "all open: try them rather than refuse"


@given(catalogs(strategies=["priority"]), st.text(max_size=8))
def test_fallback_order_follows_the_chain_then_breakers_then_priorities(
    catalog: tuple[list[ModelView], dict[int, Health]], sticky: str
) -> None:
    models, health = catalog
    chain = [m.name for m in models]
    tier = {"closed": 0, "half_open": 1, "open": 2}
    route = plan_of(*models, health=health, sticky=sticky)
    keys = [(chain.index(d.model_name), tier[health[d.id].breaker], d.priority) for d in route.deployments]
    assert keys == sorted(keys)


@given(catalogs(), st.integers(1, 4), st.none() | st.text(max_size=8))
def test_a_plan_is_deduplicated_and_capped(
    catalog: tuple[list[ModelView], dict[int, Health]], max_attempts: int, sticky: str | None
) -> None:
    models, health = catalog
    route = plan_of(*models, health=health, sticky=sticky, max_attempts=max_attempts)
    assert 1 <= len(route.deployments) <= max_attempts
    assert len(set(ids(route))) == len(route.deployments)


def test_half_open_deployments_go_after_closed_ones() -> None:
    smart = model("smart", deployment(1, priority=1), deployment(2, priority=2), deployment(3, priority=3))
    health = {1: Health(breaker="half_open"), 3: Health(breaker="open")}
    assert ids(plan_of(smart, health=health)) == [2, 1]


def test_open_breakers_are_tried_last_resort_in_strategy_order() -> None:
    smart = model("smart", deployment(1, priority=2), deployment(2, priority=1))
    health = {1: Health(breaker="open"), 2: Health(breaker="open")}
    assert ids(plan_of(smart, health=health)) == [2, 1]


def test_a_fallback_model_is_tried_before_an_open_breaker_of_the_model_itself() -> None:
    smart = model("smart", deployment(1), fallbacks=["backup"])
    backup = model("backup", deployment(2, model="backup"))
    route = plan_of(smart, backup, health={1: Health(breaker="open")})
    assert ids(route) == [2]
    assert route.deployments[0].model_name == "backup"


def test_fallback_models_follow_in_the_listed_order_each_by_its_own_strategy() -> None:
    smart = model("smart", deployment(1, priority=2), deployment(2, priority=1), fallbacks=["spare", "backup"])
    backup = model("backup", deployment(3, model="backup"))
    spare = model(
        "spare",
        deployment(4, quality=10, model="spare"),
        deployment(5, quality=90, model="spare"),
        strategy="quality",
    )
    assert ids(plan_of(smart, backup, spare)) == [2, 1, 5, 4, 3]


def test_fallbacks_are_one_level_deep_skip_unknown_names_and_other_kinds() -> None:
    smart = model("smart", deployment(1), fallbacks=["gone", "embedder", "backup", "smart"])
    backup = model("backup", deployment(2, model="backup"), fallbacks=["deeper"])
    deeper = model("deeper", deployment(3, model="deeper"))
    embedder = model("embedder", deployment(4, model="embedder"), kind="embedding")
    assert ids(plan_of(smart, backup, deeper, embedder)) == [1, 2]


def test_fallback_models_are_not_tried_when_the_request_forbids_fallbacks() -> None:
    smart = model("smart", deployment(1), fallbacks=["backup"])
    backup = model("backup", deployment(2, model="backup"))
    assert ids(plan_of(smart, backup, preferences=Preferences(allow_fallbacks=False))) == [1]


def test_a_model_with_no_deployment_anywhere_is_unavailable() -> None:
    smart = model("smart", fallbacks=["backup"])
    with pytest.raises(GatewayError) as error:
        plan_of(smart, model("backup"))
    assert (error.value.status, error.value.code) == (503, "model_unavailable")


def test_a_model_served_only_by_its_fallback_plans_the_fallback() -> None:
    smart = model("smart", fallbacks=["backup"])
    assert ids(plan_of(smart, model("backup", deployment(7, model="backup")))) == [7]


def test_a_disabled_deployment_or_provider_is_never_planned_even_as_a_last_resort(db: None) -> None:
    simulator, switched_off = ProviderFactory.create(), ProviderFactory.create(enabled=False)
    smart = PublicModelFactory.create(name="smart")
    serving = DeploymentFactory.create(public_model=smart, provider=simulator)
    DeploymentFactory.create(public_model=smart, provider=simulator, enabled=False)
    DeploymentFactory.create(public_model=smart, provider=switched_off)
    catalog = catalog_build()
    view = catalog.find("smart")
    assert view is not None
    route = plan(view, catalog_find=catalog.find, health={serving.pk: Health(breaker="open")}, sticky=None)
    assert ids(route) == [serving.pk]
    Deployment.objects.filter(pk=serving.pk).update(enabled=False)
    view = catalog_build().find("smart")
    assert view is not None
    with pytest.raises(GatewayError) as error:
        plan(view, catalog_find=catalog.find, health={}, sticky=None)
    assert error.value.status == 503


# --- Weighted choice and stickiness -----------------------------------------------------------------------------


def shares(route_of: Any, keys: Iterable[str | None]) -> dict[int, float]:
    firsts = Counter(route_of(key).deployments[0].id for key in keys)
    total = sum(firsts.values())
    return {deployment_id: count / total for deployment_id, count in firsts.items()}


@pytest.mark.parametrize("weights", [(70, 20, 10), (1, 1), (50, 30, 15, 5), (100, 0, 300)])
def test_weighted_choice_over_sticky_keys_converges_to_the_weights(weights: tuple[int, ...]) -> None:
    smart = model("smart", *(deployment(i + 1, weight=w) for i, w in enumerate(weights)), strategy="weighted")
    observed = shares(lambda key: plan_of(smart, sticky=key), (f"key-{n}" for n in range(20_000)))
    for index, weight in enumerate(weights):
        assert observed.get(index + 1, 0.0) == pytest.approx(weight / sum(weights), abs=0.02)


def test_weighted_choice_without_a_sticky_key_converges_to_the_weights() -> None:
    smart = model("smart", deployment(1, weight=80), deployment(2, weight=20), strategy="weighted")
    rng = random.Random(5)  # noqa: S311 - a seeded draw, for a repeatable test

    def route_of(_key: None) -> Plan:
        return plan(smart, catalog_find=finder(smart), health={}, sticky=None, rng=rng)

    assert shares(route_of, [None] * 20_000) == pytest.approx({1: 0.8, 2: 0.2}, abs=0.02)


def test_equal_priorities_are_split_by_weight_and_lower_priorities_stay_behind() -> None:
    smart = model("smart", deployment(1, weight=75), deployment(2, weight=25), deployment(3, priority=2))
    observed = shares(lambda key: plan_of(smart, sticky=key), (f"user-{n}" for n in range(20_000)))
    assert observed == pytest.approx({1: 0.75, 2: 0.25}, abs=0.02)
    assert all(plan_of(smart, sticky=f"user-{n}").deployments[2].id == 3 for n in range(200))


weights = st.lists(st.integers(1, 100), min_size=2, max_size=6)


@given(weights, st.text(), st.randoms(use_true_random=False))
def test_a_sticky_key_always_lands_on_the_same_deployment(
    arm_weights: list[int], sticky: str, shuffler: random.Random
) -> None:
    deployments = [deployment(i + 1, weight=w) for i, w in enumerate(arm_weights)]
    first = plan_of(model("smart", *deployments, strategy="weighted"), sticky=sticky)
    shuffler.shuffle(deployments)
    again = plan_of(model("smart", *deployments, strategy="weighted"), sticky=sticky)
    assert ids(again) == ids(first), "the whole order, whatever order the catalog lists them in"


def test_any_sticky_string_from_a_json_body_is_hashable() -> None:
    smart = model("smart", deployment(1), deployment(2), strategy="weighted")
    assert ids(plan_of(smart, sticky="\ud800 lone surrogate")) == ids(plan_of(smart, sticky="\ud800 lone surrogate"))


@settings(max_examples=25, deadline=None)
@given(weights, st.data())
def test_a_deployment_leaving_moves_only_the_keys_that_were_on_it(arm_weights: list[int], data: st.DataObject) -> None:
    deployments = [deployment(i + 1, weight=w) for i, w in enumerate(arm_weights)]
    gone = data.draw(st.sampled_from(deployments))
    before = model("smart", *deployments, strategy="weighted")
    after = model("smart", *(d for d in deployments if d is not gone), strategy="weighted")
    for n in range(500):
        first_before = plan_of(before, sticky=f"key-{n}").deployments[0].id
        first_after = plan_of(after, sticky=f"key-{n}").deployments[0].id
        if first_before != gone.id:
            assert first_after == first_before


def test_a_new_deployment_takes_about_its_share_of_keys_from_the_others() -> None:
    old = [deployment(1, weight=50), deployment(2, weight=50)]
    before = model("smart", *old, strategy="weighted")
    after = model("smart", *old, deployment(3, weight=25), strategy="weighted")
    keys = [f"key-{n}" for n in range(20_000)]
    moved = [
        key
        for key in keys
        if plan_of(before, sticky=key).deployments[0].id != plan_of(after, sticky=key).deployments[0].id
    ]
    assert all(plan_of(after, sticky=key).deployments[0].id == 3 for key in moved), "keys move only to the newcomer"
    assert len(moved) / len(keys) == pytest.approx(25 / 125, abs=0.02)


# --- The other strategies -----------------------------------------------------------------------------------------


def test_cheapest_orders_by_provider_cost_then_priority() -> None:
    smart = model(
        "smart",
        deployment(1, cost_in="3", cost_out="6", priority=1),
        deployment(2, cost_in="1", cost_out="2", priority=2),
        deployment(3, cost_in="2", cost_out="1", priority=1),
        strategy="cheapest",
    )
    assert ids(plan_of(smart)) == [3, 2, 1]


def test_cheapest_within_a_latency_bound_tries_slow_deployments_last() -> None:
    smart = model(
        "smart",
        deployment(1, cost_in="0.1"),
        deployment(2, cost_in="5"),
        deployment(3, cost_in="9"),
        strategy="cheapest",
        max_latency_ms=800,
    )
    health = {1: Health(latency_ewma_ms=2500.0), 2: Health(latency_ewma_ms=300.0)}
    assert ids(plan_of(smart, health=health)) == [2, 3, 1], "unknown latency counts as within the bound"


def test_fastest_orders_by_latency_and_streams_by_time_to_first_token() -> None:
    smart = model("smart", deployment(1), deployment(2), deployment(3), strategy="fastest")
    health = {
        1: Health(latency_ewma_ms=900.0, ttft_ewma_ms=100.0),
        2: Health(latency_ewma_ms=400.0, ttft_ewma_ms=350.0),
    }
    assert ids(plan_of(smart, health=health)) == [2, 1, 3], "unknown latency after known"
    assert ids(plan_of(smart, health=health, stream=True)) == [1, 2, 3]


def test_quality_orders_by_operator_score() -> None:
    smart = model(
        "smart", deployment(1, quality=40), deployment(2, quality=95), deployment(3, quality=70), strategy="quality"
    )
    assert ids(plan_of(smart)) == [2, 3, 1]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_route_label_names_what_decided_the_order(strategy: str) -> None:
    smart = model("smart", deployment(1), strategy=strategy)
    assert plan_of(smart).route == f"strategy:{strategy}"
    assert plan_of(smart, preferences=Preferences(sort="price")).route == "provider:price"
    assert plan_of(smart, preferences=Preferences(order=("openai",), sort="price")).route == "provider:order"


# --- Request preferences ------------------------------------------------------------------------------------------

THREE = (
    deployment(1, "OpenAI", priority=1, cost_in="5", cost_out="15"),
    deployment(2, "Azure", priority=2, cost_in="2", cost_out="8"),
    deployment(3, "Groq", priority=3, cost_in="0.5", cost_out="1"),
)


def planned(body_provider: Any, *, strategy: str = "priority", health: dict[int, Health] | None = None) -> list[int]:
    return ids(
        plan_of(model("smart", *THREE, strategy=strategy), health=health, preferences=preferences_parse(body_provider))
    )


def test_only_and_ignore_narrow_the_providers_by_name_whatever_the_case() -> None:
    assert planned({"only": ["azure", "GROQ"]}) == [2, 3]
    assert planned({"ignore": ["openai"]}) == [2, 3]
    assert planned({"only": ["Azure", "Groq"], "ignore": ["groq"]}) == [2]


def test_order_overrides_the_strategy_and_the_rest_follow_it() -> None:
    assert planned({"order": ["Groq", "OpenAI"]}, strategy="quality") == [3, 1, 2]
    assert planned({"order": ["Groq"]}) == [3, 1, 2]


def test_order_without_fallbacks_tries_only_the_listed_providers() -> None:
    assert planned({"order": ["Groq", "OpenAI"], "allow_fallbacks": False}) == [3, 1]


def test_sort_overrides_the_strategy() -> None:
    health = {1: Health(latency_ewma_ms=100.0), 2: Health(latency_ewma_ms=50.0), 3: Health(latency_ewma_ms=700.0)}
    assert planned({"sort": "price"}, health=health) == [3, 2, 1]
    assert planned({"sort": "latency"}, strategy="cheapest", health=health) == [2, 1, 3]
    assert planned({"sort": "throughput"}, strategy="cheapest", health=health) == [2, 1, 3]


def test_max_price_drops_deployments_that_cost_more_per_million_tokens() -> None:
    assert planned({"max_price": {"prompt": 2, "completion": 8}}) == [2, 3]
    assert planned({"max_price": {"completion": "1"}}) == [3]
    assert planned({"max_price": {"prompt": 5}}) == [1, 2, 3], "the bound itself is allowed"


def test_preferences_still_never_pick_an_open_breaker_over_a_live_deployment() -> None:
    assert planned({"order": ["OpenAI"]}, health={1: Health(breaker="open")}) == [2, 3]


def test_preferences_that_exclude_every_deployment_are_the_callers_error() -> None:
    with pytest.raises(GatewayError) as error:
        planned({"only": ["Mistral"]})
    assert (error.value.status, error.value.param, error.value.code) == (400, "provider", "no_matching_provider")
    with pytest.raises(GatewayError):
        planned({"max_price": {"prompt": 0.1}})


def test_no_provider_object_means_no_preferences() -> None:
    assert preferences_parse(None) == NO_PREFERENCES
    assert preferences_parse({}) == NO_PREFERENCES
    assert preferences_parse({"order": None, "allow_fallbacks": None, "max_price": None}) == NO_PREFERENCES


def test_a_full_provider_object_is_parsed() -> None:
    parsed = preferences_parse(
        {
            "order": ["OpenAI", " azure ", "openai"],
            "only": ["OpenAI", "Azure"],
            "ignore": ["Groq"],
            "sort": "latency",
            "allow_fallbacks": False,
            "max_price": {"prompt": 1.5, "completion": "4"},
        }
    )
    assert parsed == Preferences(
        order=("openai", "azure"),
        only=frozenset({"openai", "azure"}),
        ignore=frozenset({"groq"}),
        sort="latency",
        allow_fallbacks=False,
        max_prompt_price=Decimal("1.5"),
        max_completion_price=Decimal(4),
    )


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("openai", "expected an object"),
        (["openai"], "expected an object"),
        ({"orders": ["openai"]}, "unknown field orders"),
        ({"order": "openai"}, "`order` must be a list"),
        ({"only": [1]}, "`only` must be a list"),
        ({"ignore": [""]}, "`ignore` must be a list"),
        ({"order": ["x"] * 65}, "at most 64"),
        ({"sort": "cheapest"}, "`sort` must be one of price, latency, throughput"),
        ({"allow_fallbacks": "no"}, "`allow_fallbacks` must be true or false"),
        ({"max_price": 3}, "`max_price` must be an object"),
        ({"max_price": {"prompt": -1}}, "`max_price.prompt` must be a number"),
        ({"max_price": {"completion": "lots"}}, "`max_price.completion` must be a number"),
        ({"max_price": {"completion": True}}, "`max_price.completion` must be a number"),
        ({"max_price": {"prompt": float("nan")}}, "`max_price.prompt` must be a number"),
        ({"max_price": {"request": 1}}, "unknown field max_price.request"),
    ],
)
def test_a_bad_provider_object_is_a_400_naming_the_field(value: Any, says: str) -> None:
    with pytest.raises(GatewayError) as error:
        preferences_parse(value)
    assert (error.value.status, error.value.param, error.value.code) == (
        400,
        "provider",
        "invalid_provider_preferences",
    )
    assert says in error.value.message
    assert error.value.openai_body()["error"]["type"] == "invalid_request_error"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
provider_objects = st.dictionaries(
    st.sampled_from(["order", "only", "ignore", "sort", "allow_fallbacks", "max_price", "nope"]),
    json_values | st.fixed_dictionaries({}, optional={"prompt": json_values, "completion": json_values}),
    max_size=6,
)


@given(json_values | provider_objects)
def test_any_provider_object_is_parsed_or_refused_with_a_400(value: Any) -> None:
    try:
        route = plan_of(model("smart", *THREE), preferences=preferences_parse(value))
    except GatewayError as error:
        assert (error.status, error.param) == (400, "provider")
    else:
        assert route.deployments
