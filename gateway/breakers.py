"""A circuit breaker and health figures per deployment, shared through Redis.

States: closed (traffic flows) → open after ``consecutive_failures`` failures
in a row, or when more than ``error_rate_percent`` of at least ``min_sample``
calls in the last ``window_seconds`` failed → after ``cooldown_seconds``,
half-open: exactly one caller (the probe) may send a request → closed when it
succeeds, open again when it fails. A probe that never reports (its worker
died) lets another caller probe once ``probe_lease_seconds`` have passed.

Everything is one Redis hash per deployment, changed only by atomic scripts:
``check`` (which deployments may be called; makes a caller the probe) and
``record`` (an outcome: moves the state, feeds the health figures: EWMA
latency, EWMA time to first token, calls and failures in the window).
Calls in the window are counted in a ring of buckets, so memory stays the
same whatever the traffic; the window is exact to one bucket. After a change
of state the error-rate rule starts a fresh sample at the next bucket (the
failures that opened it must not open it again at once); the health figures
keep the whole window.

Record only outcomes that say something about the deployment: a request the
caller got wrong (a 4xx of its own making) is neither a success nor a failure.

An operator may force a breaker open (it then stays open until closed by
hand) or closed. Neither the breaker nor its operator actions ever touch
``Deployment.enabled``: a manual disable is a separate switch that only an
operator turns back on.

Each operation returns its script's invocation (oneflow.lib.scripts): the
gateway runs ``check`` and ``record`` in the round trips of its credit hold and
settle, jobs and the admin run them alone. Reading a reply reports the state
changes it shows to the metrics, so no caller can forget to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.conf import settings

from gateway import metrics
from oneflow.lib import redis, redis_keys, scripts
from oneflow.lib.scripts import LUA_CLOCK, Invocation, Script, answered, now_arg

BREAKER_TTL_SECONDS = 7 * 24 * 3600  # a deployment nobody calls any more leaves no state behind

_HELPERS = (
    LUA_CLOCK
    + """
local function state_of(key) return redis.call('HGET', key, 's') or 'closed' end
-- The error-rate rule counts only calls after the last change of state
-- (from the next bucket on); the health figures count the whole window.
local function restart_sample(key, now, bucket_ms)
  redis.call('HSET', key, 'sb', math.floor(now / bucket_ms) + 1)
end
-- Calls and failures in the buckets of the window that ends at bucket 'now', from bucket 'from'.
local function window(key, now, buckets, from)
  local calls, failures = 0, 0
  for i = 0, buckets - 1 do
    local n = tonumber(redis.call('HGET', key, 'n' .. i) or '-1')
    if n > now - buckets and n >= from then
      calls = calls + tonumber(redis.call('HGET', key, 'c' .. i) or '0')
      failures = failures + tonumber(redis.call('HGET', key, 'e' .. i) or '0')
    end
  end
  return calls, failures
end
"""
)

CHECK_SCRIPT = (
    _HELPERS
    + """
