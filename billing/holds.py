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
from typing import Any

import redis as redis_lib
import redis.asyncio

from billing.usage import PENDING, STREAM
from oneflow.lib.redis import ScriptCall, run_scripts

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


def to_units(amount: Decimal, *, round_up: bool) -> int:
    """Credits to integer units: Redis rounds what it takes up, what it gives down."""
    scaled = amount * UNITS_PER_CREDIT
    return math.ceil(scaled) if round_up else math.floor(scaled)


def to_credits(units: int) -> Decimal:
    return Decimal(units) / UNITS_PER_CREDIT


def free_key(organization_id: int) -> str:
    return f"oneflow:credits:{organization_id}:free"


def holds_key(organization_id: int) -> str:
    return f"oneflow:credits:{organization_id}:holds"


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


@dataclass(frozen=True, slots=True)
class HoldResult:
    status: int  # 1 granted, -1 credits short, -2 credits not seeded, -3 budget not seeded, -4 budget short
    value: int  # free units (status 1/-1), else the 1-based index of the budget concerned
    version: bytes | None  # the configuration version read in the same script

    @property
    def granted(self) -> bool:
        return self.status == 1


@dataclass(frozen=True, slots=True)
class Event:
    """A usage event as settle() appends it to the stream."""

    payload: bytes
    organization_id: int
    api_key_id: int | None
    created_at: float


def _hold_call(
    organization_id: int,
    hold_id: str,
    units: int,
    *,
    budgets: Sequence[BudgetSlot],
    version_key: str,
    now: float | None,
) -> tuple[list[str], list[Any]]:
    expires = int((now or time.time()) + HOLD_TTL_SECONDS)
    keys = [version_key, free_key(organization_id), holds_key(organization_id), *(b.key for b in budgets)]
    return keys, [hold_id, units, expires, *(b.limit_units for b in budgets)]


def _hold_result(reply: Any) -> HoldResult:
    return HoldResult(status=int(reply[0]), value=int(reply[1]), version=reply[2] if len(reply) > 2 else None)


def _settle_call(
    organization_id: int, hold_id: str, charged_units: int, budget_keys: Sequence[str], event: Event
) -> tuple[list[str], list[Any]]:
    keys = [free_key(organization_id), holds_key(organization_id), STREAM, PENDING, *budget_keys]
    key_id = "" if event.api_key_id is None else event.api_key_id
    return keys, [hold_id, charged_units, event.payload, organization_id, key_id, int(event.created_at)]


def _seed_call(organization_id: int, ledger_units: int, force: bool) -> tuple[list[str], list[Any]]:
    keys = [free_key(organization_id), holds_key(organization_id), PENDING]
    return keys, [min(ledger_units, MAX_UNITS), organization_id, "force" if force else ""]


def _budget_seed_call(slot: BudgetSlot, stored_units: int) -> tuple[list[str], list[Any]]:
    key_id = "" if slot.api_key_id is None else slot.api_key_id
    keys = [slot.key, holds_key(slot.organization_id), STREAM]
    return keys, [stored_units, slot.ttl_seconds, slot.organization_id, key_id, slot.start, slot.end]


