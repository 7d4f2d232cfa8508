"""The fleet spec's ``scaling`` section: one entry per deployment (a pool, or one role of a
disaggregated pool) that tiergate's scaler sizes and KEDA actuates."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from tiergate.spec.base import SpecModel, check_http_url


class ScalingTargets(SpecModel):
    """What one replica should carry. ``kvCacheUsage`` is a 0-1 fraction, as vLLM's gauge."""

    kv_cache_usage: float | None = Field(default=None, gt=0)
    waiting_per_replica: float | None = Field(default=None, gt=0)
    running_per_replica: float | None = Field(default=None, gt=0)
    ttft_p95_s: float | None = Field(default=None, gt=0)
    itl_p95_s: float | None = Field(default=None, gt=0)
    requests_per_replica_s: float | None = Field(default=None, gt=0)
    prompt_tokens_per_replica_s: float | None = Field(default=None, gt=0)
    generation_tokens_per_replica_s: float | None = Field(default=None, gt=0)

    @field_validator("kv_cache_usage")
    @classmethod
    def _fraction(cls, value: float | None) -> float | None:
        if value is not None and value > 1:
            raise ValueError(
                f"vllm:kv_cache_usage_perc is a 0-1 fraction (1 = 100%): {value:g} is never "
                f"reached; for {value:g}% write {value / 100:g}"
            )
        return value


# What each role scales on: prefill is compute-bound (queue, prompt tokens, TTFT), decode is
# memory-bound (sequences in flight, KV cache, generated tokens, inter-token latency).
ROLE_TARGETS = {
    "prefill": frozenset(
        {
            "waiting_per_replica",
            "requests_per_replica_s",
            "prompt_tokens_per_replica_s",
            "ttft_p95_s",
        }
    ),
    "decode": frozenset(
        {
            "running_per_replica",
            "kv_cache_usage",
            "requests_per_replica_s",
            "generation_tokens_per_replica_s",
            "itl_p95_s",
        }
    ),
    "unified": frozenset(ScalingTargets.model_fields),
}


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


# DNS-1123 names: a namespace is a label (63 characters), a Deployment a subdomain (253).
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class KubernetesTarget(SpecModel):
    """Where the scaler reads the deployment's ready and pending replicas (its Deployment and
    pods). Unset fields take the in-cluster defaults: the API server of the cluster the scaler
    runs in, its service account's token and CA, and its own namespace (else ``default``)."""

    namespace: str | None = None
    name: str | None = None  # the Deployment's name; the entry's ``deployment`` by default
    api_server: str | None = None
    token_file: str | None = Field(default=None, min_length=1)
    ca_file: str | None = Field(default=None, min_length=1)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 63 or not _LABEL.match(value)):
            raise ValueError(
                f"{value!r} is not a Kubernetes namespace name: at most 63 lowercase letters, "
                "digits and '-', starting and ending with a letter or digit"
            )
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 253 or not _SUBDOMAIN.match(value)):
            raise ValueError(
                f"{value!r} is not a Kubernetes Deployment name: lowercase letters, digits, '-' "
                "and '.', starting and ending with a letter or digit"
            )
        return value

    @field_validator("api_server")
    @classmethod
    def _api_server(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value)

    @model_validator(mode="after")
    def _tls(self) -> KubernetesTarget:
        api = self.api_server
        if self.ca_file is not None and api is not None and urlsplit(api).scheme != "https":
            raise ValueError(
                f"caFile is set but apiServer {api!r} is not https://: the CA would check nothing"
            )
        return self


class CronSchedule(SpecModel):
    """A time-of-day floor: KEDA's cron trigger (https://keda.sh/docs/scalers/cron/).

    Between a ``start`` and the ``end`` after it (5-field cron expressions on ``timezone``'s
    wall clock), the trigger asks for ``desiredReplicas``; the HPA takes the largest count over
    all triggers, so a floor raises the count inside its window and never lowers it. Outside,
    it asks for nothing beyond the entry's minimum.
    """

    start: str
    end: str
    desired_replicas: int = Field(ge=0)
    timezone: str = "UTC"

    @field_validator("start", "end")
    @classmethod
    def _cron(cls, value: str) -> str:
        # The simulator's parser (KEDA's rules), imported only when a schedule is given.
        from tiergate.sim.cron import parse_cron  # noqa: PLC0415 - spec sits below sim

        parse_cron(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from tiergate.sim.cron import zone  # noqa: PLC0415 - spec sits below sim

        zone(value)
        return value

    @model_validator(mode="after")
    def _distinct(self) -> CronSchedule:
        if self.start.split() == self.end.split():
            raise ValueError(f"start and end are the same ({self.start!r}): KEDA refuses it")
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
    kubernetes: KubernetesTarget | None = None
    # KEDA ScaledObject fields (defaults of its spec): how often KEDA itself polls the triggers,
    # which only matters for activation 0 <-> 1 (minReplicas 0), and how long after the last
    # active poll it scales to zero.
    polling_interval_s: float = Field(default=30, gt=0)
    cooldown_period_s: float = Field(default=300, ge=0)
    schedules: tuple[CronSchedule, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> ScalingEntry:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas {self.min_replicas} > maxReplicas {self.max_replicas}")
        given = {name for name, value in self.targets.model_dump().items() if value is not None}
        if not given:
            raise ValueError("targets: set at least one")
        foreign = sorted(given - ROLE_TARGETS[self.role])
        if foreign:
            raise ValueError(
                f"a {self.role} deployment does not scale on {', '.join(foreign)} (its signals: "
                f"{', '.join(sorted(ROLE_TARGETS[self.role]))})"
            )
        high = [
            s.desired_replicas for s in self.schedules if s.desired_replicas > self.max_replicas
        ]
        if high:
            raise ValueError(
                f"a schedule asks for {max(high)} replicas, above maxReplicas {self.max_replicas}"
                " (the HPA would cap it)"
            )
        down = self.windows.scale_down_stabilization_s
        if self.mode == "tiergate" and down is not None and down < self.cold_start_s:
            raise ValueError(
                f"windows.scaleDownStabilizationS {down:g} is shorter than coldStartS "
                f"{self.cold_start_s:g}: a replica given back could not come back in time"
            )
        return self
