"""Route planning: which deployments one request tries, and in which order.

Pure: the caller hands in the model, a way to find its fallback models, each
deployment's health and the request's ``provider`` preferences, and gets back
an ordered plan. Nothing here reads Redis or the database, so the hot path pays
for a sort of a handful of deployments and every rule can be property-tested.

The order, from the outside in:

1. the model's own deployments, then those of its fallback models in the order
   the operator listed them (one level: a fallback's own fallbacks are not
   followed, so a cycle cannot loop); each model orders its deployments by its
   own strategy;
2. within a model, closed breakers before half-open ones; open breakers only
   when no deployment at all is closed or half-open;
3. within that, the request's ``provider.order``, then its ``provider.sort`` or
   else the model's strategy;
4. what is still tied (everything, for the weighted strategy) by weighted
   rendezvous hashing of the sticky key: one key keeps landing on the same
   deployment while the set does not change, keys split across deployments in
   proportion to their weights, and a deployment that leaves moves only the
   keys that were on it.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from gateway.errors import GatewayError
from providers.selectors import DeploymentView, ModelView

Breaker = Literal["closed", "open", "half_open"]
Sort = Literal["price", "latency", "throughput"]
SORTS: tuple[Sort, ...] = ("price", "latency", "throughput")
Key = tuple[Decimal | float | int, ...]

_LIVE = {"closed": 0, "half_open": 1}  # an open breaker is only a last resort
MAX_NAMES = 64  # providers per list in a request's preferences; a sane bound on per-request work

# Spreads unsticky requests; nothing secret depends on it.
_random = random.Random()  # noqa: S311


@dataclass(frozen=True, slots=True)
class Health:
    """What the gateway knows of one deployment now.

    The caller decides probes: a half-open deployment that this request may
    probe is reported ``half_open``, one whose single probe is taken ``open``.
    """

    breaker: Breaker = "closed"
    latency_ewma_ms: float | None = None
    ttft_ewma_ms: float | None = None
    error_rate: float = 0.0


UNKNOWN = Health()


@dataclass(frozen=True, slots=True)
class Preferences:
    """The request's OpenRouter-style ``provider`` object. Provider names are
    matched without regard to case against the operator's provider names."""

    order: tuple[str, ...] = ()
    only: frozenset[str] = frozenset()  # empty: every provider
    ignore: frozenset[str] = frozenset()
    sort: Sort | None = None
    # False: only the model's own deployments, and only the providers in
    # `order` when it is given (OpenRouter's meaning).
    allow_fallbacks: bool = True
    max_prompt_price: Decimal | None = None  # USD per 1M input tokens
    max_completion_price: Decimal | None = None  # USD per 1M output tokens


NO_PREFERENCES = Preferences()


@dataclass(frozen=True, slots=True)
class Plan:
    deployments: tuple[DeploymentView, ...]
    route: str  # how the order was decided, for x-oneflow-route: "strategy:weighted", "provider:order", ...


def _invalid(message: str) -> GatewayError:
    return GatewayError(
        400, f"Invalid `provider` preferences: {message}", param="provider", code="invalid_provider_preferences"
    )


def preferences_parse(value: Any) -> Preferences:
    """The preferences in a request body's ``provider`` field (absent or null: none).

    Raises a 400 GatewayError naming the field for anything else than the
    documented shape, so a typo is not silently ignored.
    """
    if value is None:
        return NO_PREFERENCES
    if not isinstance(value, dict):
        raise _invalid("expected an object.")
    known = ("order", "only", "ignore", "sort", "allow_fallbacks", "max_price")
    if unknown := sorted(str(key) for key in value if key not in known):
        raise _invalid(f"unknown field {', '.join(unknown)}; accepted: {', '.join(known)}.")
    allow_fallbacks = value.get("allow_fallbacks")
    if allow_fallbacks is not None and not isinstance(allow_fallbacks, bool):
        raise _invalid("`allow_fallbacks` must be true or false.")
    sort = value.get("sort")
    if sort is not None and sort not in SORTS:
        raise _invalid(f"`sort` must be one of {', '.join(SORTS)}.")
    prompt, completion = _max_price(value.get("max_price"))
    return Preferences(
        order=_names(value, "order"),
        only=frozenset(_names(value, "only")),
        ignore=frozenset(_names(value, "ignore")),
        sort=sort,
        allow_fallbacks=allow_fallbacks is not False,
        max_prompt_price=prompt,
        max_completion_price=completion,
    )


