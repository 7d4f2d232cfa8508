"""Rate limits: requests and tokens per minute, per virtual key and per team.

Every limit is a token bucket. Its capacity is the per-minute figure and it refills
continuously at capacity/60 per second, so a quiet client may burst up to one minute's worth
and then proceeds at the steady rate. A request takes 1 from each ``rpm`` bucket and its token
estimate from each ``tpm`` bucket; admission is all-or-nothing: either every bucket of every
limit has enough and all are charged, or none is. After the response, ``adjust`` settles the
token buckets to the actual count (a bucket may then go below zero: later requests wait until
it has refilled). A request needing more than a bucket's capacity can never be admitted by it
and is refused with ``retry_after_s == math.inf``; so is every request under a limit of 0.

Two implementations of ``RateLimiter``, with the same arithmetic:

- ``LocalRateLimiter``: in this process, for one gateway (the embedded default).
- ``RedisRateLimiter``: shared by every gateway replica through Redis; one Lua script checks and
  charges all buckets of an admission atomically. Needs the ``redis`` extra.

Time is the caller's ``now`` in both, in seconds. For Redis that must be wall-clock time
(``time.time()``), the one clock that replicas share; we do not use Redis ``TIME`` so that both
limiters stay functions of their inputs (tests and the simulator drive them in virtual time).
Replica clocks that disagree (NTP keeps them within milliseconds) cannot make a bucket refill
faster than the fastest clock: a bucket's timestamp never moves backwards, and a caller whose
``now`` is behind it gets no refill. The worst a skew of d seconds buys is d x limit/60 once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Self

from tiergate.errors import LimiterUnavailableError
from tiergate.ledger.redis_script import RedisScript

if TYPE_CHECKING:
    from redis.asyncio import Redis

# Float rounding must not refuse a client that waited exactly retry_after_s. In the level (60/7 s
# of refill at 7/min is 0.9999999999999999 requests): a billionth of a request or token is free.
# In time (a wall-clock `now` near 1.7e9 s is only exact to 0.24 us): retry_after_s is rounded up
# to the microsecond, plus one.
_EPSILON = 1e-9
_MICROSECOND = 1e-6


@dataclass(frozen=True, slots=True)
class Limit:
    """The limits of one scope (``key:tk_ab12``, ``team:ml``); ``None``: no such limit."""

    scope: str
    rpm: int | None = None
    tpm: int | None = None

    def __post_init__(self) -> None:
        if not self.scope:
            raise ValueError("a limit needs a scope")
        for name, value in (("rpm", self.rpm), ("tpm", self.tpm)):
            if value is not None and value < 0:
                raise ValueError(f"{self.scope}: {name} must be >= 0, not {value}")


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer to one request. ``limit`` names the bucket that refused (``team:ml/tpm``),
    the one with the longest wait; ``retry_after_s`` is when every bucket would admit it,
    if nobody else spends meanwhile (``math.inf``: never)."""

    allowed: bool
    retry_after_s: float = 0.0
    limit: str | None = None


ADMITTED = Admission(allowed=True)


