"""Budgets shared by gateway replicas through Redis (the ``redis`` extra).

The same rule and counters as ``LocalBudgetBook`` (see ``tiergate.ledger.budget``), kept in
Redis so that N replicas together admit what one would. Layout, under ``prefix``:

* ``c:<counter>``: a hash of ``spent`` and ``reserved`` µUSD (integers) of one counter
  (``<bucket>:<since>:<kind>:<name>``). Its TTL is refreshed on every reservation to the
  longest window using it plus two days plus the reservation TTL, so it outlives its window.
* ``z:<counter>``: the counter's open reservations, members ``<µUSD>:<id>`` scored by when
  they expire.
* ``r:<id>``: each reservation, with the reservation TTL; ``done`` once settled or released, so
  that a retried or repeated settle does nothing.

One Lua script reserves: it drops expired reservations, checks every budget and, only when all
admit, holds the amount on each current counter, all atomically. Another settles (reserved ->
spent). A counter never seen is seeded from the ledger by the replica that first needs it, with
``HSETNX`` so that two replicas seeding at once count it once; the script reports such counters
and is run again after seeding.

The reservation TTL (default 1,200 s, twice the longest request we expect) is how a crashed
replica's reservations are given back: a reservation is expired when the caller's ``now`` is
past it. The limitation: a request still running after its reservation expired holds nothing
any more, so others may be admitted into the space and spend can then exceed the limit by that
request's cost; set the TTL above the gateway's total request timeout. If Redis loses its data,
counters are seeded again from the ledger: open reservations are forgotten, and so are records
the ledger has not written yet.

``now`` must be ``time.time()`` on every replica. Every Redis error becomes
``BudgetStoreUnavailableError``. One call touches several keys: on Redis Cluster give the prefix
a hash tag (``"{tiergate:budget}:"``) to keep them in one slot.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

from tiergate.ledger.budget import (
    DAY_S,
    Budget,
    BudgetStoreUnavailableError,
    Counter,
    Plan,
    Refusal,
    Reservation,
    Seed,
    admit,
    micros_nearest,
    micros_up,
    new_reservation,
    plan,
    seed_counters,
    to_usd,
)
from tiergate.ledger.redis_script import RedisScript

if TYPE_CHECKING:
    from redis.asyncio import Redis

# Shared by the scripts. read(h, z, now): spent and reserved of a counter after dropping its
# expired reservations; nil when it was never seeded. Lua numbers are doubles: exact to 2^53
# µUSD (9 billion USD), and formatted with %d where they become strings.
_PRELUDE = """
local function read(h, z, now)
  local spent = redis.call('HGET', h, 'spent')
  if not spent then return nil, nil end
  local old = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  if #old > 0 then
    local sum = 0
    for _, m in ipairs(old) do sum = sum + tonumber(string.match(m, '^(%d+):')) end
    -- (a Lua -0 would reach Redis as "-0", which is not an integer to it)
    if sum > 0 then redis.call('HINCRBY', h, 'reserved', -sum) end
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
  end
  return tonumber(spent), tonumber(redis.call('HGET', h, 'reserved') or '0')
end
local function keep(key, ttl)
  if redis.call('TTL', key) < ttl then redis.call('EXPIRE', key, ttl) end
end
"""

# KEYS: r:<id>, then c: and z: of each counter. ARGV: now (ms), amount, member, reservation TTL
# (ms), the number of held counters, (index, key TTL s) per held counter, the number of
# budgets, then per budget: limit, count of counters, their indexes. Returns {1 admitted or 0,
# spent and reserved per budget before this reservation}, or {-1, unseeded indexes...}. A
# retried call (the reply was lost) finds r:<id> and returns the first call's reply.
_RESERVE = (
    _PRELUDE
    + """
