"""Credit holds in Redis: reserve a request's worst-case cost before calling
upstream, settle to the actual cost after, in one atomic script each.

Redis keeps, per organization, the credits still free for new holds (in
integer units of 1e-6 credit) and a hash of open holds. PostgreSQL stays the
truth: when the free balance is missing (a new worker, a flushed Redis) it is
seeded from the ledger balance minus the open holds.

Not yet wired into the gateway: that comes with the billing issue's holds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from decimal import Decimal

import redis as redis_lib
import redis.asyncio

UNITS_PER_CREDIT = 1_000_000
HOLD_TTL_SECONDS = 15 * 60  # longer than any request may run

_HOLD = """
-- KEYS[1] free units of the organization, KEYS[2] its open holds (hash)
-- ARGV[1] hold id, ARGV[2] units, ARGV[3] expiry (unix seconds)
local free = redis.call('GET', KEYS[1])
if not free then return {-2, 0} end
free = tonumber(free)
local units = tonumber(ARGV[2])
if free < units then return {-1, free} end
redis.call('DECRBY', KEYS[1], units)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ':' .. ARGV[3])
return {1, free - units}
"""

_SETTLE = """
-- KEYS[1] free units, KEYS[2] open holds; ARGV[1] hold id, ARGV[2] actual units
-- Returns the units charged: never more than the hold, -1 if the hold is gone.
local entry = redis.call('HGET', KEYS[2], ARGV[1])
if not entry then return -1 end
redis.call('HDEL', KEYS[2], ARGV[1])
local held = tonumber(string.match(entry, '^(%d+):'))
local charged = math.min(held, tonumber(ARGV[2]))
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('INCRBY', KEYS[1], held - charged)
end
return charged
"""

_EXPIRE = """
-- KEYS[1] free units, KEYS[2] open holds; ARGV[1] now (unix seconds)
-- Gives back the units of holds whose request died without settling.
local released = 0
local entries = redis.call('HGETALL', KEYS[2])
for i = 1, #entries, 2 do
  local units, expires = string.match(entries[i + 1], '^(%d+):(%d+)$')
  if tonumber(expires) <= tonumber(ARGV[1]) then
    redis.call('HDEL', KEYS[2], entries[i])
    released = released + tonumber(units)
  end
end
if released > 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('INCRBY', KEYS[1], released)
end
return released
"""

_SEED = """
-- KEYS[1] free units, KEYS[2] open holds; ARGV[1] ledger balance in units
-- Sets the free units once (NX): the ledger balance minus what open holds keep.
local held = 0
local entries = redis.call('HVALS', KEYS[2])
for _, entry in ipairs(entries) do
  held = held + tonumber(string.match(entry, '^(%d+):'))
end
redis.call('SET', KEYS[1], tonumber(ARGV[1]) - held, 'NX')
return tonumber(redis.call('GET', KEYS[1]))
"""


def to_units(amount: Decimal, *, round_up: bool) -> int:
    """Credits to integer units: reservations round up, so a hold always covers its cost."""
    scaled = amount * UNITS_PER_CREDIT
    return math.ceil(scaled) if round_up else math.floor(scaled)


def _keys(organization_id: int) -> list[str]:
    return [f"oneflow:credits:{organization_id}:free", f"oneflow:credits:{organization_id}:holds"]


@dataclass(frozen=True)
class HoldResult:
    granted: bool
    seeded: bool  # False: the free balance is missing and must be seeded first
    free_units: int


class Holds:
    """The scripts, bound to one synchronous client (tests, jobs); the gateway
    will use the same scripts through its asyncio client."""

    def __init__(self, client: redis_lib.Redis) -> None:
        self.client = client
        self._hold = client.register_script(_HOLD)
        self._settle = client.register_script(_SETTLE)
        self._expire = client.register_script(_EXPIRE)
        self._seed = client.register_script(_SEED)

    def hold(self, *, organization_id: int, hold_id: str, units: int, now: float | None = None) -> HoldResult:
        expires = int((now or time.time()) + HOLD_TTL_SECONDS)
        status, free = self._hold(keys=_keys(organization_id), args=[hold_id, units, expires])
        return HoldResult(granted=status == 1, seeded=status != -2, free_units=int(free))

    def settle(self, *, organization_id: int, hold_id: str, actual_units: int) -> int:
        return int(self._settle(keys=_keys(organization_id), args=[hold_id, actual_units]))

    def expire(self, *, organization_id: int, now: float | None = None) -> int:
        return int(self._expire(keys=_keys(organization_id), args=[int(now or time.time())]))

    def seed(self, *, organization_id: int, ledger_units: int) -> int:
        return int(self._seed(keys=_keys(organization_id), args=[ledger_units]))

    def free_units(self, *, organization_id: int) -> int | None:
        value = self.client.get(_keys(organization_id)[0])
        return None if value is None else int(value)


class AsyncHolds:
    """The same scripts through an asyncio client, for the gateway."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._hold = client.register_script(_HOLD)
        self._settle = client.register_script(_SETTLE)
        self._seed = client.register_script(_SEED)

    async def hold(self, *, organization_id: int, hold_id: str, units: int) -> HoldResult:
        expires = int(time.time() + HOLD_TTL_SECONDS)
        status, free = await self._hold(keys=_keys(organization_id), args=[hold_id, units, expires])
        return HoldResult(granted=status == 1, seeded=status != -2, free_units=int(free))

    async def settle(self, *, organization_id: int, hold_id: str, actual_units: int) -> int:
        return int(await self._settle(keys=_keys(organization_id), args=[hold_id, actual_units]))

    async def seed(self, *, organization_id: int, ledger_units: int) -> int:
        return int(await self._seed(keys=_keys(organization_id), args=[ledger_units]))
