"""Spec sections of cost and governance: tier prices, keys, budgets, rate limits, ledger, traces.

Validated here (pydantic, camelCase keys, unknown keys rejected) and carried as they are: the
models are frozen.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from tiergate.spec.base import SpecModel, check_http_url


class Pricing(SpecModel):
    """What a tier costs: per kind of token (``per`` 1k or 1M tokens), per GPU-hour of its pool,
    or both (token prices for budgets, GPU-hours for the report's effective cost).

    ``gpuPool`` says whether the tier's GPUs are a ``fixed`` count, always there (owned or
    reserved: ``gpuHourUsd`` * ``gpus`` every hour), or ``elastic``: nodes that come and go
    with its replicas, billed by the node-second, which the ledger does not hold (the report
    then shows its requests and tokens, and no GPU cost; the simulator prices its nodes).
    """

    per: Literal["1k", "1M"] = "1M"
    input: float | None = Field(default=None, ge=0)
    output: float | None = Field(default=None, ge=0)
    cached_input: float | None = Field(default=None, ge=0)
    cache_write: float | None = Field(default=None, ge=0)
    gpu_hour_usd: float | None = Field(default=None, ge=0)
    gpus: int | None = Field(default=None, gt=0)
    gpu_pool: Literal["fixed", "elastic"] = "fixed"

    @model_validator(mode="after")
    def _complete(self) -> Pricing:
        if (self.input is None) != (self.output is None):
            raise ValueError("input and output prices go together")
        if (self.gpu_hour_usd is None) != (self.gpus is None):
            raise ValueError("gpuHourUsd and gpus go together")
        elastic = self.gpu_pool == "elastic"
        if elastic and self.gpus is not None:
            raise ValueError(
                "gpuPool: elastic has no fixed GPU count to charge: its nodes are billed as "
                "they come and go; drop gpuHourUsd and gpus"
            )
        if self.input is None and self.gpu_hour_usd is None and not elastic:
            raise ValueError(
                "pricing needs input and output prices, gpuHourUsd and gpus, gpuPool: elastic, "
                "or token prices with one of these"
            )
        if self.input is None and (self.cached_input is not None or self.cache_write is not None):
            raise ValueError("cachedInput and cacheWrite need input and output prices")
        return self


class BudgetRule(SpecModel):
    """A budget of a team or a project (key budgets are set on the key)."""

    team: str | None = Field(default=None, min_length=1)
    project: str | None = Field(default=None, min_length=1)
    usd: float = Field(gt=0)
    period: Literal["month"] | None = None
    days: int | None = Field(default=None, gt=0, le=366)
    soft_percent: float = Field(default=80, gt=0, le=100)
    action: Literal["reject", "cheapest"] = "reject"

    @model_validator(mode="after")
    def _one_scope(self) -> BudgetRule:
        if (self.team is None) == (self.project is None):
            raise ValueError("a budget names exactly one of team or project")
        if self.period is not None and self.days is not None:
            raise ValueError("period (calendar month) and days (rolling) exclude each other")
        return self


class RateLimitRule(SpecModel):
    """Requests and tokens per minute of a team (key limits are set on the key)."""

    team: str = Field(min_length=1)
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _some_limit(self) -> RateLimitRule:
        if self.rpm is None and self.tpm is None:
            raise ValueError("a rate limit needs rpm, tpm or both")
        return self


class LedgerSettings(SpecModel):
    """Where every request's record goes."""

    store: str = "sqlite:///tiergate-ledger.db"
    flush_ms: int = Field(default=200, gt=0, le=10_000)
    on_store_down: Literal["open", "closed"] = "open"

    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError(
                "expected sqlite:///PATH or postgresql://USER@HOST/DB, got "
                f"{value.split('://', maxsplit=1)[0]}://…"
            )
        return value


class Governance(SpecModel):
    """Virtual keys, budgets, rate limits and the ledger.

    ``keys``: ``auto`` requires a key once any key exists (open for local use until then),
    ``required`` always, ``off`` never. ``masterKey`` protects ``/admin/``; without it the admin
    API is off. ``redis`` shares rate limits and budget reservations between replicas.
    """

    master_key: str | None = Field(default=None, repr=False, min_length=16)
    keys: Literal["auto", "required", "off"] = "auto"
    redis: str | None = None
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)
    budgets: list[BudgetRule] = Field(default_factory=list)
    rate_limits: list[RateLimitRule] = Field(default_factory=list)
    default_max_tokens: int = Field(default=4096, gt=0)
    max_reservation_usd: float | None = Field(default=None, gt=0)
    stage_header: str = Field(default="x-tiergate-stage", pattern=r"^[A-Za-z0-9-]+$")
    key_cache_ms: int = Field(default=2_000, ge=0)

    @field_validator("rate_limits")
    @classmethod
    def _one_limit_per_team(cls, value: list[RateLimitRule]) -> list[RateLimitRule]:
        teams = [rule.team for rule in value]
        twice = sorted({team for team in teams if teams.count(team) > 1})
        if twice:
            raise ValueError(f"team {', '.join(twice)} has more than one rate limit")
        return value

    @field_validator("redis")
    @classmethod
    def _redis(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected redis://HOST:PORT/DB, rediss://… or unix://…")
        return value


class Langfuse(SpecModel):
    host: str
    public_key: str = Field(min_length=1)
    secret_key: str = Field(min_length=1, repr=False)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return check_http_url(value)


class Tracing(SpecModel):
    """OpenTelemetry traces of requests and attempts, over OTLP/HTTP or to Langfuse."""

    otlp_endpoint: str | None = None
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    service_name: str = "tiergate"
    langfuse: Langfuse | None = None

    @field_validator("otlp_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value)

    @model_validator(mode="after")
    def _one_target(self) -> Tracing:
        if (self.otlp_endpoint is None) == (self.langfuse is None):
            raise ValueError("tracing needs exactly one of otlpEndpoint or langfuse")
        return self