local done = redis.call('GET', KEYS[1])
if done then
  local out = {}
  for w in string.gmatch(done, '%S+') do out[#out + 1] = tonumber(w) end
  return out
end
local now, amount, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
local spent, reserved, missing = {}, {}, {-1}
for i = 1, (#KEYS - 1) / 2 do
  spent[i], reserved[i] = read(KEYS[2 * i], KEYS[2 * i + 1], now)
  if spent[i] == nil then missing[#missing + 1] = i end
end
if #missing > 1 then return missing end
local held = tonumber(ARGV[5])
local pos = 6 + 2 * held
local out = {1}
for b = 1, tonumber(ARGV[pos]) do
  local limit, count = tonumber(ARGV[pos + 1]), tonumber(ARGV[pos + 2])
  pos = pos + 2
  local s, r = 0, 0
  for _ = 1, count do
    pos = pos + 1
    local i = tonumber(ARGV[pos])
    s, r = s + spent[i], r + reserved[i]
  end
  if s + r + math.max(amount, 1) > limit then out[1] = 0 end
  out[#out + 1] = s
  out[#out + 1] = r
end
if out[1] == 0 then return out end
for j = 1, held do
  local i, key_ttl = tonumber(ARGV[4 + 2 * j]), tonumber(ARGV[5 + 2 * j])
  redis.call('HINCRBY', KEYS[2 * i], 'reserved', amount)
  redis.call('ZADD', KEYS[2 * i + 1], now + ttl, ARGV[3])
  keep(KEYS[2 * i], key_ttl)
  keep(KEYS[2 * i + 1], key_ttl)
end
local words = {}
for k, v in ipairs(out) do words[k] = string.format('%d', v) end
redis.call('SET', KEYS[1], table.concat(words, ' '), 'PX', ttl)
return out
"""
)

# KEYS: r:<id>, then c: and z: of each held counter. ARGV: member, amount, actual. A missing
# r:<id> is an expired reservation: its actual cost still counts. Returns 1, or 0 when the
# reservation was already settled or released.
_SETTLE = """
local state = redis.call('GET', KEYS[1])
if state == 'done' then return 0 end
local amount, actual = tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 1, (#KEYS - 1) / 2 do
  local h, z = KEYS[2 * i], KEYS[2 * i + 1]
  if redis.call('ZREM', z, ARGV[1]) == 1 and amount > 0 then
    redis.call('HINCRBY', h, 'reserved', -amount)
  end
  -- An unseeded counter stays unseeded: the next admission seeds it from the ledger.
  if actual > 0 and redis.call('HEXISTS', h, 'spent') == 1 then
    redis.call('HINCRBY', h, 'spent', actual)
  end
end
if state then redis.call('SET', KEYS[1], 'done', 'KEEPTTL') end
return 1
"""

# KEYS: c: and z: of each counter; ARGV: now (ms). Returns {1, spent, reserved} summed, or
# {-1, unseeded indexes...}.
_STATUS = (
    _PRELUDE
    + """
local s, r, missing = 0, 0, {-1}
for i = 1, #KEYS / 2 do
  local a, b = read(KEYS[2 * i - 1], KEYS[2 * i], tonumber(ARGV[1]))
  if a == nil then missing[#missing + 1] = i else s, r = s + a, r + b end
end
if #missing > 1 then return missing end
return {1, s, r}
"""
)

# KEYS: c: of each counter; ARGV: spent and key TTL (s) per counter. The first seeder wins.
_SEED = """
for i, key in ipairs(KEYS) do
  if redis.call('HSETNX', key, 'spent', ARGV[2 * i - 1]) == 1 then
    redis.call('EXPIRE', key, ARGV[2 * i])
  end
end
return 1
"""

# Seeding then reserving again can only fail again if counters vanish in between.
_SEED_ROUNDS = 3
_SEEDED_MEMORY = 100_000


class _Script(RedisScript):
    """A budget script: its replies are integers."""

    def __init__(self, source: str) -> None:
        super().__init__(source, BudgetStoreUnavailableError, "budget store")

    async def __call__(self, client: Redis, keys: Sequence[str], args: Sequence[Any]) -> list[int]:
        reply = await super().__call__(client, keys, args)
        return [int(v) for v in reply] if isinstance(reply, list) else [int(reply)]


class RedisBudgetBook:
    """Budgets in Redis, shared by gateway replicas (see the module docstring)."""

    def __init__(
        self,
        client: Redis,
        seed: Seed | None = None,
        *,
        prefix: str = "tiergate:budget:",
        reservation_ttl_s: float = 1200.0,
    ) -> None:
        if reservation_ttl_s <= 0:
            raise ValueError(f"reservation_ttl_s must be > 0, not {reservation_ttl_s}")
        self._client = client
        self._owns_client = False
        self._seed = seed
        self._prefix = prefix
        self._ttl_ms = max(1, round(reservation_ttl_s * 1000))
        self._reserve = _Script(_RESERVE)
        self._settle = _Script(_SETTLE)
        self._status = _Script(_STATUS)
        self._seed_script = _Script(_SEED)
        self._seeding = asyncio.Lock()
        # Counters this replica seeded: a bounded memory, only to spare the ledger repeats.
        self._seeded: set[str] = set()

    @classmethod
    def from_url(
        cls,
        url: str,
        seed: Seed | None = None,
        *,
        timeout_s: float = 0.5,
        max_connections: int = 64,
        prefix: str = "tiergate:budget:",
        reservation_ttl_s: float = 1200.0,
    ) -> Self:
        """A book with a client of its own (closed by ``aclose``), failing within bounds.

        ``timeout_s`` bounds connecting, each reply and the wait for one of the
        ``max_connections`` pooled connections (more concurrent requests than that queue for
        one rather than fail). A broken pooled connection is retried once, at once: the scripts
        are safe to run twice.
        """
        from redis.asyncio import BlockingConnectionPool, Redis  # noqa: PLC0415 - optional extra
        from redis.asyncio.retry import Retry  # noqa: PLC0415
        from redis.backoff import NoBackoff  # noqa: PLC0415

        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
        )
        book = cls(Redis.from_pool(pool), seed, prefix=prefix, reservation_ttl_s=reservation_ttl_s)
        book._owns_client = True
        return book

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    def _keys(self, counter_ids: Sequence[str]) -> list[str]:
        return [f"{self._prefix}{kind}:{cid}" for cid in counter_ids for kind in ("c", "z")]

    def _key_ttls(self, budgets: Sequence[Budget], planned: Plan) -> list[int]:
        """Per counter: the longest window using it, plus two days and the reservation TTL."""
        ttls = [0] * len(planned.counters)
        for budget, mine in zip(budgets, planned.per_budget, strict=True):
            for i in mine:
                ttls[i] = max(ttls[i], int(budget.window.span_s))
        return [t + 2 * DAY_S + self._ttl_ms // 1000 + 1 for t in ttls]

    async def _seed_missing(
        self,
        budgets: Sequence[Budget],
        planned: Plan,
        indexes: Sequence[int],
        now: float,
        first_round: bool,
    ) -> None:
        """Seed the counters the script found unseeded. Concurrent first uses in this replica
        wait for one of them to seed; only a second round (Redis lost them meanwhile) seeds
        counters again that this replica seeded before."""
        async with self._seeding:
            wanted = [
                (i, planned.counters[i - 1])
                for i in indexes
                if not (first_round and planned.counters[i - 1].id in self._seeded)
            ]
            if wanted:
                await self._seed_these(budgets, planned, wanted, now)

    async def _seed_these(
        self,
        budgets: Sequence[Budget],
        planned: Plan,
        wanted: Sequence[tuple[int, Counter]],
        now: float,
    ) -> None:
        seeded = await seed_counters(self._seed, [c for _, c in wanted], now)
        ttls = self._key_ttls(budgets, planned)
        keys: list[str] = []
        args: list[str | int] = []
        for i, c in wanted:
            keys.append(f"{self._prefix}c:{c.id}")
            args += [seeded[c.id], ttls[i - 1]]
        await self._seed_script(self._client, keys, args)
        if len(self._seeded) > _SEEDED_MEMORY:
            self._seeded.clear()
        self._seeded.update(c.id for _, c in wanted)

    async def reserve(
        self, budgets: Sequence[Budget], amount_usd: float, now: float
    ) -> Reservation | Refusal:
        amount = micros_up(amount_usd)
        if not budgets:  # nothing to hold: no round trip
            return new_reservation(budgets, [], amount, now, [])
        planned = plan(budgets, now)
        rid = uuid.uuid4().hex
        keys = [f"{self._prefix}r:{rid}", *self._keys([c.id for c in planned.counters])]
        ttls = self._key_ttls(budgets, planned)
        args: list[str | int] = [int(now * 1000), amount, f"{amount}:{rid}", self._ttl_ms]
        args.append(len(planned.current))
        for i in planned.current:
            args += [i + 1, ttls[i]]
        args.append(len(budgets))
        for budget, mine in zip(budgets, planned.per_budget, strict=True):
            args += [budget.limit_micros, len(mine), *(i + 1 for i in mine)]
        for round_ in range(_SEED_ROUNDS):
            reply = await self._reserve(self._client, keys, args)
            if reply[0] == -1:
                await self._seed_missing(budgets, planned, reply[1:], now, round_ == 0)
                continue
            totals = list(zip(reply[1::2], reply[2::2], strict=True))
            if reply[0] == 1:
                held = [planned.counters[i].id for i in planned.current]
                return new_reservation(budgets, totals, amount, now, held, reservation_id=rid)
            refusal = admit(budgets, totals, amount, now)
            if refusal is None:
                raise BudgetStoreUnavailableError("budget store: script and rule disagree")
            return refusal
        raise BudgetStoreUnavailableError("budget store: counters vanished while seeding")

    async def settle(self, reservation: Reservation, actual_usd: float, now: float) -> None:
        await self._finish(reservation, micros_nearest(actual_usd))

    async def release(self, reservation: Reservation) -> None:
        await self._finish(reservation, 0)

    async def _finish(self, reservation: Reservation, actual: int) -> None:
        if not reservation.counters:
            return
        rid, amount = reservation.id, reservation.amount_micros
        keys = [f"{self._prefix}r:{rid}", *self._keys(reservation.counters)]
        await self._settle(self._client, keys, [f"{amount}:{rid}", amount, actual])

    async def status(self, budget: Budget, now: float) -> tuple[float, float]:
        planned = plan([budget], now)
        keys = self._keys([c.id for c in planned.counters])
        for round_ in range(_SEED_ROUNDS):
            reply = await self._status(self._client, keys, [int(now * 1000)])
            if reply[0] == 1:
                return to_usd(reply[1]), to_usd(reply[2])
            await self._seed_missing([budget], planned, reply[1:], now, round_ == 0)
        raise BudgetStoreUnavailableError("budget store: counters vanished while seeding")
