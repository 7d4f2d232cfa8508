"""Scaling signals from simulated engines, read the way a cluster's readers read vLLM pods.

Two readers build :class:`~tiergate.scaling.snapshot.Snapshot`\\ s for the live policies:

* :class:`SimPrometheus` (the spec's ``signals.prometheus``, and KEDA's Prometheus triggers):
  every ``scrape_interval_s`` it scrapes every engine and keeps each engine's samples over the
  longest window asked for; a query at ``t`` answers what the live PromQL of
  :meth:`tiergate.scaling.signals.SignalQueries.for_vllm` would answer from the samples scraped
  up to ``t``: the lag a scaler behind Prometheus lives with.
* :class:`SimScrape` (``signals.scrape``): each read scrapes every engine at that moment and
  turns the counters' growth since the oldest scrape of its window into rates, as the live
  :class:`tiergate.scaling.signals.ScrapeSignals` does.

PromQL semantics kept (Prometheus ``promql/functions.go`` and the querying docs,
https://prometheus.io/docs/prometheus/latest/querying/basics/):

* an instant query's gauge is the newest sample within the lookback delta (5 minutes); a target
  that is gone (its pod deleted) is marked stale at the next scrape and drops out at once;
* ``rate(x[w])`` uses the samples in the left-open range ``(t - w, t]`` (Prometheus 3), needs
  two, and extrapolates the increase between the first and the last towards the range's ends
  (``extrapolatedRate``, see :func:`extrapolated_rate`);
* ``histogram_quantile(0.95, sum by (le) (rate(..._bucket[w])))``: the rates of each bucket
  summed over engines, then the live :func:`~tiergate.scaling.signals.histogram_quantile`.

Simplifications: all targets are scraped at the same instants (Prometheus spreads them over the
interval by a hash of the target); a new engine is scraped from the next scrape on (service
discovery is taken as instant); counters never reset (a restarted pod is a new engine, with a
new name).
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from tiergate.scaling.signals.histogram import histogram_quantile
from tiergate.scaling.snapshot import ReplicaSignals, Role, Snapshot
from tiergate.sim.loop import EventLoop
from tiergate.sim.metrics import ITL_BUCKETS, TTFT_BUCKETS, EngineMetrics, EngineSample

# Prometheus' --query.lookback-delta default: an instant query sees samples up to 5 min old.
LOOKBACK_DELTA_S = 300.0
# kube-prometheus-stack's ServiceMonitor/PodMonitor convention (Prometheus' own global default
# scrape_interval is 1 m; the Prometheus Operator and kube-prometheus scrape every 30 s, most
# vLLM and KEDA examples every 15 s). 15 s is also the HPA sync period.
DEFAULT_SCRAPE_INTERVAL_S = 15.0

Engines = Callable[[str], Sequence[EngineMetrics]]
_TTFT_BOUNDS = (*TTFT_BUCKETS, math.inf)
_ITL_BOUNDS = (*ITL_BUCKETS, math.inf)
_UNKNOWN = ReplicaSignals(None, None, None)


def extrapolated_rate(
    first: tuple[float, float], last: tuple[float, float], samples: int, start: float, end: float
) -> float:
    """Prometheus' ``rate()`` of a counter over ``(start, end]`` from its first and last sample
    in the range, each ``(t, value)`` (``samples`` of them, at least two), as
    ``extrapolatedRate`` computes it.

    The increase ``last_v - first_v`` is extrapolated from the sampled interval towards each end
    of the range by the gap to that end, unless the gap exceeds 1.1 average sample intervals
    (then by half an interval: the series likely started or ended there); towards the start
    never further than the counter would take to reach 0 from ``first_v``. Divided by the range.
    """
    first_t, first_v = first
    last_t, last_v = last
    increase = last_v - first_v
    sampled = last_t - first_t
    average = sampled / (samples - 1)
    threshold = average * 1.1
    to_start = first_t - start
    to_end = end - last_t
    if to_start >= threshold:
        to_start = average / 2
    if increase > 0 and first_v >= 0:
        to_start = min(to_start, sampled * first_v / increase)
    if to_end >= threshold:
        to_end = average / 2
    return increase * (sampled + to_start + to_end) / sampled / (end - start)


def _cumulative(counts: tuple[int, ...]) -> list[int]:
    return list(itertools.accumulate(counts))


class _Series:
    """One engine's scrapes kept by Prometheus: times and samples, oldest first."""

    __slots__ = ("deployment", "name", "samples", "stale_at")

    def __init__(self, name: str, deployment: str) -> None:
        self.name = name
        self.deployment = deployment
        self.samples: deque[tuple[float, EngineSample]] = deque()
        self.stale_at: float | None = None  # when its target disappeared