def _names(value: dict[str, Any], field: str) -> tuple[str, ...]:
    names = value.get(field)
    if names is None:
        return ()
    if not isinstance(names, list) or not all(isinstance(name, str) and name.strip() for name in names):
        raise _invalid(f"`{field}` must be a list of provider names.")
    if len(names) > MAX_NAMES:
        raise _invalid(f"`{field}` may name at most {MAX_NAMES} providers.")
    return tuple(dict.fromkeys(name.strip().casefold() for name in names))


def _max_price(value: Any) -> tuple[Decimal | None, Decimal | None]:
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise _invalid('`max_price` must be an object like {"prompt": 1, "completion": 2} (USD per 1M tokens).')
    if unknown := sorted(str(key) for key in value if key not in ("prompt", "completion")):
        raise _invalid(f"unknown field max_price.{', max_price.'.join(unknown)}; accepted: prompt, completion.")
    return _price(value.get("prompt"), "prompt"), _price(value.get("completion"), "completion")


def _price(value: Any, field: str) -> Decimal | None:
    if value is None:
        return None
    problem = f"`max_price.{field}` must be a number of USD per 1M tokens, zero or more."
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _invalid(problem)
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        raise _invalid(problem) from None
    if not price.is_finite() or price < 0:
        raise _invalid(problem)
    return price


def plan(
    model: ModelView,
    *,
    catalog_find: Callable[[str], ModelView | None],
    health: Mapping[int, Health],
    preferences: Preferences = NO_PREFERENCES,
    sticky: str | None = None,
    stream: bool = False,
    max_attempts: int = 3,
    rng: random.Random | None = None,
) -> Plan:
    """The deployments to try for one request, best first, at most ``max_attempts``.

    ``catalog_find`` resolves fallback model names; it should return None for a
    model the caller may not use. ``health`` lacks deployments nobody has
    measured yet: they count as closed, of unknown latency. ``sticky`` (an API
    key id, a prompt_cache_key or user) pins the weighted choice; without it the
    choice is drawn from ``rng``. ``stream`` ranks the fastest by time to first
    token instead of whole-call latency.

    Never empty: raises GatewayError 400 (param ``provider``) when the request's
    preferences exclude every deployment, 503 when there is none at all.
    """
    chain = _chain(model, catalog_find, preferences)
    candidates = [(member, [d for d in member.deployments if _admissible(d, preferences)]) for member in chain]
    if not any(deployments for _, deployments in candidates):
        raise _unavailable(model, chain)
    draw = _drawer(sticky, rng or _random)
    live: list[DeploymentView] = []
    broken: list[DeploymentView] = []
    for member, deployments in candidates:
        strategy_key = _strategy_key(member, preferences, health, stream)
        ranked = _ranked(deployments, order=preferences.order, strategy_key=strategy_key, draw=draw)
        state = {d.id: health.get(d.id, UNKNOWN).breaker for d in ranked}
        # A stable sort: closed before half-open, each still in ranked order.
        live += sorted((d for d in ranked if state[d.id] in _LIVE), key=lambda d: _LIVE[state[d.id]])
        broken += [d for d in ranked if state[d.id] not in _LIVE]
    chosen = list({d.id: d for d in (live or broken)}.values())
    return Plan(deployments=tuple(chosen[:max_attempts]), route=_route(model, preferences))


def _chain(
    model: ModelView, catalog_find: Callable[[str], ModelView | None], preferences: Preferences
) -> list[ModelView]:
    chain = [model]
    if not preferences.allow_fallbacks:
        return chain
    for name in model.fallback_models:
        fallback = catalog_find(name)
        # A fallback of another kind (an embedding model for a chat model) could not answer the request.
        if fallback is not None and fallback.kind == model.kind and all(fallback.id != m.id for m in chain):
            chain.append(fallback)
    return chain


def _admissible(deployment: DeploymentView, preferences: Preferences) -> bool:
    provider = deployment.target.provider_name.casefold()
    if (preferences.only and provider not in preferences.only) or provider in preferences.ignore:
        return False
    if not preferences.allow_fallbacks and preferences.order and provider not in preferences.order:
        return False
    prompt, completion = preferences.max_prompt_price, preferences.max_completion_price
    return (prompt is None or deployment.cost_input_per_1m <= prompt) and (
        completion is None or deployment.cost_output_per_1m <= completion
    )


