"""Credit and budget holds in Redis: reserve a request's worst-case cost before
calling upstream, settle to the actual cost after, one atomic script each.

Per organization Redis keeps the credits still free for new holds and a hash
of open holds; per budget window, the credits spent or held in it. Amounts
are integer units of 1e-6 credit, rounded up wherever Redis takes credits, so
Redis may believe an organization has a little less than the ledger says,
never more (the reconciliation job puts it back to the ledger's figure).

Settling also appends the request's usage event to the stream, in the same
script: a charge is on record exactly when its credits left the free balance.
Charges recorded but not yet stored by the drain are counted in a pending
hash per organization, so a balance seeded from the ledger while they are in
flight still subtracts them; a budget window seeded from stored usage adds
the window's charges still in the stream.

PostgreSQL stays the truth: a missing free balance (a new deployment, a wiped
Redis) is seeded from the ledger balance minus open holds and pending charges;
a missing budget window from the usage stored for it, its charges still in
the stream and its open holds. Both seed under the drain's lock (a batch
between its commit and its acknowledgement would be counted twice or not
at all).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import IntEnum
from typing import Any

import redis

from oneflow.lib import redis_keys
from oneflow.lib.scripts import Invocation, Script

UNITS_PER_CREDIT = 1_000_000
# Redis counts in signed 64-bit integers. A balance above this (4.6e12 credits) is
# seeded as this; a request whose worst case is above it is refused, as no balance
# could cover it.
MAX_UNITS = 2**62
HOLD_TTL_SECONDS = 15 * 60  # longer than any request may run

# Hold entries read "units:expires:budget-key|budget-key".
_LUA_HELPERS = """
local function parse(entry)
  local units, expires, budgets = string.match(entry, '^(%d+):(%d+):?(.*)$')
  local keys = {}
  for key in string.gmatch(budgets or '', '[^|]+') do keys[#keys + 1] = key end
  return tonumber(units), tonumber(expires), keys
end
local function add_if_exists(key, units)
  if units ~= 0 and redis.call('EXISTS', key) == 1 then redis.call('INCRBY', key, units) end
end
"""

_HOLD = """
-- KEYS: config version, free units, open holds, budget windows...
-- ARGV: hold id, units, expiry (unix s), then each budget window's limit
local version = redis.call('GET', KEYS[1])
local free = redis.call('GET', KEYS[2])
if not free then return {-2, 0, version} end
for i = 4, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then return {-3, i - 3, version} end
end
free = tonumber(free)
local units = tonumber(ARGV[2])
if free < units then return {-1, free, version} end
for i = 4, #KEYS do
  local left = tonumber(ARGV[i]) - tonumber(redis.call('GET', KEYS[i]))
  if left < units then return {-4, i - 3, version} end
end
redis.call('DECRBY', KEYS[2], units)
local budgets = {}
for i = 4, #KEYS do
  redis.call('INCRBY', KEYS[i], units)
  budgets[#budgets + 1] = KEYS[i]
end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2] .. ':' .. ARGV[3] .. ':' .. table.concat(budgets, '|'))
return {1, free - units, version}
"""

_SETTLE = (
    _LUA_HELPERS
    + """