class Holds:
    """The scripts through a synchronous client (jobs, the drain, tests)."""

    def __init__(self, client: redis_lib.Redis) -> None:
        self.client = client
        self._hold = client.register_script(_HOLD)
        self._settle = client.register_script(_SETTLE)
        self._ack = client.register_script(_ACK)
        self._expire = client.register_script(_EXPIRE)
        self._seed = client.register_script(_SEED_CREDITS)
        self._seed_budget = client.register_script(_SEED_BUDGET)

    def hold(
        self,
        *,
        organization_id: int,
        hold_id: str,
        units: int,
        budgets: Sequence[BudgetSlot] = (),
        version_key: str = "oneflow:config:version",
        now: float | None = None,
    ) -> HoldResult:
        keys, args = _hold_call(organization_id, hold_id, units, budgets=budgets, version_key=version_key, now=now)
        return _hold_result(self._hold(keys=keys, args=args))

    def settle(
        self, *, organization_id: int, hold_id: str, charged_units: int, event: Event, budget_keys: Sequence[str] = ()
    ) -> tuple[int, bytes]:
        keys, args = _settle_call(organization_id, hold_id, charged_units, budget_keys, event)
        charged, stream_id = self._settle(keys=keys, args=args)
        return int(charged), stream_id

    def ack(self, *, group: str, ids: Sequence[bytes | str]) -> int:
        return int(self._ack(keys=[STREAM, PENDING], args=[group, *ids])) if ids else 0

    def expire(self, *, organization_id: int, now: float | None = None) -> int:
        keys = [free_key(organization_id), holds_key(organization_id)]
        return int(self._expire(keys=keys, args=[int(now or time.time())]))

    def seed(self, *, organization_id: int, ledger_units: int, force: bool = False) -> tuple[int | None, int]:
        """(free units before, after); only ``force`` overwrites an existing balance."""
        keys, args = _seed_call(organization_id, ledger_units, force)
        before, after = self._seed(keys=keys, args=args)
        return (None if before is None else int(before)), int(after)

    def seed_budget(self, *, slot: BudgetSlot, stored_units: int) -> int:
        """Seeds a missing window counter; the caller holds the drain's lock (see _SEED_BUDGET)."""
        keys, args = _budget_seed_call(slot, stored_units)
        return int(self._seed_budget(keys=keys, args=args))

    def free_units(self, *, organization_id: int) -> int | None:
        value = self.client.get(free_key(organization_id))
        return None if value is None else int(value)

    def forget(self, *, organization_id: int) -> None:
        """Drops the free balance, so the next hold seeds it from the ledger again."""
        self.client.delete(free_key(organization_id))


class AsyncHolds:
    """The gateway's side of the same scripts, through its asyncio client.

    ``extra`` script calls ride in the same round trip as the hold or the
    settle (the gateway's rate limits and breakers), each atomic on its own;
    their replies come back in order.
    """

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.client = client
        self._hold = client.register_script(_HOLD)
        self._settle = client.register_script(_SETTLE)
        self._seed = client.register_script(_SEED_CREDITS)
        self._seed_budget = client.register_script(_SEED_BUDGET)

    async def hold(
        self,
        *,
        organization_id: int,
        hold_id: str,
        units: int,
        budgets: Sequence[BudgetSlot],
        version_key: str,
        extra: Sequence[ScriptCall] = (),
    ) -> tuple[HoldResult, list[Any]]:
        keys, args = _hold_call(organization_id, hold_id, units, budgets=budgets, version_key=version_key, now=None)
        replies = await run_scripts(self.client, [(self._hold, keys, args), *extra])
        return _hold_result(replies[0]), replies[1:]

    async def settle(
        self,
        *,
        organization_id: int,
        hold_id: str,
        charged_units: int,
        event: Event,
        budget_keys: Sequence[str],
        extra: Sequence[ScriptCall] = (),
    ) -> tuple[int, bytes, list[Any]]:
        """(units charged, the event's stream id, the extra scripts' replies)."""
        keys, args = _settle_call(organization_id, hold_id, charged_units, budget_keys, event)
        replies = await run_scripts(self.client, [(self._settle, keys, args), *extra])
        charged, stream_id = replies[0]
        return int(charged), stream_id, replies[1:]

    async def seed(self, *, organization_id: int, ledger_units: int) -> None:
        keys, args = _seed_call(organization_id, ledger_units, False)
        await self._seed(keys=keys, args=args)

    async def seed_budget(self, *, slot: BudgetSlot, stored_units: int) -> None:
        keys, args = _budget_seed_call(slot, stored_units)
        await self._seed_budget(keys=keys, args=args)
