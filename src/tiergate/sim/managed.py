"""The managed API tier (Amazon Bedrock on-demand) in virtual time: latency, quota, prices.

**Latency.** A request's time to first token is drawn from ``ttft_s`` and its output speed
from ``output_tokens_per_s``; the last token comes ``output_tokens / speed`` after the first.
Our references hold no published Bedrock latency figures, so the defaults are stated
assumptions (see :data:`MODEL_PROFILES`): a Claude Sonnet 4 class model answers its first
token in lognormal(median 0.6 s, p95 1.5 s) and streams 60 tokens/s; an open model of
Qwen3-32B's size is faster, lognormal(median 0.3 s, p95 0.8 s) and 90 tokens/s.

**Quota.** Bedrock's on-demand quotas are per model, per Region, per minute: tokens per minute
(input and output together, one quota) and, where the account still has one, requests per
minute (AWS Bedrock user guide, "Quotas for the bedrock-runtime endpoint"). A request is
counted in the quota when it starts: its input tokens plus ``maxTokens`` are reserved, and
when it ends the reservation is settled to input + output tokens x the model's output
burndown rate (5 for Anthropic Claude 4 models, 1 for others: "How tokens are counted in
Amazon Bedrock", token burndown). Cache-read and cache-write tokens are counted as input.

We model a **rolling one-minute window**: a request counts for the 60 s after it started.
AWS does not document a reset on the minute, and a fixed window would let a burst of twice
the quota through across a minute boundary; the rolling window is the stricter reading and
the one third-party descriptions of Bedrock throttling give. A request over either quota is
answered at once with HTTP 429 ``ThrottlingException``, counts for nothing (a request whose
reservation alone exceeds the TPM quota is always throttled), and so meets the
cascade's fallback rules (``statusCode`` lists, the ``errorRate`` breaker) like a live 429.

**Prices** (:func:`managed_price`): a small dated table, looked up by the tier's model id;
Qwen3-32B is quoted at two prices, and the spec's ``priceSource`` picks one. A tier's own
``models[].pricing`` overrides the table.
"""

from __future__ import annotations

import heapq
import random
import re
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

from tiergate.errors import TiergateError
from tiergate.ledger.pricing import Price
from tiergate.sim.distributions import Distribution
from tiergate.spec.governance import Pricing
from tiergate.spec.simulation import ManagedTierSimulation

QUOTA_WINDOW_S = 60.0
THROTTLING_STATUS = 429  # ThrottlingException (Bedrock runtime error table)
_MILLION = 1_000_000
# A LiteLLM-style provider prefix, the Region prefix of a cross-Region inference profile and
# the version suffix go: "us.anthropic.claude-sonnet-4-20250514-v1:0" is
# "anthropic.claude-sonnet-4-20250514".
_PREFIX = re.compile(r"^(bedrock/)?((us|eu|apac|us-gov|global|jp|au|ca)\.)?")
_VERSION = re.compile(r"(-v\d+)?(:\d+)?$")


class ManagedPriceError(TiergateError):
    """No price for a managed tier's model: unknown model id or price source."""


class ManagedAnswer(NamedTuple):
    """What the managed API answers a request: ``status`` 200 or 429, the time to its first
    token and to its end, in seconds after it was sent (a 429 comes back at ``duration_s``)."""

    status: int
    ttft_s: float
    duration_s: float


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """Latency and quota accounting of one managed model (defaults, overridable by the spec)."""

    name: str
    aliases: tuple[str, ...]
    ttft_s: Distribution
    output_tokens_per_s: Distribution
    output_burndown: float


@dataclass(frozen=True, slots=True)
class PriceEntry:
    """One dated price of a model, from one source."""

    model: str  # a ModelProfile.name
    source_key: str  # what the spec's priceSource names
    price: Price
    as_of: str
    source: str


@dataclass(frozen=True, slots=True)
class ManagedPrice:
    """The price a run uses for a tier, and where it came from (shown in the run's output)."""

    price: Price
    as_of: str
    source: str
    source_key: str