def _unavailable(model: ModelView, chain: list[ModelView]) -> GatewayError:
    if any(member.deployments for member in chain):
        return GatewayError(
            400,
            f"No deployment of `{model.name}` matches the request's `provider` preferences "
            "(only, ignore, order with allow_fallbacks false, max_price).",
            param="provider",
            code="no_matching_provider",
        )
    return GatewayError(503, f"No deployment can serve `{model.name}` right now.", code="model_unavailable")


def _route(model: ModelView, preferences: Preferences) -> str:
    if preferences.order:
        return "provider:order"
    if preferences.sort:
        return f"provider:{preferences.sort}"
    return f"strategy:{model.strategy}"


def _drawer(sticky: str | None, rng: random.Random) -> Callable[[int], float]:
    """A uniform draw in (0, 1) per deployment: a hash of the sticky key, or a random one."""
    if sticky is None:
        return lambda _deployment_id: 1.0 - rng.random()
    prefix = sticky.encode("utf-8", "surrogatepass")  # JSON may carry lone surrogates

    def draw(deployment_id: int) -> float:
        digest = hashlib.blake2b(b"%s\0%d" % (prefix, deployment_id), digest_size=8).digest()
        return (int.from_bytes(digest, "big") + 0.5) / 2**64

    return draw


def _rendezvous(deployment: DeploymentView, draw: Callable[[int], float]) -> float:
    """Smaller first. -ln(u)/weight is exponential with rate `weight`, so the
    smallest of them belongs to each deployment with probability weight/total
    (weighted rendezvous hashing); weight 0 is never first among weighted ones."""
    if deployment.weight <= 0:
        return math.inf
    return -math.log(draw(deployment.id)) / deployment.weight


def _ranked(
    deployments: list[DeploymentView],
    *,
    order: tuple[str, ...],
    strategy_key: Callable[[DeploymentView], Key],
    draw: Callable[[int], float],
) -> list[DeploymentView]:
    """Sorted by the request's provider order, then the strategy, then the weighted draw."""
    positions = {provider: index for index, provider in enumerate(order)}
    ties = {d.id: (_rendezvous(d, draw), d.id) for d in deployments}
    return sorted(
        deployments,
        key=lambda d: (
            positions.get(d.target.provider_name.casefold(), len(positions)),
            strategy_key(d),
            ties[d.id],
        ),
    )


def _strategy_key(
    model: ModelView, preferences: Preferences, health: Mapping[int, Health], stream: bool
) -> Callable[[DeploymentView], Key]:
    def latency(d: DeploymentView) -> float | None:
        measured = health.get(d.id, UNKNOWN)
        return measured.ttft_ewma_ms if stream else measured.latency_ewma_ms

    def fastest(d: DeploymentView) -> Key:
        # Unknown latency goes after every known one.
        value = latency(d)
        return (value is None, value or 0.0, d.priority)

    def cheapest(d: DeploymentView) -> Key:
        return (_cost(d), d.priority)

    def cheapest_in_bound(d: DeploymentView) -> Key:
        # The bound is on whole-call latency, streamed or not; unknown counts as
        # within it, since nothing says the deployment is slow.
        value, bound = health.get(d.id, UNKNOWN).latency_ewma_ms, model.max_latency_ms
        return (bound is not None and value is not None and value > bound, _cost(d), d.priority)

    by_sort: dict[str | None, Callable[[DeploymentView], Key]] = {
        "price": cheapest,
        "latency": fastest,
        "throughput": fastest,
    }
    by_strategy: dict[str, Callable[[DeploymentView], Key]] = {
        "weighted": lambda d: (),
        "cheapest": cheapest_in_bound,
        "fastest": fastest,
        "quality": lambda d: (-d.quality_score, d.priority),
    }
    return by_sort.get(preferences.sort) or by_strategy.get(model.strategy) or (lambda d: (d.priority,))


def _cost(deployment: DeploymentView) -> Decimal:
    """USD per 1M input plus 1M output tokens: one figure to compare providers by."""
    return deployment.cost_input_per_1m + deployment.cost_output_per_1m