class RateLimiter(Protocol):
    async def admit(self, limits: Sequence[Limit], tokens: int, now: float) -> Admission:
        """Charge 1 request and ``tokens`` (an estimate) to every limit, or to none."""
        ...

    async def adjust(self, limits: Sequence[Limit], tokens_delta: int, now: float) -> None:
        """Charge ``tokens_delta`` more tokens (less when negative) after the fact."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class _Charge:
    bucket: str  # "<scope>/rpm" or "<scope>/tpm"
    capacity: int
    amount: int


def _charges(limits: Sequence[Limit], tokens: int) -> list[_Charge]:
    if tokens < 0:
        raise ValueError(f"a token estimate must be >= 0, not {tokens}")
    if len({limit.scope for limit in limits}) != len(limits):
        raise ValueError(f"one scope twice in {[limit.scope for limit in limits]}")
    charges = []
    for limit in limits:
        if limit.rpm is not None:
            charges.append(_Charge(f"{limit.scope}/rpm", limit.rpm, 1))
        if limit.tpm is not None:
            charges.append(_Charge(f"{limit.scope}/tpm", limit.tpm, tokens))
    return charges


def _refused(waits: Sequence[tuple[float, str]]) -> Admission:
    wait, bucket = max(waits, key=lambda item: item[0])  # first of the longest
    if math.isfinite(wait):
        wait = (math.ceil(wait / _MICROSECOND) + 1) * _MICROSECOND
    return Admission(allowed=False, retry_after_s=wait, limit=bucket)


# --- in this process -----------------------------------------------------------------------


@dataclass(slots=True)
class _Bucket:
    level: float
    stamp: float
    capacity: int

    def refill(self, capacity: int, now: float) -> None:
        # The same arithmetic, in the same order, as the Lua script below.
        if now > self.stamp:
            self.level = self.level + (now - self.stamp) * capacity / 60
            self.stamp = now
        self.level = min(self.level, capacity)
        self.capacity = capacity

    def full(self, now: float) -> bool:
        elapsed = max(0.0, now - self.stamp)
        return self.level + elapsed * self.capacity / 60 >= self.capacity


class LocalRateLimiter:
    """Token buckets in a dict; for one gateway process. Safe on one event loop (no awaits)."""

    # How often (in ``now`` seconds) buckets that have refilled are forgotten: a full bucket is
    # the same as none, so memory follows the keys active in the last minute or so.
    sweep_every_s = 60.0

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._swept_at: float | None = None

    def _bucket(self, charge: _Charge, now: float) -> _Bucket:
        bucket = self._buckets.get(charge.bucket)
        if bucket is None:
            bucket = self._buckets[charge.bucket] = _Bucket(charge.capacity, now, charge.capacity)
        bucket.refill(charge.capacity, now)
        return bucket

    def _sweep(self, now: float) -> None:
        if self._swept_at is None or now - self._swept_at >= self.sweep_every_s:
            self._swept_at = now
            for name in [name for name, b in self._buckets.items() if b.full(now)]:
                del self._buckets[name]

    async def admit(self, limits: Sequence[Limit], tokens: int, now: float) -> Admission:
        charges = _charges(limits, tokens)
        self._sweep(now)
        buckets = [self._bucket(charge, now) for charge in charges]
        waits = []
        for charge, bucket in zip(charges, buckets, strict=True):
            if charge.amount > charge.capacity or charge.capacity == 0:
                waits.append((math.inf, charge.bucket))
            elif bucket.level + _EPSILON < charge.amount:
                waits.append(((charge.amount - bucket.level) * 60 / charge.capacity, charge.bucket))
        if waits:
            return _refused(waits)
        for charge, bucket in zip(charges, buckets, strict=True):
            bucket.level -= charge.amount
        return ADMITTED

    async def adjust(self, limits: Sequence[Limit], tokens_delta: int, now: float) -> None:
        for limit in limits:
            if not limit.tpm or tokens_delta == 0:  # None, or 0: it admitted nothing
                continue
            bucket = self._bucket(_Charge(f"{limit.scope}/tpm", limit.tpm, 0), now)
            bucket.level = min(bucket.level - tokens_delta, limit.tpm)

    async def aclose(self) -> None:
        self._buckets.clear()


# --- shared through Redis ------------------------------------------------------------------

# One hash per bucket: level (may be negative) and ts (the `now` of its last refill). A missing
# hash is a full bucket; a hash expires once it would have refilled (plus a second).
# KEYS: buckets; ARGV: now, then capacity and amount per bucket.
# Returns {1} or {0, wait as a string (Redis truncates Lua numbers to integers), bucket index}.
_ADMIT = """
local now = tonumber(ARGV[1])
local levels, stamps, worst, wait = {}, {}, 0, 0
for i, key in ipairs(KEYS) do
  local cap, amount = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local state = redis.call('HMGET', key, 'level', 'ts')
  local level, ts = tonumber(state[1]), tonumber(state[2])
  if level == nil or ts == nil then level, ts = cap, now end
  if now > ts then level, ts = level + (now - ts) * cap / 60, now end
  if level > cap then level = cap end
  levels[i], stamps[i] = level, ts
  local need = 0
  if amount > cap or cap == 0 then need = math.huge
  elseif level + 1e-9 < amount then need = (amount - level) * 60 / cap end
  if need > wait then wait, worst = need, i end