def _million(
    input_usd: float, output_usd: float, cached: float | None = None, written: float | None = None
) -> Price:
    """A Price from USD per million tokens (cache prices default to the input price)."""
    return Price(
        input_usd / _MILLION,
        output_usd / _MILLION,
        (input_usd if cached is None else cached) / _MILLION,
        (input_usd if written is None else written) / _MILLION,
    )


_SONNET = "claude-sonnet-4"
_QWEN32 = "qwen3-32b"
_ASSUMED = "assumption (no published Bedrock latency figures in our references)"

MODEL_PROFILES: tuple[ModelProfile, ...] = (
    ModelProfile(
        _SONNET,
        ("anthropic.claude-sonnet-4-20250514", "claude-sonnet-4-20250514", "claude-sonnet-4"),
        Distribution.lognormal(0.6, 1.5),
        Distribution.fixed(60.0),
        5.0,  # Bedrock's output-token burndown rate for Anthropic Claude 4 models
    ),
    ModelProfile(
        _QWEN32,
        ("qwen.qwen3-32b", "qwen/qwen3-32b", "qwen3-32b"),
        Distribution.lognormal(0.3, 0.8),
        Distribution.fixed(90.0),
        1.0,
    ),
    ModelProfile(
        "qwen3-235b-a22b-2507",
        ("qwen.qwen3-235b-a22b-2507", "qwen/qwen3-235b-a22b-instruct-2507", "qwen3-235b-a22b-2507"),
        Distribution.lognormal(0.5, 1.2),
        Distribution.fixed(60.0),
        1.0,
    ),
    ModelProfile(
        "qwen3-coder-30b-a3b",
        ("qwen.qwen3-coder-30b-a3b", "qwen/qwen3-coder-30b-a3b-instruct", "qwen3-coder-30b-a3b"),
        Distribution.lognormal(0.3, 0.8),
        Distribution.fixed(120.0),
        1.0,
    ),
    ModelProfile(
        "qwen3-coder-480b-a35b",
        (
            "qwen.qwen3-coder-480b-a35b",
            "qwen/qwen3-coder-480b-a35b-instruct",
            "qwen3-coder-480b-a35b",
        ),
        Distribution.lognormal(0.6, 1.5),
        Distribution.fixed(60.0),
        1.0,
    ),
)
"""Latency defaults are assumptions (see the module docstring); burndown rates are AWS's."""

_TABLE = "structured table of Bedrock model prices (secondary source), us-east-1 on-demand"
_ALT = "another repository's Bedrock price list (secondary source; differs from the first)"
_ROO = "Roo-Code's Bedrock model table and other code tables (secondary sources), on-demand"
_READ = "2026-12-08"  # the day these figures were read from their sources

PRICE_TABLE: tuple[PriceEntry, ...] = (
    PriceEntry(_SONNET, "bedrock", _million(3.0, 15.0, cached=0.30, written=3.75), _READ, _ROO),
    PriceEntry(_QWEN32, "bedrock", _million(0.15, 0.60), _READ, _TABLE),
    PriceEntry(_QWEN32, "alternate", _million(0.50, 1.50), _READ, _ALT),
    PriceEntry("qwen3-235b-a22b-2507", "bedrock", _million(0.22, 0.88), _READ, _TABLE),
    PriceEntry("qwen3-coder-30b-a3b", "bedrock", _million(0.15, 0.60), _READ, _TABLE),
    PriceEntry("qwen3-coder-480b-a35b", "bedrock", _million(0.22, 1.80), _READ, _TABLE),
)
"""USD per token; the first entry of a model is its default source (``bedrock``)."""


def canonical_model(model_id: str) -> str | None:
    """The :data:`MODEL_PROFILES` name of a model id (Bedrock id, inference profile, Hugging
    Face name), or None when the table does not know it."""
    bare = _VERSION.sub("", _PREFIX.sub("", model_id.strip().lower()))
    for profile in MODEL_PROFILES:
        if bare in profile.aliases:
            return profile.name
    return None


