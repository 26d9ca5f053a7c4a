"""Rate limits in Redis (DESIGN.md step 2): admit a request against every rule
of its key and organization in one atomic script, correct the token counts
when it completes, and tell the client where it stands in headers.

Algorithm. Each rate rule is a GCRA (generic cell rate algorithm, the
"virtual scheduling" form of a token bucket), kept as one integer level and the
time it was measured: a request of cost c adds ``c * window`` to the level, the
level drains ``limit`` per millisecond, and a request fits while the level
stays within ``limit * window``. Chosen over the alternatives because:

- it is exact in integers: ``limit`` requests at once fit, request ``limit + 1``
  does not, on any number of workers (the script is atomic), with no float
  rounding at the edge;
- it is O(1) in time and memory per rule, where a sliding-window log keeps one
  ZSET entry per request (per token rule, too: summing the tokens of the
  window is O(requests) on every admission);
- it has no window boundary: fixed windows admit 2N around a boundary; here
  the quota comes back continuously, N per window, and never bursts past N;
- remaining, reset (time until the full quota is back: OpenAI's meaning) and
  retry-after (time until this request would fit) fall out of the level;
- a token count can be corrected after the fact by moving the level.

Concurrency is a ZSET per scope: member = request id, score = the time its
slot lapses, so the slot of a request whose worker died is dropped by the
next admission once its lease runs out.

Time is Redis's own clock (``TIME``), the one clock every replica shares,
unless the caller passes ``now`` (tests).

All-or-nothing: the script measures every rule first and counts the request in
all of them only if all fit. ``admit`` returns the script's invocation (oneflow.lib.scripts), which
the gateway runs in the same round trip as its credit hold and jobs run alone.

Provider quotas per deployment (``Deployment.rpm_quota`` / ``tpm_quota``) use
the same script: ``peek`` tells which deployments have headroom, ``force``
counts the request against the one chosen (the provider, not OneFlow, refuses
what exceeds it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from accounts.selectors import KeyCredentials, RateLimits
from gateway.errors import GatewayError
from oneflow.lib import redis_keys
from oneflow.lib.config_version import Version
from oneflow.lib.scripts import LUA_CLOCK, Invocation, Script, answered, now_arg
from providers.selectors import DeploymentView

# A concurrency slot lapses this long after admission unless released first:
# longer than any request may run (billing.holds keeps its holds as long).
CONCURRENCY_LEASE_SECONDS = 15 * 60
MAX_RETRY_AFTER_SECONDS = 60

_NOW = (
    LUA_CLOCK
    + """
local function drained(key, limit, now)
  local state = redis.call('HMGET', key, 'l', 't')
  if not state[1] then return 0 end
  return math.max(0, tonumber(state[1]) - math.max(0, now - tonumber(state[2])) * limit)
end
local function store(key, level, limit, now)
  if level <= 0 or limit <= 0 then redis.call('DEL', key) return end
  redis.call('HSET', key, 'l', int(level), 't', int(now))
  redis.call('PEXPIRE', key, math.ceil(level / limit) + 1000)
end
"""
)

ADMIT_SCRIPT = (
    _NOW
    + """