-- KEYS: free units, open holds, usage stream, pending charges, budget windows...
-- ARGV: hold id ('' for none), charged units, event, organization, api key, created
-- Returns {units charged (never more than the hold), the event's stream id}.
local charged = tonumber(ARGV[2])
local entry = ARGV[1] ~= '' and redis.call('HGET', KEYS[2], ARGV[1])
if entry then
  redis.call('HDEL', KEYS[2], ARGV[1])
  local held = parse(entry)
  charged = math.min(charged, held)
  add_if_exists(KEYS[1], held - charged)
  for i = 5, #KEYS do add_if_exists(KEYS[i], charged - held) end
else
  -- No open hold (it expired, or Redis lost it): whatever was seeded since
  -- did not count this charge, so take it now.
  add_if_exists(KEYS[1], -charged)
  for i = 5, #KEYS do add_if_exists(KEYS[i], charged) end
end
if charged > 0 then redis.call('HINCRBY', KEYS[4], 'org:' .. ARGV[4], charged) end
if ARGV[3] == '' then return {charged, false} end  -- a release: nothing to record
local id = redis.call('XADD', KEYS[3], '*', 'e', ARGV[3], 'o', ARGV[4], 'k', ARGV[5], 'c', charged, 't', ARGV[6])
return {charged, id}
"""
)

_ACK = """
-- KEYS: usage stream, pending charges; ARGV: consumer group, stream ids stored
-- Forgets events the drain stored: their charges are in the ledger now.
local function unpend(field, units)
  if redis.call('HINCRBY', KEYS[2], field, -units) <= 0 then redis.call('HDEL', KEYS[2], field) end
end
for i = 2, #ARGV do
  local found = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
  if #found == 1 and redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 then
    local fields, event = found[1][2], {}
    for j = 1, #fields, 2 do event[fields[j]] = fields[j + 1] end
    local charged = tonumber(event['c'] or '0')
    if charged > 0 then unpend('org:' .. event['o'], charged) end
  end
  redis.call('XDEL', KEYS[1], ARGV[i])
end
return #ARGV - 1
"""

_EXPIRE = (
    _LUA_HELPERS
    + """
-- KEYS: free units, open holds; ARGV: now (unix s)
-- Gives back the units of holds whose request died without settling.
local released = 0
local entries = redis.call('HGETALL', KEYS[2])
for i = 1, #entries, 2 do
  local units, expires, budgets = parse(entries[i + 1])
  if expires <= tonumber(ARGV[1]) then
    redis.call('HDEL', KEYS[2], entries[i])
    released = released + units
    for _, key in ipairs(budgets) do add_if_exists(key, -units) end
  end
end
add_if_exists(KEYS[1], released)
return released
"""
)

_SEED_CREDITS = (
    _LUA_HELPERS
    + """
-- KEYS: free units, open holds, pending charges
-- ARGV: ledger balance in units, organization, 'force' to overwrite
-- Free = the ledger balance minus open holds and charges not in the ledger yet.
local free = tonumber(ARGV[1]) - tonumber(redis.call('HGET', KEYS[3], 'org:' .. ARGV[2]) or '0')
for _, entry in ipairs(redis.call('HVALS', KEYS[2])) do free = free - parse(entry) end
local before = redis.call('GET', KEYS[1])
if ARGV[3] == 'force' then redis.call('SET', KEYS[1], free) else redis.call('SET', KEYS[1], free, 'NX') end
return {before or false, tonumber(redis.call('GET', KEYS[1]))}
"""
)

_SEED_BUDGET = (
    _LUA_HELPERS
    + """
-- KEYS: budget window, open holds of its organization, usage stream
-- ARGV: units stored in PostgreSQL for the window, seconds until the counter can go,
--       organization, api key ('' for the whole organization), window start and end (unix s)
-- Spent = what the drain stored, plus every charge of the window still in the
-- stream (whether or not the budget existed when it was charged), plus the
-- open holds on this window. Run under the drain's lock, so no batch is both
-- stored and still in the stream.
local spent = tonumber(ARGV[1])
local start, finish = tonumber(ARGV[5]), tonumber(ARGV[6])
-- Stream ids are arrival times in ms; an event of the window arrived after it began.
for _, item in ipairs(redis.call('XRANGE', KEYS[3], start * 1000, '+')) do
  local fields, event = item[2], {}
  for j = 1, #fields, 2 do event[fields[j]] = fields[j + 1] end
  local created = tonumber(event['t'] or '0')
  if event['o'] == ARGV[3] and (ARGV[4] == '' or event['k'] == ARGV[4])
      and created >= start and created < finish then
    spent = spent + tonumber(event['c'] or '0')
  end
end
for _, entry in ipairs(redis.call('HVALS', KEYS[2])) do
  local units, _, budgets = parse(entry)
  for _, key in ipairs(budgets) do if key == KEYS[1] then spent = spent + units end end
end
redis.call('SET', KEYS[1], spent, 'NX', 'EX', ARGV[2])
return tonumber(redis.call('GET', KEYS[1]))
"""
)


HOLD = Script("credits.hold", _HOLD)
SETTLE = Script("credits.settle", _SETTLE)
ACK = Script("usage.ack", _ACK)
EXPIRE = Script("credits.expire", _EXPIRE)
SEED_CREDITS = Script("credits.seed", _SEED_CREDITS)
SEED_BUDGET = Script("budget.seed", _SEED_BUDGET)


def to_units(amount: Decimal, *, round_up: bool) -> int:
    """Credits to integer units: Redis rounds what it takes up, what it gives down."""
    scaled = amount * UNITS_PER_CREDIT
    return math.ceil(scaled) if round_up else math.floor(scaled)


def to_credits(units: int) -> Decimal:
    return Decimal(units) / UNITS_PER_CREDIT


@dataclass(frozen=True, slots=True)
class BudgetSlot:
    """One budget's current window as the hold script sees it."""

    key: str  # the window's counter of credits spent or held
    limit_units: int
    ttl_seconds: int  # the counter outlives its window a little, then goes
    organization_id: int
    api_key_id: int | None  # None: the budget of the whole organization
    start: int  # the window, [start, end) in unix seconds
    end: int


class HoldStatus(IntEnum):
    """The hold script's verdict (its first reply value)."""

    GRANTED = 1
    CREDITS_SHORT = -1
    CREDITS_NOT_SEEDED = -2
    BUDGET_NOT_SEEDED = -3
    BUDGET_SHORT = -4

    @property
    def needs_seed(self) -> bool:
        return self in (HoldStatus.CREDITS_NOT_SEEDED, HoldStatus.BUDGET_NOT_SEEDED)


@dataclass(frozen=True, slots=True)
class HoldResult:
    status: HoldStatus
    value: int  # free units (granted, credits short), else the 1-based index of the budget concerned
    version: bytes | None  # the configuration version read in the same script

    @property
    def granted(self) -> bool:
        return self.status is HoldStatus.GRANTED


@dataclass(frozen=True, slots=True)
class Settled:
    charged_units: int  # never more than the hold
    stream_id: bytes | None  # the usage event's id in the stream; None for a release


@dataclass(frozen=True, slots=True)
class Seeded:
    before: int | None  # the free units before seeding (None: there were none)
    after: int


@dataclass(frozen=True, slots=True)
class Event:
    """A usage event as settle() appends it to the stream."""

    payload: bytes
    organization_id: int
    api_key_id: int | None
    created_at: float


RELEASE = Event(payload=b"", organization_id=0, api_key_id=None, created_at=0)  # settles, records nothing


def _hold_result(reply: Any) -> HoldResult:
    return HoldResult(HoldStatus(int(reply[0])), int(reply[1]), reply[2] if len(reply) > 2 else None)


def hold(
    *, organization_id: int, hold_id: str, units: int, budgets: Sequence[BudgetSlot] = (), now: float | None = None
) -> Invocation[HoldResult]:
    """Holds ``units`` against the free credits and every budget window, reading the
    configuration version in the same step."""
    expires = int((time.time() if now is None else now) + HOLD_TTL_SECONDS)
    keys = [
        redis_keys.CONFIG_VERSION,
        redis_keys.credits_free(organization_id),
        redis_keys.credits_holds(organization_id),
        *(b.key for b in budgets),
    ]
    return Invocation(HOLD, keys, [hold_id, units, expires, *(b.limit_units for b in budgets)], _hold_result)


def _settled(reply: Any) -> Settled:
    charged, stream_id = reply
    return Settled(int(charged), stream_id or None)


def settle(
    *, organization_id: int, hold_id: str, charged_units: int, event: Event, budget_keys: Sequence[str] = ()
) -> Invocation[Settled]:
    """Settles the hold to ``charged_units`` (releasing the rest) and appends the usage
    event; ``RELEASE`` as the event gives the hold back and records nothing."""
    keys = [
        redis_keys.credits_free(organization_id),
        redis_keys.credits_holds(organization_id),
        redis_keys.USAGE_STREAM,
        redis_keys.USAGE_PENDING,
        *budget_keys,
    ]
    key_id = "" if event.api_key_id is None else event.api_key_id
    args = [hold_id, charged_units, event.payload, organization_id, key_id, int(event.created_at)]
    return Invocation(SETTLE, keys, args, _settled)


def ack(*, group: str, ids: Sequence[bytes | str]) -> Invocation[int]:
    """Forgets events the drain stored, with their pending charges."""
    return Invocation(ACK, [redis_keys.USAGE_STREAM, redis_keys.USAGE_PENDING], [group, *ids], int)


def expire(*, organization_id: int, now: float | None = None) -> Invocation[int]:
    """Gives back the units of holds whose request died without settling; the units released."""
    keys = [redis_keys.credits_free(organization_id), redis_keys.credits_holds(organization_id)]
    return Invocation(EXPIRE, keys, [int(time.time() if now is None else now)], int)


def _seeded(reply: Any) -> Seeded:
    before, after = reply
    return Seeded(None if before is None else int(before), int(after))


def seed(*, organization_id: int, ledger_units: int, force: bool = False) -> Invocation[Seeded]:
    """Sets the free balance from the ledger; only ``force`` overwrites an existing one."""
    keys = [
        redis_keys.credits_free(organization_id),
        redis_keys.credits_holds(organization_id),
        redis_keys.USAGE_PENDING,
    ]
    args = [min(ledger_units, MAX_UNITS), organization_id, "force" if force else ""]
    return Invocation(SEED_CREDITS, keys, args, _seeded)


def seed_budget(*, slot: BudgetSlot, stored_units: int) -> Invocation[int]:
    """Seeds a missing window counter; the caller holds the drain's lock (see _SEED_BUDGET)."""
    key_id = "" if slot.api_key_id is None else slot.api_key_id
    keys = [slot.key, redis_keys.credits_holds(slot.organization_id), redis_keys.USAGE_STREAM]
    args = [stored_units, slot.ttl_seconds, slot.organization_id, key_id, slot.start, slot.end]
    return Invocation(SEED_BUDGET, keys, args, int)


def free_units(client: redis.Redis, *, organization_id: int) -> int | None:
    value = client.get(redis_keys.credits_free(organization_id))
    return None if value is None else int(value)


def forget(client: redis.Redis, *, organization_id: int) -> None:
    """Drops the free balance, so the next hold seeds it from the ledger again."""
    client.delete(redis_keys.credits_free(organization_id))
