"""The fleet spec as pydantic models: the edge where YAML becomes typed values.

Field names are snake_case in Python and camelCase in YAML (the seed's spelling). Every model
forbids unknown keys, so a misspelt key is an error rather than a silently ignored setting.
Cross-references (cascade entries, default model, duplicate names) are checked in
:mod:`tiergate.spec.checks`, which can report them together with these field errors.

Later capabilities add their own top-level sections (keys and budgets, pools, scaling, SLOs,
observability) as further optional fields of :class:`FleetSpec`; the seed's two sections,
``routing`` and ``models``, keep their meaning.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    PlainSerializer,
    PlainValidator,
    field_validator,
    model_validator,
)

from tiergate.spec.base import SpecModel, check_http_url
from tiergate.spec.cluster import ClusterSpec
from tiergate.spec.comparator import Threshold, parse_threshold
from tiergate.spec.deployments import Deployment
from tiergate.spec.governance import Governance, Pricing, Tracing
from tiergate.spec.nodepools import NodePools, Quotas
from tiergate.spec.scaling import ScalingEntry
from tiergate.spec.simulation import Simulation

PROVIDERS = ("openai-compatible", "bedrock")
STRATEGIES = ("cascade",)

Provider = Literal["openai-compatible", "bedrock"]
ThresholdField = Annotated[Threshold, PlainValidator(parse_threshold), PlainSerializer(str)]
StatusCode = Annotated[int, Field(ge=100, le=599)]


class HealthCheck(SpecModel):
    """Active health check of a tier's upstream.

    ``endpoint`` is a path resolved against the origin of the tier's ``baseUrl`` (so ``/health``
    on ``http://host:8000/v1`` probes ``http://host:8000/health``, where vLLM serves it), or an
    absolute URL.
    """

    endpoint: str = "/health"
    interval_ms: int = Field(default=10_000, gt=0)
    timeout_ms: int = Field(default=2_000, gt=0)
    unhealthy_threshold: int = Field(default=3, ge=1)
    healthy_threshold: int = Field(default=2, ge=1)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if value.startswith("/"):
            return value
        if "://" in value:
            return check_http_url(value)
        raise ValueError(f"expected a path starting with '/' or an http(s) URL, got {value!r}")


class Timeouts(SpecModel):
    """Per-attempt limits on one upstream (tiergate's addition to the seed format)."""

    connect_ms: int = Field(default=5_000, gt=0)
    # Without it, the response's first byte may take up to totalMs (the cascade's latencyMs
    # still moves on sooner while another tier is left to try).
    first_byte_ms: int | None = Field(default=None, gt=0)
    total_ms: int = Field(default=600_000, gt=0)
    # Longest silence between two chunks of a response body (a stalled stream ends then).
    idle_ms: int = Field(default=30_000, gt=0)


class Spillover(SpecModel):
    """Load-aware spillover: send new requests to the next tier while this one is saturated.

    The gateway scrapes each engine's Prometheus ``/metrics`` (vLLM names) every
    ``scrapeIntervalMs``; the tier is saturated while the mean over its engines of
    ``vllm:num_requests_waiting`` reaches ``maxWaiting`` or of ``vllm:kv_cache_usage_perc``
    (0-1) reaches ``maxKvCacheUsage``. Data older than ``staleAfterMs`` is ignored.
    """

    max_waiting: float | None = Field(default=None, ge=0)
    max_kv_cache_usage: float | None = Field(default=None, gt=0, le=1)
    metrics_urls: list[str] | None = Field(default=None, min_length=1)
    scrape_interval_ms: int = Field(default=1_000, gt=0)
    stale_after_ms: int = Field(default=5_000, gt=0)

    @field_validator("metrics_urls")
    @classmethod
    def _urls(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [check_http_url(url) for url in value]

    @model_validator(mode="after")
    def _some_limit(self) -> Spillover:
        if self.max_waiting is None and self.max_kv_cache_usage is None:
            raise ValueError("spillover needs maxWaiting, maxKvCacheUsage or both")
        return self


class ModelEntry(SpecModel):
    """One entry of ``models[]``: a tier of the cascade, served by one upstream."""

    name: str = Field(min_length=1, pattern=r"^\S+$")
    provider: Provider
    model: str = Field(min_length=1)
    base_url: str | None = None
    priority: int | None = None
    cost_per_1k_tokens: float | None = Field(default=None, ge=0, alias="costPer1kTokens")
    max_tokens: int | None = Field(default=None, gt=0)
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")
    health_check: HealthCheck | None = None
    api_key: str | None = Field(default=None, repr=False)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    spillover: Spillover | None = None
    pricing: Pricing | None = None

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value)


class FallbackCondition(SpecModel):
    """One item of ``fallbackConditions``: exactly one of its keys is set."""

    status_code: list[StatusCode] | None = Field(default=None, min_length=1)
    latency_ms: ThresholdField | None = None
    error_rate: ThresholdField | None = None

    @field_validator("latency_ms")
    @classmethod
    def _latency(cls, value: Threshold | None) -> Threshold | None:
        if value is not None and value.limit <= 0:
            raise ValueError(f"expected a latency limit above 0 ms, got {value}")
        return value

    @field_validator("error_rate")
    @classmethod
    def _error_rate(cls, value: Threshold | None) -> Threshold | None:
        if value is not None and not 0 <= value.limit < 1:
            raise ValueError(
                f"expected an error-rate limit between 0 and 1 (a share, 0.1 = 10%), got {value}"
            )
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> FallbackCondition:
        present = [v for v in (self.status_code, self.latency_ms, self.error_rate) if v is not None]
        if len(present) != 1:
            raise ValueError(
                "each fallback condition sets exactly one of statusCode, latencyMs, errorRate, "
                f"got {len(present)}"
            )
        return self


class Breaker(SpecModel):
    """How the ``errorRate`` condition is measured and recovered from."""

    window_ms: int = Field(default=60_000, gt=0)
    min_requests: int = Field(default=10, ge=1)
    cooldown_ms: int = Field(default=30_000, gt=0)


class Routing(SpecModel):
    """How requests move through the tiers."""

    default_model: str | None = None
    strategy: Literal["cascade"] = "cascade"
    cascade_order: list[str] | None = Field(default=None, min_length=1)
    fallback_conditions: list[FallbackCondition] | None = None
    breaker: Breaker = Field(default_factory=Breaker)


class Gateway(SpecModel):
    """Settings of ``tiergate serve`` that belong with the fleet rather than the command line."""

    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    drain_timeout_ms: int = Field(default=30_000, ge=0)
    # Slow clients: time allowed for a request's headers (from the connection's start or the
    # previous response; it also ends idle keep-alive connections) and for its whole body.
    header_timeout_ms: int = Field(default=10_000, gt=0)
    body_timeout_ms: int = Field(default=30_000, gt=0)


class FleetSpec(SpecModel):
    """The whole fleet: the single document every tiergate command reads."""

    routing: Routing = Field(default_factory=Routing)
    models: list[ModelEntry] = Field(min_length=1)
    gateway: Gateway = Field(default_factory=Gateway)
    governance: Governance | None = None
    tracing: Tracing | None = None
    scaling: list[ScalingEntry] = Field(default_factory=list)
    deployments: list[Deployment] = Field(default_factory=list)
    simulation: Simulation = Field(default_factory=Simulation)
    node_pools: NodePools = ()
    quotas: Quotas = Field(default_factory=Quotas)
    cluster: ClusterSpec = Field(default_factory=ClusterSpec)

    @field_validator("scaling")
    @classmethod
    def _unique_deployments(cls, value: list[ScalingEntry]) -> list[ScalingEntry]:
        seen: set[tuple[str, str]] = set()
        for entry in value:
            key = (entry.deployment, entry.role)
            if key in seen:
                raise ValueError(f"deployment {entry.deployment} ({entry.role}) is listed twice")
            seen.add(key)
        return value

    @field_validator("routing", mode="before")
    @classmethod
    def _empty_routing(cls, value: object) -> object:
        # ``routing:`` with nothing under it is an empty section, not an error.
        return {} if value is None else value
