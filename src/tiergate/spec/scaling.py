"""The fleet spec's ``scaling`` section: one entry per deployment (a pool, or one role of a
disaggregated pool) that tiergate's scaler sizes and KEDA actuates."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from tiergate.spec.base import SpecModel, check_http_url


class ScalingTargets(SpecModel):
    """What one replica should carry. ``kvCacheUsage`` is a 0-1 fraction, as vLLM's gauge."""

    kv_cache_usage: float | None = Field(default=None, gt=0)
    waiting_per_replica: float | None = Field(default=None, gt=0)
    running_per_replica: float | None = Field(default=None, gt=0)
    ttft_p95_s: float | None = Field(default=None, gt=0)
    itl_p95_s: float | None = Field(default=None, gt=0)
    prompt_tokens_per_replica_s: float | None = Field(default=None, gt=0)

    @field_validator("kv_cache_usage")
    @classmethod
    def _fraction(cls, value: float | None) -> float | None:
        if value is not None and value > 1:
            raise ValueError(
                f"vllm:kv_cache_usage_perc is a 0-1 fraction (1 = 100%): {value:g} is never "
                f"reached; for {value:g}% write {value / 100:g}"
            )
        return value


class ScalingWindows(SpecModel):
    stable_s: float = Field(default=60, gt=0)
    panic_s: float = Field(default=6, gt=0)
    panic_threshold: float = Field(default=2.0, gt=1)
    scale_down_stabilization_s: float | None = Field(default=None, gt=0)


class PrometheusSignals(SpecModel):
    url: str
    selector: str = ""
    window_s: float = Field(default=60, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value)


class ScrapeSignals(SpecModel):
    urls: list[str] = Field(min_length=1)
    interval_s: float = Field(default=5, gt=0)

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        return [check_http_url(url) for url in value]


class SignalSource(SpecModel):
    prometheus: PrometheusSignals | None = None
    scrape: ScrapeSignals | None = None

    @model_validator(mode="after")
    def _one(self) -> SignalSource:
        if (self.prometheus is None) == (self.scrape is None):
            raise ValueError("signals need exactly one of prometheus or scrape")
        return self


class ScalingEntry(SpecModel):
    """One deployment the scaler sizes. ``tier`` names the fleet tier it serves (optional)."""

    deployment: str = Field(min_length=1, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    tier: str | None = None
    role: Literal["unified", "prefill", "decode"] = "unified"
    mode: Literal["tiergate", "hpa"] = "tiergate"
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(gt=0)
    cold_start_s: float = Field(default=300, ge=0)
    targets: ScalingTargets
    windows: ScalingWindows = Field(default_factory=ScalingWindows)
    signals: SignalSource

    @model_validator(mode="after")
    def _consistent(self) -> ScalingEntry:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas {self.min_replicas} > maxReplicas {self.max_replicas}")
        targets = self.targets
        needed = {
            "prefill": (
                targets.ttft_p95_s,
                targets.waiting_per_replica,
                targets.prompt_tokens_per_replica_s,
            ),
            "decode": (targets.running_per_replica, targets.kv_cache_usage, targets.itl_p95_s),
            "unified": tuple(targets.model_dump().values()),
        }[self.role]
        if all(value is None for value in needed):
            raise ValueError(f"a {self.role} deployment needs at least one target of its role")
        down = self.windows.scale_down_stabilization_s
        if self.mode == "tiergate" and down is not None and down < self.cold_start_s:
            raise ValueError(
                f"windows.scaleDownStabilizationS {down:g} is shorter than coldStartS "
                f"{self.cold_start_s:g}: a replica given back could not come back in time"
            )
        return self