class SimPrometheus:
    """A Prometheus scraping every engine of ``deployments`` every ``scrape_interval_s``.

    ``retention_s`` must cover the longest ``rate`` window queried. Scrapes are scheduled on
    ``loop`` from its current time on.
    """

    __slots__ = (
        "_deployments",
        "_engines",
        "_series",
        "lookback_delta_s",
        "retention_s",
        "scrape_interval_s",
        "scrapes",
    )

    def __init__(
        self,
        loop: EventLoop,
        engines: Engines,
        deployments: Iterable[str],
        *,
        scrape_interval_s: float = DEFAULT_SCRAPE_INTERVAL_S,
        retention_s: float = 600.0,
        lookback_delta_s: float = LOOKBACK_DELTA_S,
    ) -> None:
        if not scrape_interval_s > 0:
            raise ValueError(f"scrape_interval_s must be > 0, not {scrape_interval_s}")
        self._engines = engines
        self._deployments = tuple(dict.fromkeys(deployments))
        self.scrape_interval_s = scrape_interval_s
        self.retention_s = max(retention_s, lookback_delta_s)
        self.lookback_delta_s = lookback_delta_s
        self._series: dict[str, _Series] = {}
        self.scrapes = 0
        clock = loop

        def tick() -> None:
            self.scrape(clock.now)

        loop.every(scrape_interval_s, tick)

    def scrape(self, now: float) -> None:
        """One scrape of every target at ``now``; targets gone since the last are marked stale."""
        self.scrapes += 1
        series = self._series
        seen: set[str] = set()
        for deployment in self._deployments:
            for engine in self._engines(deployment):
                name = engine.name
                seen.add(name)
                one = series.get(name)
                if one is None or one.stale_at is not None:
                    one = series[name] = _Series(name, deployment)
                one.samples.append((now, engine.read()))
        horizon = now - self.retention_s
        for name in list(series):
            one = series[name]
            if name not in seen and one.stale_at is None:
                one.stale_at = now
            samples = one.samples
            while samples and samples[0][0] <= horizon:
                samples.popleft()
            if not samples:
                del series[name]

    def snapshot(
        self,
        deployment: str,
        role: Role,
        *,
        window_s: float,
        ready: int,
        pending: int = 0,
        pending_ready_at: tuple[float, ...] = (),
        now: float,
    ) -> Snapshot:
        """What the live :class:`~tiergate.scaling.signals.PrometheusSignals` would read at
        ``now`` with ``SignalQueries.for_vllm(window=window_s)``."""
        start = now - window_s
        replicas: list[ReplicaSignals] = []
        requests = prompt = generation = 0.0
        rated = False
        ttft = [0.0] * len(_TTFT_BOUNDS)
        itl = [0.0] * len(_ITL_BOUNDS)
        for one in sorted(self._series.values(), key=_by_name):
            if one.deployment != deployment:
                continue
            gauge = _instant(one, now, self.lookback_delta_s)
            if gauge is not None:
                replicas.append(
                    ReplicaSignals(gauge.kv_usage, gauge.waiting, gauge.running, name=one.name)
                )
            inside = [(t, s) for t, s in one.samples if start < t <= now]
            if len(inside) < 2:
                continue
            rated = True
            (t0, first), (t1, last) = inside[0], inside[-1]
            n = len(inside)

            def rate(v0: float, v1: float, t0: float = t0, t1: float = t1, n: int = n) -> float:
                return extrapolated_rate((t0, v0), (t1, v1), n, start, now)

            requests += rate(first.requests, last.requests)
            prompt += rate(first.prompt_tokens, last.prompt_tokens)
            generation += rate(first.generation_tokens, last.generation_tokens)
            for i, (v0, v1) in enumerate(
                zip(_cumulative(first.ttft), _cumulative(last.ttft), strict=True)
            ):
                ttft[i] += rate(v0, v1)
            for i, (v0, v1) in enumerate(
                zip(_cumulative(first.itl), _cumulative(last.itl), strict=True)
            ):
                itl[i] += rate(v0, v1)
        replicas += [_UNKNOWN] * (ready - len(replicas))
        return Snapshot(
            deployment=deployment,
            role=role,
            at=now,
            ready=ready,
            replicas=tuple(replicas),
            pending=pending,
            pending_ready_at=pending_ready_at,
            request_rate=requests if rated else None,
            prompt_token_rate=prompt if rated else None,
            generation_token_rate=generation if rated else None,
            ttft_p95_s=_p95(_TTFT_BOUNDS, ttft) if rated else None,
            itl_p95_s=_p95(_ITL_BOUNDS, itl) if rated else None,
        )


