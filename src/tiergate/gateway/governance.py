"""Governance on the request path: who is asking (virtual keys), may they (rate limits and
budgets, reserved before any upstream is called), and what it cost (settled afterwards, one
ledger record per request).

Budgets are reservation-based: admission reserves the most the request can cost on any tier it
may reach (its prompt bound plus its output limit times its choices at the dearest prices, see
:mod:`tiergate.gateway.generation`), so concurrent requests can never overspend; completion
settles the reservation to the actual cost. A request without an output limit gets
``governance.defaultMaxTokens`` written into it, so the bound holds. Rate limits count the same
bound in their token estimate and settle it to the actual tokens.

Budgets and limits of one process are not shared:
:func:`tiergate.gateway.workers.per_process_limits` keeps ``serve --workers N`` from
multiplying them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from tiergate.gateway.cascade import Skip
from tiergate.gateway.generation import GenerationBound, generation_bound
from tiergate.gateway.inbound import ClientRequest
from tiergate.gateway.openai_errors import OpenAIError
from tiergate.ledger.budget import Budget, BudgetBook, Refusal, Reservation, Window
from tiergate.ledger.keys import KeyRing, presented_key
from tiergate.ledger.ratelimit import (
    Limit,
    LocalRateLimiter,
    RateLimiter,
)
from tiergate.ledger.records import KeyRecord, RequestRecord, Scope, ScopeKind
from tiergate.ledger.store import LedgerStore, StoreUnavailableError
from tiergate.providers.base import Usage
from tiergate.spec import Fleet, Tier
from tiergate.spec.governance import Governance
from tiergate.telemetry.governance_metrics import GovernanceMetrics

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Identity:
    """The caller: a virtual key, or nobody when the gateway runs open."""

    key: KeyRecord | None

    @property
    def key_id(self) -> str | None:
        return self.key.key_id if self.key else None

    @property
    def team(self) -> str | None:
        return self.key.team if self.key else None

    @property
    def project(self) -> str | None:
        return self.key.project if self.key else None


ANONYMOUS = Identity(None)

# Whether no key was sent -> (error code, message) of the 401.
_KEY_REFUSALS = {
    True: (
        "missing_api_key",
        "You didn't provide an API key. Send it as 'Authorization: Bearer sk-tg-…'.",
    ),
    False: ("invalid_api_key", "Incorrect API key provided: the key is unknown or revoked."),
}


@dataclass(slots=True)
class Admission:
    """What admission decided for one request."""

    identity: Identity
    tiers: tuple[str, ...]
    reservation: Reservation | None = None
    budgets: tuple[Budget, ...] = ()
    limits: list[Limit] = field(default_factory=list)
    tokens: int = 0  # the rate limiter's token estimate, settled to the actual count
    skipped: tuple[str, ...] = ()  # tiers of the cascade this key may not use
    bound: GenerationBound | None = None  # what the request may generate, as counted
    warnings: list[str] = field(default_factory=list)


class GovernanceGate:
    """Keys, budgets and the ledger of one fleet (created by the router, closed with it)."""

    def __init__(
        self,
        fleet: Fleet,
        settings: Governance,
        store: LedgerStore,
        book: BudgetBook,
        limiter: RateLimiter,
        *,
        metrics: GovernanceMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = metrics
        self._fleet = fleet
        self._settings = settings
        self.store = store
        self._book = book
        self._limiter = limiter
        self._clock = clock
        self.keys = KeyRing(store, settings.key_cache_ms / 1000)
        self._budget_rules = settings.budgets
        self._tiers = {tier.name: tier for tier in fleet.tiers}
        # Budgets per (key, team, project), built once: admission asks on every request.
        self._budget_sets: dict[
            tuple[KeyRecord | None, str | None, str | None], tuple[Budget, ...]
        ] = {}
        self.master_key = settings.master_key
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.store.open()
        if self._settings.keys == "off":
            log.warning("governance.keys is off: every client is let in without a key")
        elif self._settings.keys == "auto" and not await self.keys.any_keys():
            log.warning(
                "no virtual keys exist yet: the gateway is open to any client until one is "
                "created (tiergate keys create); set governance.keys: required to refuse that"
            )

    @property
    def fails_closed(self) -> bool:
        """Whether requests are refused while the ledger is unavailable (``onStoreDown``)."""
        return self._settings.ledger.on_store_down == "closed"

    def show_ledger(self) -> None:
        """Put the store's state in the metrics."""
        stats = getattr(self.store, "stats", None)
        queued, dropped = (stats.queued, stats.dropped) if stats is not None else (0, 0)
        self.metrics.ledger(available=self.store.available, queued=queued, dropped=dropped)

    async def close(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self.store.close()
        await self._limiter.aclose()
        closing = getattr(self._book, "aclose", None)
        if closing is not None:
            await closing()

    # -- who --------------------------------------------------------------------------------

    async def authenticate(self, headers: Mapping[str, str]) -> Identity:
        """The caller's identity; :class:`OpenAIError` 401 for a missing, unknown or revoked key."""
        mode = self._settings.keys
        if mode == "off":
            return ANONYMOUS
        key = presented_key(headers)
        record = await self.keys.lookup(key) if key is not None else None
        if record is not None:
            return Identity(record)
        if mode == "auto" and not await self.keys.any_keys():
            return ANONYMOUS
        code, message = _KEY_REFUSALS[key is None]
        self.metrics.refusals.labels(code, "").inc()
        raise OpenAIError(401, message, type_="invalid_request_error", code=code)

    # -- may they ---------------------------------------------------------------------------

    async def admit(
        self, identity: Identity, request: ClientRequest, tiers: tuple[str, ...], size: int
    ) -> Admission:
        """Reserve the request's worst-case cost against every budget that applies.

        Raises :class:`OpenAIError`: 400 for an output limit or choice count that is not a
        valid integer, 403 for a model the key may not use, 429 ``rate_limit_exceeded``, 429
        ``insufficient_quota`` (code ``budget_exceeded``, with the reset time) when a hard
        budget has no room, 503 when the store is down and ``onStoreDown: closed``.
        """
        bound = generation_bound(request, self._settings.default_max_tokens)
        key = identity.key
        if key is not None and key.models and request.model not in key.models:
            self.metrics.refusals.labels("model_not_allowed", f"key:{key.key_id}").inc()
            raise OpenAIError(
                403,
                f"This key may not use model '{request.model}' (allowed: {', '.join(key.models)}).",
                type_="permission_error",
                param="model",
                code="model_not_allowed",
            )
        self._check_store()
        admission = Admission(identity, tiers, bound=bound)
        if key is not None and key.models:
            admission.tiers, admission.skipped = self._allowed_tiers(key, tiers)
        tiers = admission.tiers
        now = self._clock()
        admission.limits = self._limits(identity)
        if admission.limits:
            # The prompt's estimate (bytes / 4) plus every token the request may generate;
            # settled to the actual tokens afterwards.
            admission.tokens = size // 4 + bound.tokens
            await self._rate_limit(admission, now)
        budgets = self._budgets(identity)
        if not budgets:
            return admission
        by_tier = {name: self._fleet_tier(name).price.ceiling(size, bound.tokens) for name in tiers}
        amount = self._capped(max(by_tier.values()))
        decision = await self._unless_down(self._book.reserve(budgets, amount, now))
        if decision is None:  # the budget store is down and the gateway fails open
            return admission
        if isinstance(decision, Refusal):
            cheapest = min(by_tier.values())
            if decision.budget.action == "cheapest" and cheapest < amount:
                restricted = tuple(name for name in tiers if by_tier[name] == cheapest)
                retry = await self._book.reserve(budgets, self._capped(cheapest), now)
                if isinstance(retry, Reservation):
                    admission.tiers = restricted
                    admission.warnings.append(f"{decision.budget.scope}: cheapest tiers only")
                    decision = retry
            if isinstance(decision, Refusal):
                scope = str(decision.budget.scope)
                self.metrics.refusals.labels("budget_exceeded", scope).inc()
                self.metrics.budget_used.labels(scope).set(
                    (decision.spent_usd + decision.reserved_usd) / decision.limit_usd
                )
                raise _budget_exceeded(decision, now)
        admission.reservation = decision
        admission.budgets = budgets
        for status in decision.statuses:
            scope = str(status.budget.scope)
            used = (status.spent_usd + status.reserved_usd) / status.budget.limit_usd
            self.metrics.budget_used.labels(scope).set(used)
            if status.soft_exceeded:
                self.metrics.soft_exceeded.labels(scope).inc()
                used = status.spent_usd + status.reserved_usd
                budget = status.budget
                admission.warnings.append(
                    f"{budget.scope} at {100 * used / budget.limit_usd:.0f}% of "
                    f"${budget.limit_usd:g} ({budget.window})"
                )
        return admission

    async def _rate_limit(self, admission: Admission, now: float) -> None:
        verdict = await self._unless_down(
            self._limiter.admit(admission.limits, admission.tokens, now)
        )
        if verdict is None or verdict.allowed:
            return
        scope = (verdict.limit or "").split("/")[0]
        self.metrics.refusals.labels("rate_limit_exceeded", scope).inc()
        if not math.isfinite(verdict.retry_after_s):
            raise OpenAIError(
                429,
                f"This request needs more than {verdict.limit} allows in a minute "
                f"(about {admission.tokens} tokens): it can never be admitted.",
                type_="rate_limit_error",
                code="rate_limit_exceeded",
            )
        retry = max(1, math.ceil(verdict.retry_after_s))
        raise OpenAIError(
            429,
            f"Rate limit reached for {verdict.limit}: retry in {retry} s.",
            type_="rate_limit_error",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(retry)},
        )

    async def _unless_down(self, pending: Awaitable[T]) -> T | None:
        """``pending``'s result; None when its store is down and the gateway fails open."""
        try:
            return await pending
        except StoreUnavailableError as exc:
            if self._settings.ledger.on_store_down == "closed":
                raise OpenAIError(
                    503,
                    "Rate limits and budgets cannot be checked now and this gateway does not "
                    "serve unchecked requests (governance.ledger.onStoreDown: closed).",
                    type_="server_error",
                    code="limits_unavailable",
                ) from exc
            log.warning("limits unavailable, admitting unchecked (onStoreDown: open): %s", exc)
            self.metrics.unchecked.inc()
            return None

    def _limits(self, identity: Identity) -> list[Limit]:
        limits = []
        key = identity.key
        if key is not None and (key.rpm or key.tpm):
            limits.append(Limit(f"key:{key.key_id}", key.rpm, key.tpm))
        for rule in self._settings.rate_limits:
            if rule.team == identity.team:
                limits.append(Limit(f"team:{rule.team}", rule.rpm, rule.tpm))
        return limits

    def _fleet_tier(self, name: str) -> Tier:
        return self._tiers[name]

    def _allowed_tiers(
        self, key: KeyRecord, tiers: tuple[str, ...]
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``tiers`` split into those ``key`` may use and those it may not: a key's ``models``
        name tiers (their public names or upstream model ids), and the restriction holds on
        every tier of the cascade, not only where the request enters it."""
        allowed = set(key.models)
        usable = tuple(
            name for name in tiers if name in allowed or self._fleet_tier(name).model in allowed
        )
        return usable, tuple(name for name in tiers if name not in usable)

    def _capped(self, amount: float) -> float:
        cap = self._settings.max_reservation_usd
        return min(amount, cap) if cap is not None else amount

    def _budgets(self, identity: Identity) -> tuple[Budget, ...]:
        cache_key = (identity.key, identity.team, identity.project)
        cached: tuple[Budget, ...] | None = self._budget_sets.get(cache_key)
        if cached is None:
            if len(self._budget_sets) > 10_000:
                self._budget_sets.clear()  # keys come and go; never grow without bound
            cached = self._budget_sets[cache_key] = self._make_budgets(identity)
        return cached

    def _make_budgets(self, identity: Identity) -> tuple[Budget, ...]:
        budgets = []
        key = identity.key
        if key is not None and key.budget_usd:
            budgets.append(
                Budget(
                    Scope(ScopeKind.KEY, key.key_id),
                    key.budget_usd,
                    _window(key.budget_days),
                    since=key.created_at,
                )
            )
        for rule in self._budget_rules:
            if rule.team is not None and rule.team == identity.team:
                scope = Scope(ScopeKind.TEAM, rule.team)
            elif rule.project is not None and rule.project == identity.project:
                scope = Scope(ScopeKind.PROJECT, rule.project)
            else:
                continue
            budgets.append(
                Budget(
                    scope,
                    rule.usd,
                    _window(rule.days or 0),
                    soft_fraction=rule.soft_percent / 100,
                    action=rule.action,
                )
            )
        return tuple(budgets)

    def _check_store(self) -> None:
        if not self.store.available and self._settings.ledger.on_store_down == "closed":
            raise OpenAIError(
                503,
                "The cost ledger is unavailable and this gateway does not serve unrecorded "
                "requests (governance.ledger.onStoreDown: closed).",
                type_="server_error",
                code="ledger_unavailable",
            )

    # -- what it cost -----------------------------------------------------------------------

    def finish(self, admission: Admission | None, record: RequestRecord) -> None:
        """Settle the reservation and write the record (in the background, never failing)."""
        self.store.record(record)
        if admission is None or (admission.reservation is None and not admission.limits):
            return
        task = asyncio.create_task(self._settle(admission, record))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _settle(self, admission: Admission, record: RequestRecord) -> None:
        now = self._clock()
        if admission.reservation is not None:
            try:
                await self._book.settle(admission.reservation, record.cost_usd, now)
            except Exception:
                log.exception("settling a budget reservation failed")
        if admission.limits:
            # The estimate counted every token the request might generate: give back what it
            # did not (or charge what a long prompt took beyond bytes / 4).
            actual = record.input_tokens + record.output_tokens
            try:
                await self._limiter.adjust(admission.limits, actual - admission.tokens, now)
            except Exception:
                log.exception("settling a rate limit's token estimate failed")


def explain_skips(error: OpenAIError, admission: Admission | None) -> OpenAIError:
    """``error`` (no tier could serve) naming the tiers the key kept the cascade from."""
    if admission is None or not admission.skipped or "attempts" not in error.extra:
        return error
    reason = Skip.KEY_NOT_ALLOWED.value
    error.extra["skipped"] = [{"tier": name, "reason": reason} for name in admission.skipped]
    names = ", ".join(admission.skipped)
    error.message += f" Not tried, as this key may not use them ({reason}): {names}."
    return error


def _window(days: int) -> Window:
    return Window.rolling(days) if days else Window.month()


def _budget_exceeded(refusal: Refusal, now: float) -> OpenAIError:
    reset = datetime.fromtimestamp(refusal.reset_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    budget = refusal.budget
    message = (
        f"Budget exceeded for {budget.scope}: ${refusal.spent_usd:.4f} spent and "
        f"${refusal.reserved_usd:.4f} reserved of ${budget.limit_usd:g} ({budget.window}); "
        f"this request may cost up to ${refusal.amount_usd:.4f}. It resets at {reset}."
    )
    return OpenAIError(
        429,
        message,
        # OpenAI's type for "out of money", which SDKs and retry logic know; tiergate's code.
        type_="insufficient_quota",
        code="budget_exceeded",
        extra={"reset_at": reset, "scope": str(budget.scope)},
        headers={"Retry-After": str(max(1, math.ceil(refusal.reset_at - now)))},
    )


def record_of(
    *,
    started: float,
    request_id: str,
    identity: Identity,
    stage: str | None,
    model: str,
    tier: str | None,
    attempts: Sequence[tuple[str, str]],
    usage: Usage | None,
    cost: float,
    latency_s: float,
    ttft_s: float | None,
    status: int,
    error: str | None,
) -> RequestRecord:
    """The ledger record of a finished request."""
    fallbacks = ",".join(f"{tier}:{reason}" for tier, reason in attempts if reason != "ok")
    return RequestRecord(
        at=started,
        request_id=request_id,
        key_id=identity.key_id,
        team=identity.team,
        project=identity.project,
        stage=stage,
        model=model,
        tier=tier or "none",
        attempts=len(attempts),
        fallbacks=fallbacks,
        input_tokens=usage.prompt if usage else 0,
        output_tokens=usage.completion if usage else 0,
        cached_tokens=usage.cache_read if usage else 0,
        cache_write_tokens=usage.cache_write if usage else 0,
        cost_usd=cost,
        latency_s=latency_s,
        ttft_s=ttft_s,
        status=status,
        error=error,
    )


def create_gate(fleet: Fleet, metrics: GovernanceMetrics) -> GovernanceGate | None:
    """The gate of ``fleet``'s ``governance`` section (None without one)."""
    settings = fleet.governance
    if settings is None:
        return None
    from tiergate.ledger.budget import LocalBudgetBook  # noqa: PLC0415 - only with governance
    from tiergate.ledger.location import store_url  # noqa: PLC0415
    from tiergate.ledger.open import open_store  # noqa: PLC0415

    store = open_store(store_url(fleet), flush_s=settings.ledger.flush_ms / 1000)
    book: BudgetBook
    limiter: RateLimiter
    if settings.redis is None:
        book, limiter = LocalBudgetBook(store.spend), LocalRateLimiter()
    else:
        from tiergate.ledger.budget_redis import RedisBudgetBook  # noqa: PLC0415
        from tiergate.ledger.ratelimit import RedisRateLimiter  # noqa: PLC0415

        book = RedisBudgetBook.from_url(settings.redis, store.spend)
        limiter = RedisRateLimiter.from_url(settings.redis)
    return GovernanceGate(fleet, settings, store, book, limiter, metrics=metrics)
