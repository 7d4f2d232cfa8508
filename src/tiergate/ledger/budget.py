"""Budgets in USD on keys, teams and projects, enforced by reservations.

Admission reserves the most a request can cost; completion settles it to what it did cost.
A request is admitted only when, for every budget that applies (key, team and project together),
``spent + reserved + amount <= limit``; so concurrent requests can never overspend, and at
``spent == limit`` nothing more is admitted (a request that can cost nothing is checked as if it
cost 1 µUSD). Two books keep the counts: :class:`LocalBudgetBook` for one process and
``budget_redis.RedisBudgetBook`` for replicas sharing one Redis.

Rules:

* Money is integer micro-USD (µUSD) inside the books. Float noise below a nano-USD is dropped
  first; then reservations round **up**, actual costs to the **nearest** µUSD and limits **down**
  (never more than configured).
* A window is the UTC calendar month, or rolling N days made of UTC-day buckets: the spend in
  the window is the sum of the last N day buckets, today included. Spend lands in the bucket
  of the reservation's time, whenever it settles.
* ``Budget.since`` is when the budget was created or last changed: spend before it does not
  count. The counter of the bucket containing ``since`` starts at ``since`` (a counter of its
  own); buckets wholly before it are left out. So a budget added mid-month starts at zero, and
  raising or lowering a limit with a new ``since`` starts a fresh count. Requests in flight when a
  budget changes settle into the count they were admitted under.
* On first use of a bucket a book asks ``seed(scope, since)`` (the ledger store's ``spend``) what
  was spent, so a restart does not forget the month. Older day buckets are seeded by difference
  (``seed(start) - seed(end)``). Records still queued in the store when a counter is seeded are
  not seen: a cold start may undercount by at most the store's flush interval of requests.
  A request admitted before midnight whose record is stamped after it may be counted twice by
  a book that seeds the new bucket later (an overcount, never an undercount).
* ``settle`` and ``release`` of a reservation a second time do nothing.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

from tiergate.ledger.records import Scope
from tiergate.ledger.store import StoreUnavailableError

MICROS_PER_USD = 1_000_000
DAY_S = 86_400
BudgetAction = Literal["reject", "cheapest"]
Seed = Callable[[Scope, float], Awaitable[float]]
"""``(scope, since) -> USD spent by scope at or after since``: the ledger store's ``spend``."""


class BudgetStoreUnavailableError(StoreUnavailableError):
    """The shared budget store (Redis) cannot be reached or answered wrongly. A kind of
    ``StoreUnavailableError``: the gateway fails open or closed on budgets as on the ledger."""


def _nanos(usd: float) -> int:
    if not usd >= 0 or usd == float("inf"):
        raise ValueError(f"an amount of money must be finite and >= 0, not {usd!r}")
    return round(usd * 1e9)


