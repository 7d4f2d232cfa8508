"""What one simulated engine exposes on ``/metrics``: vLLM's counters, histograms and gauges.

The replica updates an :class:`EngineMetrics` on its hot path with plain attribute increments;
the simulated Prometheus and the direct-scrape reader (:mod:`tiergate.sim.signals`) read it at
their own times, as a cluster's readers would read a vLLM pod.

Bucket bounds are vLLM's (``vllm/v1/metrics/loggers.py``, constants in
``vllm/v1/metrics/buckets.py``): ``vllm:time_to_first_token_seconds`` and
``vllm:inter_token_latency_seconds``, each with the implicit ``+Inf`` bucket.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

from tiergate.emulator.metrics import ITL_BUCKETS, TTFT_BUCKETS
from tiergate.sim.replica import ReplicaSink
from tiergate.sim.request import SimRequest
from tiergate.sim.stats import LogHistogram

# vLLM V1's buckets (PrometheusStatLogger), as the emulator exports them.
Gauges = tuple[float, float, float]  # (running, waiting, kv_usage as a 0-1 fraction)


def cumulative(bounds: tuple[float, ...], counts: list[int]) -> dict[float, float]:
    """Per-bucket counts (one more than ``bounds``: the last is ``+Inf``) as Prometheus'
    cumulative ``_bucket{le=...}`` series, by upper bound."""
    out: dict[float, float] = {}
    total = 0
    for bound, count in zip((*bounds, math.inf), counts, strict=True):
        total += count
        out[bound] = float(total)
    return out


class EngineMetrics:
    """One simulated vLLM engine's metrics; ``name`` is its pod (the ``pod`` label).

    Counters: ``requests_total`` (``vllm:request_success_total``: requests finished),
    ``prompt_tokens_total``, ``generation_tokens_total``. Histograms: per-bucket (not yet
    cumulative) counts in ``ttft_counts`` / ``itl_counts``, cumulated only when read, so an
    observation costs one bisect and one increment. Gauges come from ``gauges()``, supplied by
    the replica, read at scrape time only.
    """

    __slots__ = (
        "gauges",
        "generation_tokens_total",
        "itl_counts",
        "name",
        "prompt_tokens_total",
        "requests_total",
        "ttft_counts",
    )

    def __init__(self, name: str, gauges: Callable[[], Gauges]) -> None:
        self.name = name
        self.gauges = gauges
        self.requests_total = 0
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.ttft_counts = [0] * (len(TTFT_BUCKETS) + 1)
        self.itl_counts = [0] * (len(ITL_BUCKETS) + 1)

    def observe_ttft(self, seconds: float) -> None:
        """One time to first token (``le`` is inclusive: 0.1 s falls in the 0.1 bucket)."""
        self.ttft_counts[bisect.bisect_left(TTFT_BUCKETS, seconds)] += 1

    def observe_itl(self, seconds: float, count: int = 1) -> None:
        """``count`` inter-token gaps of ``seconds`` each (one decode step for a batch)."""
        self.itl_counts[bisect.bisect_left(ITL_BUCKETS, seconds)] += count

    def read(self) -> EngineSample:
        """Everything a scrape at this moment sees."""
        running, waiting, kv_usage = self.gauges()
        return EngineSample(
            requests=float(self.requests_total),
            prompt_tokens=float(self.prompt_tokens_total),
            generation_tokens=float(self.generation_tokens_total),
            ttft=tuple(itertools.accumulate(self.ttft_counts)),
            itl=tuple(itertools.accumulate(self.itl_counts)),
            running=float(running),
            waiting=float(waiting),
            kv_usage=float(kv_usage),
        )


@dataclass(frozen=True, slots=True)
class EngineSample:
    """One scrape of an :class:`EngineMetrics`: counter values, cumulative histogram counts
    (``_bucket{le=...}`` in bound order, ``+Inf`` last), gauges."""

    requests: float
    prompt_tokens: float
    generation_tokens: float
    ttft: tuple[int, ...]
    itl: tuple[int, ...]
    running: float
    waiting: float
    kv_usage: float


class EngineObserver:
    """A replica's :class:`~tiergate.sim.replica.Observer`: its engine's metrics (what the
    scaler scrapes) and its tier's inter-token latency histogram (what the summary shows)."""

    __slots__ = ("itl", "metrics")

    def __init__(self, metrics: EngineMetrics, itl: LogHistogram) -> None:
        self.metrics = metrics
        self.itl = itl

    def first_token(self, ttft_s: float, prompt_tokens: int) -> None:
        metrics = self.metrics
        metrics.observe_ttft(ttft_s)
        metrics.prompt_tokens_total += prompt_tokens

    def generated(self, tokens: int) -> None:
        self.metrics.generation_tokens_total += tokens

    def gaps(self, seconds: float, count: int) -> None:
        self.metrics.observe_itl(seconds, count)
        self.itl.add_many(seconds, count)

    def finished(self) -> None:
        self.metrics.requests_total += 1


class MeteredSink:
    """The gateway as a request-level replica's sink, counting on the way what vLLM's metrics
    would (that model reports per request, not per step: generated tokens are counted when
    a request ends, its gaps as its mean inter-token latency)."""

    __slots__ = ("gateway", "metrics")

    def __init__(self, gateway: ReplicaSink) -> None:
        self.gateway = gateway
        self.metrics: EngineMetrics | None = None

    def first_token(self, request: SimRequest, at: float) -> None:
        metrics = self.metrics
        if metrics is not None:
            metrics.observe_ttft(at - request.attempt_started)
            metrics.prompt_tokens_total += request.prompt_tokens
        self.gateway.first_token(request, at)

    def finished(self, request: SimRequest, at: float) -> None:
        metrics = self.metrics
        if metrics is not None:
            metrics.requests_total += 1
            metrics.generation_tokens_total += request.output_tokens
            if request.itl_s is not None and request.output_tokens > 1:
                metrics.observe_itl(request.itl_s, request.output_tokens - 1)
        self.gateway.finished(request, at)