-- KEYS: the configuration version, then one counter per rule
-- ARGV: now ms ('' = Redis time), mode (admit | peek | force), request id,
--       concurrency lease ms, the version the rules were read under ('' = any),
--       then per rule: kind (r rate | c concurrency), limit, window ms, cost
-- Returns {admitted, now ms, then per rule: remaining, reset ms, fits, retry ms (-1 unknown, -2 never)},
-- or {-1, now ms} when the rules are not the current configuration's: then
-- nothing is touched, as a stale limit would drain the counter at its own rate.
-- admit counts the request in every rule if all fit, else in none; peek
-- counts nothing; force counts it whatever the rules say.
local now, mode, id, lease = now_ms(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])
if ARGV[5] ~= '' and (redis.call('GET', KEYS[1]) or '-') ~= ARGV[5] then return {-1, now} end
local rules, admitted = {}, 1
for i = 2, #KEYS do
  local at = 5 + (i - 2) * 4
  local r = {kind = ARGV[at + 1], limit = tonumber(ARGV[at + 2]), window = tonumber(ARGV[at + 3])}
  local cost = tonumber(ARGV[at + 4])
  if r.kind == 'c' then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', int(now))
    r.level = redis.call('ZCARD', KEYS[i])
    -- A request admitted again (after a configuration change) keeps its one slot.
    r.need = redis.call('ZSCORE', KEYS[i], id) and 0 or cost
    r.cap = r.limit
  else
    r.level = drained(KEYS[i], r.limit, now)
    r.need = cost * r.window
    r.cap = r.limit * r.window
  end
  r.fits = r.level + r.need <= r.cap
  if not r.fits then admitted = 0 end
  rules[#rules + 1] = r
end
local counted = mode == 'force' or (mode == 'admit' and admitted == 1)
local reply = {counted and 1 or 0, now}
for n, r in ipairs(rules) do
  local i = n + 1
  local level = counted and r.level + r.need or r.level
  local remaining, reset, retry
  if r.kind == 'c' then
    if counted and r.need > 0 then
      redis.call('ZADD', KEYS[i], int(now + lease), id)
      redis.call('PEXPIRE', KEYS[i], lease)
    end
    remaining, reset, retry = r.limit - level, 0, -1
  else
    if counted then store(KEYS[i], level, r.limit, now) end
    remaining = math.floor((r.cap - level) / r.window)
    if r.limit > 0 then reset = math.ceil(level / r.limit) else reset = r.window end
    if r.fits then retry = 0
    elseif r.need > r.cap then retry = -2
    else retry = math.ceil((r.level + r.need - r.cap) / r.limit) end
  end
  for _, value in ipairs({math.max(0, remaining), reset, r.fits and 1 or 0, retry}) do
    reply[#reply + 1] = value
  end
end
return reply
"""
)

COMPLETE_SCRIPT = (
    _NOW
    + """
-- KEYS: the configuration version, then one counter per rule to settle
-- ARGV: now ms ('' = Redis time), request id, the version the rules were read
--       under ('' = any), then per rule: kind, limit, window ms, delta
-- Releases the request's concurrency slots and moves each token counter by
-- delta (actual minus counted tokens; negative gives tokens back); under
-- another configuration the counters are left alone (their limits changed).
-- Returns the number of slots released.
local now, id, released = now_ms(ARGV[1]), ARGV[2], 0
local current = ARGV[3] == '' or (redis.call('GET', KEYS[1]) or '-') == ARGV[3]
for i = 2, #KEYS do
  local at = 3 + (i - 2) * 4
  local kind, limit = ARGV[at + 1], tonumber(ARGV[at + 2])
  local window, delta = tonumber(ARGV[at + 3]), tonumber(ARGV[at + 4])
  if kind == 'c' then
    released = released + redis.call('ZREM', KEYS[i], id)
  elseif current and delta ~= 0 and limit > 0 then
    store(KEYS[i], math.max(0, drained(KEYS[i], limit, now) + delta * window), limit, now)
  end
end
return released
"""
)


class Kind(StrEnum):
    REQUESTS = "requests"
    INPUT_TOKENS = "input_tokens"
    OUTPUT_TOKENS = "output_tokens"
    TOKENS = "tokens"  # input and output together (provider quotas)
    CONCURRENCY = "concurrency"


_TOKEN_KINDS = (Kind.INPUT_TOKENS, Kind.OUTPUT_TOKENS, Kind.TOKENS)


@dataclass(frozen=True, slots=True)
class Rule:
    """One limit on one counter."""

    name: str  # the policy name in headers, e.g. "org-rpm"
    key: str  # the Redis key of its counter
    kind: Kind
    limit: int
    window: int  # seconds; 0 for concurrency

    @property
    def is_rate(self) -> bool:
        return self.kind is not Kind.CONCURRENCY


@dataclass(frozen=True, slots=True)
class Demand:
    """What one request asks of the limits."""

    input_tokens: int = 0  # the prompt, estimated
    # The most it may generate: max_tokens times n (the hold's default when unset).
    output_tokens: int = 0

    def cost(self, kind: Kind) -> int:
        return {
            Kind.INPUT_TOKENS: self.input_tokens,
            Kind.OUTPUT_TOKENS: self.output_tokens,
            Kind.TOKENS: self.input_tokens + self.output_tokens,
        }.get(kind, 1)


@dataclass(frozen=True, slots=True)
class RuleState:
    rule: Rule
    remaining: int  # after this request when it was admitted, else before it
    reset: float  # seconds until the whole quota is back (0 for concurrency)
    fits: bool
    retry_after: float | None  # seconds until the request would fit; None unknown; inf never

    @property
    def limit(self) -> int:
        return self.rule.limit


@dataclass(frozen=True, slots=True)
class Decision:
    admitted: bool
    states: tuple[RuleState, ...]
    now: float  # unix seconds, by the clock the script used
    stale: bool = False  # the rules were not the current configuration's: nothing judged

    @property
    def refused(self) -> tuple[RuleState, ...]:
        return tuple(state for state in self.states if not state.fits)

    @property
    def too_large(self) -> bool:
        """Refused by a rule the request can never fit (more tokens than the limit allows at all)."""
        return any(state.retry_after == math.inf for state in self.refused)

    @property
    def retry_after(self) -> float | None:
        """Seconds until the refusing rate rules would let the request in (inf: never); None when
        admitted or only concurrency refused (a slot frees at a time nobody knows)."""
        waits = [state.retry_after for state in self.refused if state.retry_after is not None]
        return None if self.admitted or not waits else max(waits)


# Limit fields of accounts.selectors.RateLimits: (rule name, kind, window seconds).
_FIELDS = (
    ("rpm", Kind.REQUESTS, 60),
    ("rph", Kind.REQUESTS, 3600),
    ("input_tpm", Kind.INPUT_TOKENS, 60),
    ("output_tpm", Kind.OUTPUT_TOKENS, 60),
    ("concurrency", Kind.CONCURRENCY, 0),
)


def _scope_rules(scope: str, subject_id: int, limits: RateLimits) -> list[Rule]:
    rules = []
    for field, kind, window in _FIELDS:
        limit = getattr(limits, field)
        if limit is not None:
            name = f"{scope}-{field.replace('_', '-')}"
            rules.append(Rule(name, redis_keys.limit(scope, subject_id, field), kind, int(limit), window))
    return rules


def rules_for(credentials: KeyCredentials) -> list[Rule]:
    """The key's own rules, then its organization's (shared by all its keys)."""
    return [
        *_scope_rules("key", credentials.key_id, credentials.key_limits),
        *_scope_rules("org", credentials.organization_id, credentials.org_limits),
    ]


def quota_rules(deployment: DeploymentView) -> list[Rule]:
    """The provider's quotas of one deployment (none when it has none)."""
    rules = []
    if deployment.rpm_quota is not None:
        key = redis_keys.limit("deployment", deployment.id, "rpm")
        rules.append(Rule("deployment-rpm", key, Kind.REQUESTS, deployment.rpm_quota, 60))
    if deployment.tpm_quota is not None:
        key = redis_keys.limit("deployment", deployment.id, "tpm")
        rules.append(Rule("deployment-tpm", key, Kind.TOKENS, deployment.tpm_quota, 60))
    return rules


ADMIT = Script("limits.admit", ADMIT_SCRIPT)
COMPLETE = Script("limits.complete", COMPLETE_SCRIPT)

Mode = Literal["admit", "peek", "force"]


def _rule_args(rule: Rule, amount: int) -> list[Any]:
    return ["r" if rule.is_rate else "c", rule.limit, rule.window * 1000, amount]


def _retry(value: int) -> float | None:
    return {-1: None, -2: math.inf}.get(value, value / 1000)


def _decision(reply: Any, rules: Sequence[Rule]) -> Decision:
    values = [int(value) for value in reply]
    if values[0] == -1:
        return Decision(admitted=False, states=(), now=values[1] / 1000, stale=True)
    states = []
    for index, rule in enumerate(rules):
        remaining, reset, fits, retry = values[2 + 4 * index : 6 + 4 * index]
        states.append(RuleState(rule, remaining, reset / 1000, bool(fits), _retry(retry)))
    return Decision(admitted=bool(values[0]), states=tuple(states), now=values[1] / 1000)


def _unlimited() -> Decision:
    """The decision when no rule applies, without a round trip."""
    return Decision(admitted=True, states=(), now=time.time())


def _version_arg(version: Version | Literal[""]) -> bytes | str:
    """'' checks nothing; a missing version key reads as '-' in the scripts."""
    return "-" if version is None else version


def _admission(
    rules: Sequence[Rule],
    demand: Demand,
    *,
    request_id: str,
    mode: Mode,
    now: float | None,
    version: Version | Literal[""] = "",
) -> Invocation[Decision]:
    if not rules:
        return answered(_unlimited())
    args: list[Any] = [now_arg(now), mode, request_id, CONCURRENCY_LEASE_SECONDS * 1000, _version_arg(version)]
    for rule in rules:
        args += _rule_args(rule, demand.cost(rule.kind))
    keys = [redis_keys.CONFIG_VERSION, *(rule.key for rule in rules)]
    return Invocation(ADMIT, keys, args, lambda reply: _decision(reply, rules))


def admit(
    rules: Sequence[Rule],
    demand: Demand,
    *,
    request_id: str,
    version: Version | Literal[""] = "",
    now: float | None = None,
) -> Invocation[Decision]:
    """Counts the request in every rule if all of them fit, else in none. With the
    configuration ``version`` the rules were read under, a Redis that has moved on
    judges nothing and answers a stale Decision."""
    return _admission(rules, demand, request_id=request_id, mode="admit", now=now, version=version)


def complete(
    rules: Sequence[Rule],
    *,
    request_id: str,
    counted: Demand,
    used: Demand,
    version: Version | Literal[""] = "",
    now: float | None = None,
) -> Invocation[int]:
    """Releases the request's slots and moves its token counts from ``counted`` to
    ``used`` (only while ``version`` is current); the number of slots released."""
    keys: list[str] = [redis_keys.CONFIG_VERSION]
    args: list[Any] = [now_arg(now), request_id, _version_arg(version)]
    for rule in rules:
        delta = used.cost(rule.kind) - counted.cost(rule.kind) if rule.kind in _TOKEN_KINDS else 0
        if rule.kind is Kind.CONCURRENCY or delta:
            keys.append(rule.key)
            args += _rule_args(rule, delta)
    return Invocation(COMPLETE, keys, args, int) if len(keys) > 1 else answered(0)


def headroom(
    deployments: Sequence[DeploymentView], demand: Demand, *, now: float | None = None
) -> Invocation[dict[int, bool]]:
    """Per deployment id: whether its provider quotas can take this request now (counts nothing)."""
    rules = all_quota_rules(deployments)
    if not rules:
        return answered({d.id: True for d in deployments})
    peek = _admission(rules, demand, request_id="", mode="peek", now=now)
    return Invocation(peek.script, peek.keys, peek.args, lambda reply: _headroom_of(peek.reply(reply), deployments))


def count(
    deployment: DeploymentView, demand: Demand, *, request_id: str = "", now: float | None = None
) -> Invocation[Decision]:
    """Counts the request against the deployment's provider quotas, whether they have
    room or not: provider quotas steer traffic, the provider enforces them."""
    return _admission(quota_rules(deployment), demand, request_id=request_id, mode="force", now=now)


def _headroom_of(decision: Decision, deployments: Sequence[DeploymentView]) -> dict[int, bool]:
    full = {state.rule.key for state in decision.states if not state.fits}
    return {d.id: not any(rule.key in full for rule in quota_rules(d)) for d in deployments}


def all_quota_rules(deployments: Iterable[DeploymentView]) -> list[Rule]:
    return [rule for deployment in deployments for rule in quota_rules(deployment)]


def openai_duration(seconds: float) -> str:
    """A duration as OpenAI's reset headers write it (Go's format): 20ms, 1s, 1.5s, 6m0s, 1h0m0s."""
    ms = max(0, math.ceil(seconds * 1000))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, fraction = divmod(rest, 1000)
    secs = f"{whole}.{fraction:03d}".rstrip("0") if fraction else str(whole)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _binding(states: Iterable[RuleState]) -> RuleState | None:
    """The rule the client meets first: one that refused, else the fewest left, else the longest to reset."""
    return min(states, key=lambda s: (s.fits, s.remaining, -s.reset), default=None)


def _quota_item(state: RuleState) -> str:
    if state.rule.kind is Kind.CONCURRENCY:
        return f'"{state.rule.name}";q={state.limit};qu="concurrent-requests"'
    return f'"{state.rule.name}";q={state.limit};w={state.rule.window}'


def _remaining_item(state: RuleState) -> str:
    if state.rule.kind is Kind.CONCURRENCY:
        return f'"{state.rule.name}";r={state.remaining}'
    return f'"{state.rule.name}";r={state.remaining};t={math.ceil(state.reset)}'


def limit_headers(decision: Decision) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers, the IETF RateLimit fields, and retry-after when refused.

    Token rules have no unit in the IETF draft (PROTOCOLS.md §5.3), so they
    appear only in x-ratelimit-*-tokens.
    """
    headers: dict[str, str] = {}
    for suffix, kinds in (("requests", (Kind.REQUESTS,)), ("tokens", _TOKEN_KINDS)):
        binding = _binding(state for state in decision.states if state.rule.kind in kinds)
        if binding is not None:
            headers[f"x-ratelimit-limit-{suffix}"] = str(binding.limit)
            headers[f"x-ratelimit-remaining-{suffix}"] = str(binding.remaining)
            headers[f"x-ratelimit-reset-{suffix}"] = openai_duration(binding.reset)
    fields = [state for state in decision.states if state.rule.kind in (Kind.REQUESTS, Kind.CONCURRENCY)]
    if fields:
        headers["ratelimit-policy"] = ", ".join(_quota_item(state) for state in fields)
        headers["ratelimit"] = ", ".join(_remaining_item(state) for state in fields)
    if not decision.admitted:
        # A full concurrency pool frees a slot at a time nobody knows: try again soon.
        seconds = min(MAX_RETRY_AFTER_SECONDS, max(1.0, decision.retry_after or 1.0))
        headers["retry-after"] = str(math.ceil(seconds))
        headers["retry-after-ms"] = str(math.ceil(seconds * 1000))
    return headers


def anthropic_limit_headers(decision: Decision) -> dict[str, str]:
    """Anthropic's anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset} (reset: RFC 3339), and retry-after."""
    headers: dict[str, str] = {}
    for suffix, kinds in (("requests", (Kind.REQUESTS,)), ("tokens", _TOKEN_KINDS)):
        binding = _binding(state for state in decision.states if state.rule.kind in kinds)
        if binding is not None:
            reset = datetime.fromtimestamp(math.ceil(decision.now + binding.reset), UTC)
            headers[f"anthropic-ratelimit-{suffix}-limit"] = str(binding.limit)
            headers[f"anthropic-ratelimit-{suffix}-remaining"] = str(binding.remaining)
            headers[f"anthropic-ratelimit-{suffix}-reset"] = reset.isoformat().replace("+00:00", "Z")
    retry = limit_headers(decision).get("retry-after")
    if retry is not None:
        headers["retry-after"] = retry
    return headers


def refusal(decision: Decision) -> GatewayError:
    """The 429 for a refused admission, with its headers."""
    never = [state for state in decision.refused if state.retry_after == math.inf]
    state = never[0] if never else _binding(decision.refused)
    assert state is not None  # noqa: S101 - only refused decisions come here
    rule = state.rule
    if decision.too_large:
        message = f"Request too large for {rule.name}: the limit is {rule.limit} {rule.kind.value.replace('_', ' ')}."
    elif rule.kind is Kind.CONCURRENCY:
        message = f"Rate limit reached for {rule.name}: {rule.limit} requests in flight at most."
    else:
        message = (
            f"Rate limit reached for {rule.name}: limit {rule.limit} {rule.kind.value.replace('_', ' ')} "
            f"per {rule.window}s. Please try again later."
        )
    return GatewayError(
        429,
        message,
        code="rate_limit_exceeded",
        type="tokens" if rule.kind in _TOKEN_KINDS else "requests",
        headers=limit_headers(decision),
        # Waiting cannot make a request fit that is larger than the limit.
        retryable=False if decision.too_large else None,
    )