-- KEYS: one breaker per deployment
-- ARGV: now ms ('' = Redis time), caller id, cooldown ms, probe lease ms
-- Returns per breaker: the verdict for this caller, and 1 when it moved open -> half_open.
local now, caller, cooldown, lease = now_ms(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local reply = {}
for i, key in ipairs(KEYS) do
  local state, verdict, moved = state_of(key), 'closed', 0
  if state == 'open' then
    verdict = 'open'
    local opened = tonumber(redis.call('HGET', key, 'o') or '0')
    if redis.call('HGET', key, 'forced') ~= '1' and now - opened >= cooldown then
      redis.call('HSET', key, 's', 'half_open', 'p', caller, 'pu', int(now + lease), 'ch', int(now))
      verdict, moved = 'probe', 1
    end
  elseif state == 'half_open' then
    local probe, until_ms = redis.call('HGET', key, 'p'), tonumber(redis.call('HGET', key, 'pu') or '0')
    if probe == caller then
      verdict = 'probe'
    elseif probe and until_ms > now then
      verdict = 'half_open_busy'
    else
      -- No probe, or one that never reported: this caller probes.
      redis.call('HSET', key, 'p', caller, 'pu', int(now + lease))
      verdict = 'probe'
    end
  end
  reply[#reply + 1] = verdict
  reply[#reply + 1] = moved
end
return reply
"""
)

RECORD_SCRIPT = (
    _HELPERS
    + """
-- KEYS: the breaker of the deployment called
-- ARGV: now ms ('' = Redis time), caller id, outcome (success | failure | unused), latency ms, ttft ms
--       ('' when unknown), failures in a row to open, error rate percent to open, minimum sample,
--       bucket ms, buckets in the window, EWMA weight of a new value, key ttl s
-- Returns {state before, state after}.
local key, now, caller, outcome = KEYS[1], now_ms(ARGV[1]), ARGV[2], ARGV[3]
local in_a_row, rate, sample = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local bucket_ms, buckets, alpha = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local before = state_of(key)
local is_probe = before == 'half_open' and redis.call('HGET', key, 'p') == caller
if outcome == 'unused' then
  -- The probe's caller sent its request elsewhere: the next caller may probe.
  if is_probe then redis.call('HDEL', key, 'p', 'pu') end
  return {before, before}
end
local failed = outcome == 'failure'
local bucket = math.floor(now / bucket_ms)
local slot = bucket % buckets
if redis.call('HGET', key, 'n' .. slot) ~= tostring(bucket) then
  redis.call('HSET', key, 'n' .. slot, bucket, 'c' .. slot, 0, 'e' .. slot, 0)
end
redis.call('HINCRBY', key, 'c' .. slot, 1)
if failed then redis.call('HINCRBY', key, 'e' .. slot, 1) end
local function ewma(name, value)
  if value == '' then return end
  local old = redis.call('HGET', key, name)
  local new = tonumber(value)
  if old then new = tonumber(old) + alpha * (new - tonumber(old)) end
  redis.call('HSET', key, name, string.format('%.3f', new))
end
if not failed then
  ewma('lat', ARGV[4])
  ewma('ttft', ARGV[5])
end
local after = before
local function open()
  redis.call('HSET', key, 's', 'open', 'o', int(now), 'f', 0, 'ch', int(now))
  redis.call('HDEL', key, 'p', 'pu')
  restart_sample(key, now, bucket_ms)
  after = 'open'
end
if before == 'closed' then
  if failed then
    local row = redis.call('HINCRBY', key, 'f', 1)
    local calls, failures = window(key, bucket, buckets, tonumber(redis.call('HGET', key, 'sb') or '0'))
    if row >= in_a_row or (calls >= sample and failures * 100 > rate * calls) then open() end
  else
    redis.call('HSET', key, 'f', 0)
  end
elseif is_probe then
  if failed then
    open()
  else
    redis.call('HSET', key, 's', 'closed', 'f', 0, 'ch', int(now))
    redis.call('HDEL', key, 'p', 'pu', 'o')
    restart_sample(key, now, bucket_ms)
    after = 'closed'
  end
end
-- Anything else (a straggler answering while open or while another caller
-- probes) feeds the health figures but moves nothing.
if redis.call('HGET', key, 'forced') ~= '1' then redis.call('EXPIRE', key, ARGV[12]) end
return {before, after}
"""
)

FORCE_SCRIPT = (
    _HELPERS
    + """
-- KEYS: breakers; ARGV: now ms ('' = Redis time), open | close, bucket ms
-- Returns the state of each before.
local now, action, bucket_ms = now_ms(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local reply = {}
for i, key in ipairs(KEYS) do
  reply[i] = state_of(key)
  if action == 'open' then
    -- Held open until an operator closes it: never half-opens by itself.
    redis.call('HSET', key, 's', 'open', 'forced', '1', 'o', int(now), 'ch', int(now))
    redis.call('HDEL', key, 'p', 'pu')
    redis.call('PERSIST', key)
  else
    redis.call('HSET', key, 's', 'closed', 'f', 0, 'ch', int(now))
    redis.call('HDEL', key, 'forced', 'p', 'pu', 'o')
    restart_sample(key, now, bucket_ms)
  end
end
return reply
"""
)

HEALTH_SCRIPT = (
    _HELPERS
    + """
-- KEYS: breakers; ARGV: now ms ('' = Redis time), bucket ms, buckets in the window
-- Returns per breaker: state, forced, EWMA latency, EWMA ttft, calls, failures, opened at ms, failures in a row.
local now, bucket_ms, buckets = now_ms(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local reply = {}
for _, key in ipairs(KEYS) do
  local calls, failures = window(key, math.floor(now / bucket_ms), buckets, 0)
  local f = redis.call('HMGET', key, 'forced', 'lat', 'ttft', 'o', 'f')
  local row = {state_of(key), f[1] or '', f[2] or '', f[3] or '', calls, failures, f[4] or '', f[5] or '0'}
  for _, value in ipairs(row) do reply[#reply + 1] = value end
end
return reply
"""
)


class State(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


class Verdict(StrEnum):
    """What ``check`` tells one caller about one deployment."""

    CLOSED = "closed"  # call it
    OPEN = "open"  # skip it
    PROBE = "probe"  # call it: this caller is the one probe of a half-open breaker
    HALF_OPEN_BUSY = "half_open_busy"  # skip it: another caller is probing

    @property
    def allows(self) -> bool:
        return self in (Verdict.CLOSED, Verdict.PROBE)


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    UNUSED = "unused"  # the caller was made the probe but sent its request elsewhere


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    consecutive_failures: int = 5
    error_rate_percent: int = 50
    min_sample: int = 20
    window_seconds: int = 60
    cooldown_seconds: int = 60
    probe_lease_seconds: int = 60  # a probe that has not reported by then is presumed dead
    buckets: int = 12  # the window's resolution: window_seconds / buckets
    ewma_weight: float = 0.2  # of each new latency

    @classmethod
    def from_settings(cls) -> BreakerPolicy:
        return cls(
            consecutive_failures=settings.BREAKER_CONSECUTIVE_FAILURES,
            error_rate_percent=settings.BREAKER_ERROR_RATE_PERCENT,
            min_sample=settings.BREAKER_MIN_SAMPLE,
            window_seconds=settings.BREAKER_WINDOW_SECONDS,
            cooldown_seconds=settings.BREAKER_COOLDOWN_SECONDS,
        )

    @property
    def bucket_ms(self) -> int:
        return max(1, self.window_seconds * 1000 // self.buckets)


@dataclass(frozen=True, slots=True)
class Transition:
    deployment_id: int
    before: State
    after: State

    @property
    def changed(self) -> bool:
        return self.before is not self.after


@dataclass(frozen=True, slots=True)
class Health:
    deployment_id: int
    state: State
    forced: bool  # held open by an operator
    latency_ms: float | None  # EWMA of successful calls
    ttft_ms: float | None  # EWMA time to first token of successful streams
    calls: int  # in the window
    failures: int  # in the window
    opened_at: float | None  # unix seconds
    failures_in_a_row: int

    @property
    def error_rate(self) -> float | None:
        return self.failures / self.calls if self.calls else None


CHECK = Script("breakers.check", CHECK_SCRIPT)
RECORD = Script("breakers.record", RECORD_SCRIPT)
FORCE = Script("breakers.force", FORCE_SCRIPT)
HEALTH = Script("breakers.health", HEALTH_SCRIPT)


@dataclass(frozen=True, slots=True)
class Checked:
    verdicts: dict[int, Verdict]
    moved: list[Transition]  # the breakers this check moved to half-open


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _keys(deployment_ids: Sequence[int]) -> list[str]:
    return [redis_keys.breaker(i) for i in deployment_ids]


def observe(transitions: Sequence[Transition]) -> None:
    """Reports state changes to the metrics (scripts tell which calls changed a state)."""
    for transition in transitions:
        if transition.changed:
            metrics.breaker_changed(transition.deployment_id, transition.before.value, transition.after.value)


def _checked(reply: Any, deployment_ids: Sequence[int]) -> Checked:
    verdicts: dict[int, Verdict] = {}
    moved = []
    for index, deployment_id in enumerate(deployment_ids):
        verdicts[deployment_id] = Verdict(_text(reply[2 * index]))
        if int(reply[2 * index + 1]):
            moved.append(Transition(deployment_id, State.OPEN, State.HALF_OPEN))
    observe(moved)
    return Checked(verdicts, moved)


def check(
    deployment_ids: Sequence[int], *, request_id: str, policy: BreakerPolicy | None = None, now: float | None = None
) -> Invocation[Checked]:
    """Which deployments this caller may call; at most one caller at a time gets PROBE per breaker."""
    if not deployment_ids:
        return answered(Checked({}, []))
    policy = policy or BreakerPolicy.from_settings()
    args = [now_arg(now), request_id, policy.cooldown_seconds * 1000, policy.probe_lease_seconds * 1000]
    return Invocation(CHECK, _keys(deployment_ids), args, lambda reply: _checked(reply, deployment_ids))


def _recorded(reply: Any, deployment_id: int) -> Transition:
    transition = Transition(deployment_id, State(_text(reply[0])), State(_text(reply[1])))
    observe([transition])
    return transition


def record(
    deployment_id: int,
    *,
    request_id: str,
    outcome: Outcome,
    policy: BreakerPolicy | None = None,
    latency_ms: float | None = None,
    ttft_ms: float | None = None,
    now: float | None = None,
) -> Invocation[Transition]:
    """An outcome of a call: moves the state, feeds the health figures."""
    policy = policy or BreakerPolicy.from_settings()
    args = [
        now_arg(now),
        request_id,
        outcome.value,
        "" if latency_ms is None else f"{latency_ms:.3f}",
        "" if ttft_ms is None else f"{ttft_ms:.3f}",
        policy.consecutive_failures,
        policy.error_rate_percent,
        policy.min_sample,
        policy.bucket_ms,
        policy.buckets,
        policy.ewma_weight,
        BREAKER_TTL_SECONDS,
    ]
    return Invocation(RECORD, _keys([deployment_id]), args, lambda reply: _recorded(reply, deployment_id))


def _forced(reply: Any, deployment_ids: Sequence[int], after: State) -> list[Transition]:
    transitions = [Transition(i, State(_text(before)), after) for i, before in zip(deployment_ids, reply, strict=True)]
    observe(transitions)
    return transitions


def _force(deployment_ids: Sequence[int], action: str, after: State, now: float | None) -> Invocation[list[Transition]]:
    if not deployment_ids:
        return answered([])
    args = [now_arg(now), action, BreakerPolicy.from_settings().bucket_ms]
    return Invocation(FORCE, _keys(deployment_ids), args, lambda reply: _forced(reply, deployment_ids, after))


def force_open(deployment_ids: Sequence[int], *, now: float | None = None) -> Invocation[list[Transition]]:
    """Opens the breakers and holds them open until ``force_close``."""
    return _force(deployment_ids, "open", State.OPEN, now)


def force_close(deployment_ids: Sequence[int], *, now: float | None = None) -> Invocation[list[Transition]]:
    """Closes the breakers and forgets their failures; ``Deployment.enabled`` is left as it is."""
    return _force(deployment_ids, "close", State.CLOSED, now)


def _number(value: Any) -> float | None:
    text = _text(value)
    return float(text) if text else None


def _health_of(reply: Any, deployment_ids: Sequence[int]) -> dict[int, Health]:
    health = {}
    for index, deployment_id in enumerate(deployment_ids):
        state, forced, latency, ttft, calls, failures, opened, in_a_row = reply[8 * index : 8 * index + 8]
        opened_ms = _number(opened)
        health[deployment_id] = Health(
            deployment_id=deployment_id,
            state=State(_text(state)),
            forced=_text(forced) == "1",
            latency_ms=_number(latency),
            ttft_ms=_number(ttft),
            calls=int(calls),
            failures=int(failures),
            opened_at=None if opened_ms is None else opened_ms / 1000,
            failures_in_a_row=int(in_a_row),
        )
    return health


def health(
    deployment_ids: Sequence[int], *, policy: BreakerPolicy | None = None, now: float | None = None
) -> Invocation[dict[int, Health]]:
    """State and health figures of many deployments in one round trip."""
    if not deployment_ids:
        return answered({})
    policy = policy or BreakerPolicy.from_settings()
    args = [now_arg(now), policy.bucket_ms, policy.buckets]
    return Invocation(HEALTH, _keys(deployment_ids), args, lambda reply: _health_of(reply, deployment_ids))


def breakers_force_open(*, deployment_ids: Sequence[int]) -> list[Transition]:
    """Operators: opens the breakers of these deployments until someone closes them."""
    return scripts.run(redis.sync_client(), force_open(deployment_ids))


def breakers_force_close(*, deployment_ids: Sequence[int]) -> list[Transition]:
    """Operators: closes the breakers of these deployments (their manual enable switch is untouched)."""
    return scripts.run(redis.sync_client(), force_close(deployment_ids))


def deployments_health(*, deployment_ids: Sequence[int]) -> dict[int, Health]:
    return scripts.run(redis.sync_client(), health(deployment_ids))