def model_profile(model_id: str) -> ModelProfile | None:
    """The latency and burndown defaults of a model id, None when unknown."""
    name = canonical_model(model_id)
    return next((profile for profile in MODEL_PROFILES if profile.name == name), None)


def price_sources(model_id: str) -> tuple[str, ...]:
    """The price sources the table has for a model id, default first."""
    name = canonical_model(model_id)
    return tuple(entry.source_key for entry in PRICE_TABLE if entry.model == name)


def managed_price(
    model_id: str, *, price_source: str | None = None, pricing: Pricing | None = None
) -> ManagedPrice:
    """The price of a managed tier serving ``model_id``.

    The tier's ``models[].pricing`` (token prices) wins; otherwise the table's entry from
    ``price_source`` (default: the model's first source). Raises :class:`ManagedPriceError`
    for a model the table does not know or a source it has no price from.
    """
    if pricing is not None and pricing.input is not None and pricing.output is not None:
        scale = 1e-3 if pricing.per == "1k" else 1e-6
        cached = pricing.input if pricing.cached_input is None else pricing.cached_input
        written = pricing.input if pricing.cache_write is None else pricing.cache_write
        price = Price(
            pricing.input * scale, pricing.output * scale, cached * scale, written * scale
        )
        return ManagedPrice(price, "", "the fleet spec's models[].pricing", "spec")
    name = canonical_model(model_id)
    entries = [entry for entry in PRICE_TABLE if entry.model == name]
    if not entries:
        known = ", ".join(profile.aliases[0] for profile in MODEL_PROFILES)
        raise ManagedPriceError(
            f"no managed price for model {model_id!r}: give the tier models[].pricing, or use "
            f"a model the table knows ({known})"
        )
    if price_source is None:
        chosen = entries[0]
    else:
        found = [entry for entry in entries if entry.source_key == price_source]
        if not found:
            sources = ", ".join(entry.source_key for entry in entries)
            raise ManagedPriceError(
                f"no price for {model_id!r} from source {price_source!r}: it has {sources}"
            )
        chosen = found[0]
    return ManagedPrice(chosen.price, chosen.as_of, chosen.source, chosen.source_key)


@dataclass(frozen=True, slots=True)
class ManagedSettings:
    """How one managed tier behaves: latency, quota (None: not enforced), burndown."""

    ttft_s: Distribution
    output_tokens_per_s: Distribution
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    output_burndown: float = 1.0
    # A 429 comes back without the model running: a round trip, assumed 50 ms.
    throttle_s: float = 0.05

    def __post_init__(self) -> None:
        if self.output_tokens_per_s.mean <= 0:
            raise ValueError("output_tokens_per_s must be > 0")
        if self.output_burndown <= 0:
            raise ValueError(f"output_burndown must be > 0, got {self.output_burndown}")
        for name in ("requests_per_minute", "tokens_per_minute"):
            limit = getattr(self, name)
            if limit is not None and limit <= 0:
                raise ValueError(f"{name} must be > 0, got {limit}")

    @classmethod
    def for_model(
        cls,
        model_id: str,
        *,
        ttft_s: Distribution | None = None,
        output_tokens_per_s: Distribution | None = None,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        output_burndown: float | None = None,
    ) -> ManagedSettings:
        """Settings for ``model_id``: the given values, else the model's defaults
        (:data:`MODEL_PROFILES`), else the Claude Sonnet 4 class defaults."""
        profile = model_profile(model_id) or MODEL_PROFILES[0]
        return cls(
            ttft_s=ttft_s if ttft_s is not None else profile.ttft_s,
            output_tokens_per_s=(
                output_tokens_per_s
                if output_tokens_per_s is not None
                else profile.output_tokens_per_s
            ),
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
            output_burndown=(
                output_burndown if output_burndown is not None else profile.output_burndown
            ),
        )

    @classmethod
    def from_spec(
        cls, model_id: str, section: ManagedTierSimulation | None = None
    ) -> ManagedSettings:
        """Settings for a tier serving ``model_id`` from its ``simulation.managed`` entry."""
        if section is None:
            return cls.for_model(model_id)
        return cls.for_model(
            model_id,
            ttft_s=section.ttft_s,
            output_tokens_per_s=section.output_tokens_per_s,
            requests_per_minute=section.quota.requests_per_minute,
            tokens_per_minute=section.quota.tokens_per_minute,
            output_burndown=section.output_burndown,
        )