end
if worst > 0 then
  if wait == math.huge then return {0, 'inf', worst} end
  return {0, string.format('%.17g', wait), worst}
end
for i, key in ipairs(KEYS) do
  local cap, level = tonumber(ARGV[2 * i]), levels[i] - tonumber(ARGV[2 * i + 1])
  redis.call('HSET', key, 'level', string.format('%.17g', level),
             'ts', string.format('%.17g', stamps[i]))
  redis.call('PEXPIRE', key, math.ceil((cap - level) * 60000 / cap) + 1000)
end
return {1}
"""

# KEYS: tpm buckets; ARGV: now, tokens delta, then capacity per bucket.
_ADJUST = """
local now, delta = tonumber(ARGV[1]), tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  local cap = tonumber(ARGV[2 + i])
  local state = redis.call('HMGET', key, 'level', 'ts')
  local level, ts = tonumber(state[1]), tonumber(state[2])
  if level == nil or ts == nil then level, ts = cap, now end
  if now > ts then level, ts = level + (now - ts) * cap / 60, now end
  if level > cap then level = cap end
  level = level - delta
  if level > cap then level = cap end
  if cap > 0 then
    redis.call('HSET', key, 'level', string.format('%.17g', level),
               'ts', string.format('%.17g', ts))
    redis.call('PEXPIRE', key, math.ceil((cap - level) * 60000 / cap) + 1000)
  end
end
return 1
"""


def _number(value: float) -> str:
    return repr(float(value))


class RedisRateLimiter:
    """Token buckets in Redis, shared by gateway replicas; ``now`` must be ``time.time()``.

    Bucket keys are ``prefix + "<scope>/rpm"`` (or ``/tpm``). One admission touches several
    keys, so on Redis Cluster give the prefix a hash tag (``"{tiergate}:rl:"``) to keep them in
    one slot. Every Redis error becomes ``LimiterUnavailableError``.
    """

    def __init__(self, client: Redis, *, prefix: str = "tiergate:rl:") -> None:
        self._client = client
        self._owns_client = False
        self._prefix = prefix
        self._admit = RedisScript(_ADMIT, LimiterUnavailableError, "rate limiter")
        self._adjust = RedisScript(_ADJUST, LimiterUnavailableError, "rate limiter")

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = 0.5, prefix: str = "tiergate:rl:") -> Self:
        """A limiter with a client of its own (closed by ``aclose``), failing within bounds.

        ``timeout_s`` bounds connecting and each reply; a broken pooled connection (Redis
        restarted) is retried once, at once: admission is on the request path.
        """
        # The redis extra is optional: imported where it is used.
        from redis.asyncio import Redis  # noqa: PLC0415
        from redis.asyncio.retry import Retry  # noqa: PLC0415
        from redis.backoff import NoBackoff  # noqa: PLC0415

        client = Redis.from_url(
            url,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
        )
        limiter = cls(client, prefix=prefix)
        limiter._owns_client = True
        return limiter

    async def admit(self, limits: Sequence[Limit], tokens: int, now: float) -> Admission:
        charges = _charges(limits, tokens)
        if not charges:
            return ADMITTED
        args = [_number(now)]
        for charge in charges:
            args += [str(charge.capacity), str(charge.amount)]
        keys = [self._prefix + charge.bucket for charge in charges]
        reply = await self._admit(self._client, keys, args)
        if int(reply[0]) == 1:
            return ADMITTED
        return _refused([(float(reply[1]), charges[int(reply[2]) - 1].bucket)])

    async def adjust(self, limits: Sequence[Limit], tokens_delta: int, now: float) -> None:
        scoped = [limit for limit in limits if limit.tpm is not None]
        if not scoped or tokens_delta == 0:
            return
        keys = [f"{self._prefix}{limit.scope}/tpm" for limit in scoped]
        args = [_number(now), str(tokens_delta), *(str(limit.tpm) for limit in scoped)]
        await self._adjust(self._client, keys, args)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
