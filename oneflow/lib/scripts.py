"""The one layer for Redis Lua scripts.

A ``Script`` is defined once, next to the domain that owns it (credit holds in
billing, limits and breakers in the gateway). A domain function returns an
``Invocation``: the script, its keys and arguments, and how to read its reply
into a typed value. The same invocation runs through the gateway's asyncio
client (``arun``) or a job's synchronous one (``run``), so no logic is written
twice, and no bare status code leaves the module whose script produced it.

Several invocations run as one composite script: one EVALSHA, one round trip,
all atomic together. Measured cheaper than a pipeline of EVALSHAs, which costs
redis-py a pipeline object, per-command packing and parsing on every request.

Every round trip is timed and its failures counted by phase
(``oneflow_redis_command_seconds``, ``oneflow_redis_errors_total``): one
``perf_counter`` pair and one histogram observation, about a microsecond
(docs/metrics.md).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Generic, TypeVar

import redis
import redis.asyncio
import redis.exceptions
from prometheus_client import Counter, Histogram

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)  # an invocation of a narrower reply is one of a wider

logger = logging.getLogger(__name__)


# Lua shared by scripts that take a clock: ``now_ms(ARGV[n])`` is the caller's time
# when it passed one (tests), else Redis's own TIME, the one clock every replica
# shares; ``int`` writes integers past 14 digits without an exponent.
LUA_CLOCK = """
local function now_ms(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function int(n) return string.format('%.0f', n) end
"""


def now_arg(now: float | None) -> str:
    """The argument ``now_ms`` reads: milliseconds, or '' for Redis's clock."""
    return "" if now is None else str(int(now * 1000))


def _sha(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1


@dataclass(frozen=True)
class Script:
    name: str
    source: str
    sha: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", _sha(self.source))


def _raw(reply: Any) -> Any:
    return reply


@dataclass(frozen=True, slots=True)
class Invocation(Generic[R_co]):
    """One run of ``script``; ``reply`` turns what Redis answered into an ``R_co``.
    Without a script the answer is known already and Redis is not asked."""

    script: Script | None
    keys: Sequence[str]
    args: Sequence[Any]
    reply: Callable[[Any], R_co] = _raw


def forgiving(invocation: Invocation[R]) -> Invocation[R | None]:
    """``invocation`` whose reply, if it cannot be read, is logged and read as None:
    for scripts riding along with one whose reply must never be lost (a settle)."""

    def read(reply: Any) -> R | None:
        try:
            return invocation.reply(reply)
        except Exception:
            logger.exception("a Redis script's reply could not be read", extra={"script": _name(invocation)})
            return None

    return Invocation(invocation.script, invocation.keys, invocation.args, read)


def _name(invocation: Invocation[Any]) -> str:
    return invocation.script.name if invocation.script else ""


def answered(value: R) -> Invocation[R]:
    """An invocation whose answer needs no round trip (e.g. no rule applies)."""
    return Invocation(None, (), (), lambda _: value)


# What a Redis round trip serves: a fixed set, so a label value never comes from data.
# "metrics" is the scrape's own read (oneflow.lib.figures).
REDIS_PHASES = ("admission", "settlement", "idempotency", "job", "metrics", "other")
_REDIS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
REDIS_SECONDS = Histogram(
    "oneflow_redis_command_seconds", "Redis round trips, by phase.", ["phase"], buckets=_REDIS_BUCKETS
)
REDIS_ERRORS = Counter("oneflow_redis_errors_total", "Redis round trips that failed, by phase.", ["phase"])


class _Children(dict[str, Any]):
    """A labelled metric's child per phase, bound on first use: a round trip looks it up
    in a dict instead of building a label key. Not at import, which may come before
    prometheus_client's multiprocess folder exists (the gunicorn master)."""

    def __init__(self, metric: Counter | Histogram) -> None:
        super().__init__()
        self.metric = metric

    def __missing__(self, phase: str) -> Any:
        child = self[phase] = self.metric.labels(phase)
        return child


REDIS_SECONDS_BY_PHASE = _Children(REDIS_SECONDS)
REDIS_ERRORS_BY_PHASE = _Children(REDIS_ERRORS)

# The phase of a request a hot-path script serves, by its name: the label of its Redis
# metrics. A round trip takes the phase of its first script (the hold's riders are the
# admission's; the settle's, the settlement's). Synchronous runs are jobs, the admin's
# and probes': their phase is "job" whatever they run.
PHASES = {
    "credits.hold": "admission",
    "credits.seed": "admission",
    "budget.seed": "admission",
    "limits.admit": "admission",
    "breakers.check": "admission",
    "breakers.health": "admission",
    "credits.settle": "settlement",
    "limits.complete": "settlement",
    "breakers.record": "settlement",
    "idempotency.claim": "idempotency",
    "idempotency.finish": "idempotency",
}


@dataclass(frozen=True, slots=True)
class _Prepared:
    sha: str
    source: str
    keys: list[Any]
    args: list[Any]
    phase: str


def _asked(invocations: Sequence[Invocation[Any]]) -> list[tuple[Script, Invocation[Any]]]:
    return [(invocation.script, invocation) for invocation in invocations if invocation.script is not None]


def _prepare(asked: list[tuple[Script, Invocation[Any]]]) -> _Prepared:
    phase = PHASES.get(asked[0][0].name, "other")
    if len(asked) == 1:
        ((script, only),) = asked
        return _Prepared(script.sha, script.source, list(only.keys), list(only.args), phase)
    sources = tuple(dict.fromkeys(script.source for script, _ in asked))
    composite = _composite(sources)
    keys: list[Any] = []
    header: list[Any] = [len(asked)]
    values: list[Any] = []
    for script, invocation in asked:
        header += [sources.index(script.source) + 1, len(invocation.keys), len(invocation.args)]
        keys += invocation.keys
        values += invocation.args
    return _Prepared(composite.sha, composite.source, keys, header + values, phase)


def _replies(invocations: Sequence[Invocation[Any]], asked: int, raw: Any) -> list[Any]:
    replies = iter([raw] if asked == 1 else list(raw or ()))
    return [invocation.reply(None if invocation.script is None else next(replies)) for invocation in invocations]


def run(client: redis.Redis, invocation: Invocation[R]) -> R:
    """Runs one script through a synchronous client (jobs, the admin, tests)."""
    reply: R = run_all(client, [invocation])[0]
    return reply


def run_all(client: redis.Redis, invocations: Sequence[Invocation[Any]]) -> list[Any]:
    asked = _asked(invocations)
    if not asked:
        return _replies(invocations, 0, None)
    prepared = _prepare(asked)
    started = time.perf_counter()
    try:
        raw = _evalsha(client, prepared)
    except redis.exceptions.RedisError:
        REDIS_ERRORS_BY_PHASE["job"].inc()
        raise
    finally:
        REDIS_SECONDS_BY_PHASE["job"].observe(time.perf_counter() - started)
    return _replies(invocations, len(asked), raw)


def _evalsha(client: redis.Redis, prepared: _Prepared) -> Any:
    try:
        return client.evalsha(prepared.sha, len(prepared.keys), *prepared.keys, *prepared.args)
    except redis.exceptions.NoScriptError:
        # The server ran nothing, so loading the script and running it again is safe.
        client.script_load(prepared.source)
        return client.evalsha(prepared.sha, len(prepared.keys), *prepared.keys, *prepared.args)


async def arun(client: redis.asyncio.Redis, invocation: Invocation[R]) -> R:
    """Runs one script through the gateway's asyncio client."""
    reply: R = (await arun_all(client, [invocation]))[0]
    return reply


async def arun_all(client: redis.asyncio.Redis, invocations: Sequence[Invocation[Any]]) -> list[Any]:
    """Runs several scripts in one round trip, each atomic, all atomic together;
    their typed replies come back in order."""
    asked = _asked(invocations)
    if not asked:
        return _replies(invocations, 0, None)
    prepared = _prepare(asked)
    started = time.perf_counter()
    try:
        raw = await _aevalsha(client, prepared)
    except redis.exceptions.RedisError:
        REDIS_ERRORS_BY_PHASE[prepared.phase].inc()
        raise
    finally:
        REDIS_SECONDS_BY_PHASE[prepared.phase].observe(time.perf_counter() - started)
    return _replies(invocations, len(asked), raw)


async def _aevalsha(client: redis.asyncio.Redis, prepared: _Prepared) -> Any:
    try:
        return await client.evalsha(prepared.sha, len(prepared.keys), *prepared.keys, *prepared.args)
    except redis.exceptions.NoScriptError:
        await client.script_load(prepared.source)
        return await client.evalsha(prepared.sha, len(prepared.keys), *prepared.keys, *prepared.args)


@dataclass(frozen=True)
class _Composite:
    source: str
    sha: str


@cache
def _composite(sources: tuple[str, ...]) -> _Composite:
    """One script calling each source as a function of its own KEYS and ARGV.

    ARGV: the number of calls; per call, its function (1-based), key count and
    argument count; then every call's arguments in order (KEYS likewise). Built
    once per combination of sources (a handful on the hot path).
    """
    functions = "\n".join(f"local function f{i}(KEYS, ARGV)\n{source}\nend" for i, source in enumerate(sources, 1))
    listed = ", ".join(f"f{i}" for i in range(1, len(sources) + 1))
    source = (
        functions
        + f"\nlocal fns = {{{listed}}}\n"
        + """
local calls = tonumber(ARGV[1])
local out, k, a = {}, 0, 1 + 3 * calls
for c = 1, calls do
  local fn, nk, na = tonumber(ARGV[3 * c - 1]), tonumber(ARGV[3 * c]), tonumber(ARGV[3 * c + 1])
  local keys, args = {}, {}
  for i = 1, nk do keys[i] = KEYS[k + i] end
  for i = 1, na do args[i] = ARGV[a + i] end
  k, a = k + nk, a + na
  local reply = fns[fn](keys, args)
  if reply == nil then reply = false end
  out[c] = reply
end
return out
"""
    )
    return _Composite(source, _sha(source))