def _by_name(series: _Series) -> str:
    return series.name


def _instant(series: _Series, now: float, lookback_s: float) -> EngineSample | None:
    """The newest sample at or before ``now`` within the lookback, unless marked stale."""
    if series.stale_at is not None and series.stale_at <= now:
        return None
    for t, sample in reversed(series.samples):
        if t <= now:
            return sample if t > now - lookback_s else None
    return None


def _p95(bounds: tuple[float, ...], counts: list[float]) -> float | None:
    return histogram_quantile(0.95, dict(zip(bounds, counts, strict=True)))


class SimScrape:
    """The direct-scrape reader: each :meth:`snapshot` scrapes the engines at that moment.

    As the live ``ScrapeSignals``: per engine, the scrapes of the last ``window_s`` seconds plus
    the newest one at or before the window's start (the baseline); rates are each engine's
    growth since its baseline divided by one span for all, the longest any engine covers (an
    engine that joined within it served nothing before); an engine's first scrape gives its
    gauges only. An engine no longer listed is forgotten.
    """

    __slots__ = ("_engines", "_history", "window_s")

    def __init__(self, engines: Engines, window_s: float = 60.0) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        self._engines = engines
        self.window_s = window_s
        # deployment -> engine name -> scrapes, oldest first
        self._history: dict[str, dict[str, deque[tuple[float, EngineSample]]]] = {}

    def snapshot(
        self,
        deployment: str,
        role: Role,
        *,
        ready: int,
        pending: int = 0,
        pending_ready_at: tuple[float, ...] = (),
        now: float,
    ) -> Snapshot:
        """Scrape every engine of ``deployment`` now and read the window's growth."""
        engines = self._engines(deployment)
        replicas: list[ReplicaSignals] = []
        grown: list[tuple[float, EngineSample, EngineSample]] = []
        known = self._history.setdefault(deployment, {})
        histories = {}
        for engine in engines:
            sample = engine.read()
            replicas.append(
                ReplicaSignals(sample.kv_usage, sample.waiting, sample.running, name=engine.name)
            )
            history = self._remember(known.get(engine.name), now, sample)
            histories[engine.name] = history
            if len(history) >= 2:
                grown.append((history[-1][0] - history[0][0], history[0][1], sample))
        # Engines no longer listed (pods gone) are forgotten; a new one starts without history.
        self._history[deployment] = histories
        span = max((g[0] for g in grown), default=0.0)
        rated = bool(grown) and span > 0
        requests = prompt = generation = 0.0
        ttft = [0.0] * len(_TTFT_BOUNDS)
        itl = [0.0] * len(_ITL_BOUNDS)
        for _, first, last in grown:
            requests += last.requests - first.requests
            prompt += last.prompt_tokens - first.prompt_tokens
            generation += last.generation_tokens - first.generation_tokens
            for i, (v0, v1) in enumerate(zip(first.ttft, last.ttft, strict=True)):
                ttft[i] += v1 - v0
            for i, (v0, v1) in enumerate(zip(first.itl, last.itl, strict=True)):
                itl[i] += v1 - v0
        replicas += [_UNKNOWN] * (ready - len(replicas))
        per_s = 1 / span if rated else 0.0
        return Snapshot(
            deployment=deployment,
            role=role,
            at=now,
            ready=ready,
            replicas=tuple(replicas),
            pending=pending,
            pending_ready_at=pending_ready_at,
            request_rate=requests * per_s if rated else None,
            prompt_token_rate=prompt * per_s if rated else None,
            generation_token_rate=generation * per_s if rated else None,
            ttft_p95_s=_p95(_TTFT_BOUNDS, _rates(ttft, per_s)) if rated else None,
            itl_p95_s=_p95(_ITL_BOUNDS, _rates(itl, per_s)) if rated else None,
        )

    def _remember(
        self, history: deque[tuple[float, EngineSample]] | None, now: float, sample: EngineSample
    ) -> deque[tuple[float, EngineSample]]:
        if history is None:
            history = deque()
        while history and history[-1][0] >= now:  # a second read at the same instant replaces
            history.pop()
        history.append((now, sample))
        start = now - self.window_s
        while len(history) > 2 and history[1][0] <= start:
            history.popleft()
        return history


def _rates(per_bucket: list[float], per_s: float) -> list[float]:
    """Per-bucket growth as cumulative rates."""
    return [count * per_s for count in itertools.accumulate(per_bucket)]