class ManagedTier:
    """A managed API in virtual time: :meth:`admit` answers each request as it is sent.

    Calls must come in time order (the simulator's clock). ``admitted`` and ``throttled``
    count the answers given.
    """

    __slots__ = (
        "_burndown",
        "_rate",
        "_rng",
        "_rpm",
        "_seq",
        "_settle",
        "_throttled",
        "_tokens",
        "_tpm",
        "_ttft",
        "_window",
        "admitted",
        "throttled",
    )

    def __init__(self, settings: ManagedSettings, rng: random.Random) -> None:
        self._ttft = settings.ttft_s
        self._rate = settings.output_tokens_per_s
        self._rpm = settings.requests_per_minute
        self._tpm = settings.tokens_per_minute
        self._burndown = settings.output_burndown
        self._rng = rng
        self._throttled = ManagedAnswer(THROTTLING_STATUS, settings.throttle_s, settings.throttle_s)
        # Requests started in the last minute: [start, tokens counted now, still in window].
        self._window: deque[list[float]] = deque()
        self._tokens = 0.0  # tokens counted in the window now
        # Reservations to settle when their request ends: (end, order, record, settled).
        self._settle: list[tuple[float, int, list[float], float]] = []
        self._seq = 0
        self.admitted = 0
        self.throttled = 0

    @property
    def requests_per_minute(self) -> int | None:
        """The quota's requests per minute, None without one."""
        return self._rpm

    def admit(
        self,
        now: float,
        prompt_tokens: int,
        max_output_tokens: int,
        output_tokens: int | None = None,
    ) -> ManagedAnswer:
        """The answer to a request sent at ``now`` with ``prompt_tokens`` in and up to
        ``max_output_tokens`` out, of which it generates ``output_tokens`` (default: all)."""
        generated = max_output_tokens if output_tokens is None else output_tokens
        if self._rpm is not None or self._tpm is not None:
            reserved = prompt_tokens + max_output_tokens
            if not self._room(now, reserved):
                self.throttled += 1
                return self._throttled
        rng = self._rng
        ttft = self._ttft.sample(rng)
        speed = self._rate.sample(rng)
        duration = ttft + (generated / speed if speed > 0 else 0.0)
        if self._rpm is not None or self._tpm is not None:
            self._count(now, now + duration, reserved, prompt_tokens + generated * self._burndown)
        self.admitted += 1
        return ManagedAnswer(200, ttft, duration)

    def quota_used(self, now: float) -> tuple[int, float]:
        """(requests, tokens) counted in the minute before ``now``."""
        self._advance(now)
        return len(self._window), self._tokens

    def _room(self, now: float, reserved: int) -> bool:
        self._advance(now)
        if self._rpm is not None and len(self._window) >= self._rpm:
            return False
        return self._tpm is None or self._tokens + reserved <= self._tpm

    def _count(self, now: float, end: float, reserved: float, settled: float) -> None:
        record = [now, reserved, 1.0]
        self._window.append(record)
        self._tokens += reserved
        if settled != reserved and self._tpm is not None:
            self._seq += 1
            heapq.heappush(self._settle, (end, self._seq, record, settled))

    def _advance(self, now: float) -> None:
        """Drop requests older than the window and settle the reservations of ended ones.
        In either order the count at ``now`` is the same: an expired record is not settled."""
        window = self._window
        horizon = now - QUOTA_WINDOW_S
        while window and window[0][0] <= horizon:
            record = window.popleft()
            self._tokens -= record[1]
            record[2] = 0.0
        settle = self._settle
        while settle and settle[0][0] <= now:
            _, _, record, settled = heapq.heappop(settle)
            if record[2]:
                self._tokens += settled - record[1]
                record[1] = settled
        if not window:
            self._tokens = 0.0  # no float drift left over from sums