def micros_up(usd: float) -> int:
    """µUSD, rounded up: what a reservation holds."""
    return -(-_nanos(usd) // 1000)


def micros_nearest(usd: float) -> int:
    """µUSD, rounded to the nearest: what an actual cost adds."""
    return (_nanos(usd) + 500) // 1000


def micros_down(usd: float) -> int:
    """µUSD, rounded down: a limit."""
    return _nanos(usd) // 1000


def to_usd(micros: int) -> float:
    return micros / MICROS_PER_USD


def _utc(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


@dataclass(frozen=True, slots=True)
class Bucket:
    """One slice of a window: a UTC day (``2024-11-03``) or a UTC month (``2024-11``)."""

    id: str
    start: float
    end: float


@functools.lru_cache(maxsize=4096)
def _month_bucket(day: int) -> Bucket:
    """The calendar month of UTC day number ``day`` (computed once per day: every request
    asks)."""
    d = _utc(day * DAY_S)
    start = datetime(d.year, d.month, 1, tzinfo=UTC)
    end = datetime(d.year + d.month // 12, d.month % 12 + 1, 1, tzinfo=UTC)
    return Bucket(f"{d.year:04d}-{d.month:02d}", start.timestamp(), end.timestamp())


@functools.lru_cache(maxsize=4096)
def _day_bucket(day: int) -> Bucket:
    start_s = day * DAY_S
    return Bucket(_utc(start_s).date().isoformat(), start_s, start_s + DAY_S)


@dataclass(frozen=True, slots=True)
class Window:
    """``days == 0``: the UTC calendar month; ``days == N > 0``: the last N UTC days."""

    days: int = 0

    def __post_init__(self) -> None:
        if self.days < 0:
            raise ValueError(f"window days must be >= 0, not {self.days}")

    @classmethod
    def month(cls) -> Window:
        return cls(0)

    @classmethod
    def rolling(cls, days: int) -> Window:
        if days < 1:
            raise ValueError(f"a rolling window needs at least 1 day, not {days}")
        return cls(days)

    def __str__(self) -> str:
        return "month" if self.days == 0 else f"{self.days}d"

    @property
    def span_s(self) -> float:
        """The longest the window can be."""
        return (31 if self.days == 0 else self.days) * DAY_S

    def bucket(self, at: float) -> Bucket:
        """The bucket that spend at ``at`` lands in."""
        day = int(at // DAY_S)
        return _month_bucket(day) if self.days == 0 else _day_bucket(day)

    def buckets(self, now: float) -> tuple[Bucket, ...]:
        """The buckets whose spend counts at ``now``, oldest first; the last contains ``now``."""
        current = self.bucket(now)
        if self.days == 0:
            return (current,)
        return tuple(self.bucket(current.start - n * DAY_S) for n in range(self.days - 1, -1, -1))

    def start(self, now: float) -> float:
        """The first instant whose spend counts at ``now``."""
        return self.buckets(now)[0].start

    def reset_at(self, now: float) -> float:
        """When spend next leaves the window: the next month, or the oldest day bucket leaving
        (the next UTC midnight)."""
        return self.bucket(now).end


@dataclass(frozen=True, slots=True)
class Budget:
    """A spending limit on one scope. ``soft_fraction`` of the limit raises the soft warning;
    ``action`` says what the gateway does at the hard limit: reject (429 ``budget_exceeded``)
    or restrict the cascade to its cheapest tiers. ``since``: see the module docstring."""

    scope: Scope
    limit_usd: float
    window: Window = field(default_factory=Window.month)
    soft_fraction: float = 0.8
    action: BudgetAction = "reject"
    since: float | None = None

    def __post_init__(self) -> None:
        micros_down(self.limit_usd)  # validates
        if not 0 < self.soft_fraction <= 1:
            raise ValueError(f"soft_fraction must be in (0, 1], not {self.soft_fraction}")
        if self.action not in ("reject", "cheapest"):
            raise ValueError(f"action must be 'reject' or 'cheapest', not {self.action!r}")

    @property
    def limit_micros(self) -> int:
        return micros_down(self.limit_usd)

    @property
    def soft_limit_usd(self) -> float:
        return self.limit_usd * self.soft_fraction


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """Where a budget stands: USD settled in the window and held by reservations."""

    budget: Budget
    spent_usd: float
    reserved_usd: float

    @property
    def soft_exceeded(self) -> bool:
        """The soft limit counts settled spend only: reservations are worst cases."""
        return self.spent_usd >= self.budget.soft_limit_usd


@dataclass(frozen=True, slots=True)
class Reservation:
    """An admitted request's hold on its budgets. ``counters`` names the spend counters it holds
    (the bucket of ``at`` for each budget); ``statuses`` are the budgets as of admission, this
    reservation included."""

    id: str
    at: float
    amount_micros: int
    budgets: tuple[Budget, ...]
    counters: tuple[str, ...]
    statuses: tuple[BudgetStatus, ...]

    @property
    def amount_usd(self) -> float:
        return to_usd(self.amount_micros)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request a budget does not admit. When several refuse, this is the one that resets
    last; ``reset_at`` (Unix seconds) is when its window next frees spend."""

    budget: Budget
    amount_usd: float
    spent_usd: float
    reserved_usd: float
    limit_usd: float
    reset_at: float

    @property
    def action(self) -> BudgetAction:
        return self.budget.action

    def __str__(self) -> str:
        reset = _utc(self.reset_at).isoformat().replace("+00:00", "Z")
        return (
            f"Budget exceeded for {self.budget.scope}: ${self.spent_usd:.6f} spent and "
            f"${self.reserved_usd:.6f} reserved of ${self.limit_usd:.6f} "
            f"({self.budget.window}); resets at {reset}"
        )


class BudgetBook(Protocol):
    """Where spend and reservations are counted (one process, or shared by replicas)."""

    async def reserve(
        self, budgets: Sequence[Budget], amount_usd: float, now: float
    ) -> Reservation | Refusal:
        """Reserve ``amount_usd`` on every budget, or on none: a Refusal names one that does
        not admit it."""
        ...

    async def settle(self, reservation: Reservation, actual_usd: float, now: float) -> None:
        """Release the reservation and add the actual cost to its buckets (never refused)."""
        ...

    async def release(self, reservation: Reservation) -> None:
        """Release the reservation of a request that never ran."""
        ...

    async def status(self, budget: Budget, now: float) -> tuple[float, float]:
        """``(spent_usd, reserved_usd)`` of the budget's window at ``now``."""
        ...


# -- shared by the books ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Counter:
    """The spend of one scope in one bucket from ``start`` (the bucket's, or ``since``)."""

    id: str
    scope: Scope
    start: float
    end: float


def counters(budget: Budget, now: float) -> tuple[Counter, ...]:
    """The counters of ``budget``'s window at ``now``, oldest first; the last holds ``now``.

    Ids are ``bucket:since:kind:name`` (``since`` is ``-`` when the bucket starts after it), so
    budgets on one scope with the same bucket and cut share a counter."""
    since = budget.since
    found = []
    buckets = budget.window.buckets(now)
    for bucket in buckets:
        is_current = bucket is buckets[-1]
        if since is not None and since >= bucket.end and not is_current:
            continue
        cut = since is not None and since > bucket.start
        start = since if cut and since is not None else bucket.start
        tag = f"{start:.6f}" if cut else "-"
        scope = budget.scope
        cid = f"{bucket.id}:{tag}:{scope.kind.value}:{scope.name}"
        found.append(Counter(cid, scope, start, bucket.end))
    return tuple(found)


async def seed_counters(seed: Seed | None, wanted: Iterable[Counter], now: float) -> dict[str, int]:
    """µUSD spent in each counter before the book knew of it, from the ledger.

    Asks oldest first; a record landing between two answers then counts in the newer bucket,
    and a difference that comes out negative is taken as zero."""
    todo = {c.id: c for c in wanted}
    if seed is None:
        return dict.fromkeys(todo, 0)
    asked: dict[tuple[Scope, float], int] = {}

    async def since(scope: Scope, at: float) -> int:
        if at > now:
            return 0
        if (scope, at) not in asked:
            asked[scope, at] = micros_nearest(await seed(scope, at))
        return asked[scope, at]

    seeded = {}
    for c in sorted(todo.values(), key=lambda c: (c.start, c.id)):
        seeded[c.id] = max(0, await since(c.scope, c.start) - await since(c.scope, c.end))
    return seeded


def admit(
    budgets: Sequence[Budget], totals: Sequence[tuple[int, int]], amount: int, now: float
) -> Refusal | None:
    """The admission rule, given each budget's ``(spent, reserved)`` µUSD: None when admitted."""
    refusals = [
        Refusal(
            b, to_usd(amount), to_usd(s), to_usd(r), to_usd(b.limit_micros), b.window.reset_at(now)
        )
        for b, (s, r) in zip(budgets, totals, strict=True)
        if s + r + max(amount, 1) > b.limit_micros
    ]
    return max(refusals, key=lambda r: r.reset_at) if refusals else None


def new_reservation(
    budgets: Sequence[Budget],
    totals: Sequence[tuple[int, int]],
    amount: int,
    now: float,
    held: Iterable[str],
    *,
    reservation_id: str | None = None,
) -> Reservation:
    """The reservation admitted on ``totals`` (µUSD before it)."""
    statuses = tuple(
        BudgetStatus(b, to_usd(s), to_usd(r + amount))
        for b, (s, r) in zip(budgets, totals, strict=True)
    )
    rid = reservation_id or uuid.uuid4().hex
    return Reservation(rid, now, amount, tuple(budgets), tuple(held), statuses)


@dataclass(frozen=True, slots=True)
class Plan:
    """The distinct counters of some budgets at one time, each budget's indexes into them, and
    the indexes of the current counters (those a reservation holds)."""

    counters: tuple[Counter, ...]
    per_budget: tuple[tuple[int, ...], ...]
    current: tuple[int, ...]


def plan(budgets: Sequence[Budget], now: float) -> Plan:
    index: dict[str, int] = {}
    distinct: list[Counter] = []
    per_budget: list[tuple[int, ...]] = []
    current: list[int] = []
    for budget in budgets:
        mine = []
        for c in counters(budget, now):
            if c.id not in index:
                index[c.id] = len(distinct)
                distinct.append(c)
            mine.append(index[c.id])
        per_budget.append(tuple(mine))
        if mine[-1] not in current:
            current.append(mine[-1])
    return Plan(tuple(distinct), tuple(per_budget), tuple(current))


class LocalBudgetBook:
    """Budgets of one process, in memory. Safe under asyncio: seeding awaits first, then the
    check and the reservation happen without an await between them."""

    def __init__(self, seed: Seed | None = None) -> None:
        self._seed = seed
        self._spent: dict[str, int] = {}
        self._reserved: dict[str, int] = {}
        # Counter id -> the time after which no window can include it (for forgetting).
        self._needed_until: dict[str, float] = {}
        self._open: dict[str, Reservation] = {}
        self._pruned_day = -1
        self._seeding = asyncio.Lock()

    async def _ready(self, budgets: Sequence[Budget], now: float) -> Plan:
        """Plan the budgets' counters and seed the new ones (the only await)."""
        planned = plan(budgets, now)
        # Checked again after each await: another coroutine may have seeded (and used) a
        # counter meanwhile, and a clock that steps back could see one forgotten meanwhile.
        while self._missing(planned):
            async with self._seeding:  # the first of many concurrent first uses seeds
                if missing := self._missing(planned):
                    seeded = await seed_counters(self._seed, missing, now)
                    for cid, micros in seeded.items():
                        self._spent.setdefault(cid, micros)
                        self._reserved.setdefault(cid, 0)
        # No await from here until the caller is done: every planned counter exists, and
        # forgetting spares them (they are all needed until after now).
        for budget, mine in zip(budgets, planned.per_budget, strict=True):
            for i in mine:
                c = planned.counters[i]
                until = c.end + budget.window.span_s
                self._needed_until[c.id] = max(self._needed_until.get(c.id, 0.0), until)
        self._prune(now)
        return planned

    def _missing(self, planned: Plan) -> list[Counter]:
        return [c for c in planned.counters if c.id not in self._spent]

    def _totals(self, planned: Plan) -> list[tuple[int, int]]:
        ids = [[planned.counters[i].id for i in mine] for mine in planned.per_budget]
        return [
            (sum(self._spent[i] for i in mine), sum(self._reserved[i] for i in mine))
            for mine in ids
        ]

    async def reserve(
        self, budgets: Sequence[Budget], amount_usd: float, now: float
    ) -> Reservation | Refusal:
        amount = micros_up(amount_usd)
        planned = await self._ready(budgets, now)
        # No await from here on: the check and the reservation are one step.
        totals = self._totals(planned)
        refusal = admit(budgets, totals, amount, now)
        if refusal is not None:
            return refusal
        held = [planned.counters[i].id for i in planned.current]
        for cid in held:
            self._reserved[cid] += amount
        reservation = new_reservation(budgets, totals, amount, now, held)
        self._open[reservation.id] = reservation
        return reservation

    async def settle(self, reservation: Reservation, actual_usd: float, now: float) -> None:
        actual = micros_nearest(actual_usd)
        if self._finish(reservation):
            for cid in reservation.counters:
                if cid in self._spent:  # else forgotten: out of every window
                    self._spent[cid] += actual

    async def release(self, reservation: Reservation) -> None:
        self._finish(reservation)

    def _finish(self, reservation: Reservation) -> bool:
        if self._open.pop(reservation.id, None) is None:
            return False
        for cid in reservation.counters:
            if cid in self._reserved:
                self._reserved[cid] -= reservation.amount_micros
        return True

    async def status(self, budget: Budget, now: float) -> tuple[float, float]:
        [(spent, reserved)] = self._totals(await self._ready([budget], now))
        return to_usd(spent), to_usd(reserved)

    def _prune(self, now: float) -> None:
        """Forget counters no window can include any more, at most once a UTC day."""
        day = int(now // DAY_S)
        if day == self._pruned_day:
            return
        self._pruned_day = day
        for cid in [c for c, until in self._needed_until.items() if until < now]:
            del self._needed_until[cid], self._spent[cid], self._reserved[cid]
