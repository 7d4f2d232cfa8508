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

import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from tiergate.emulator.metrics import ITL_BUCKETS, TTFT_BUCKETS
from tiergate.scaling.signals.histogram import histogram_quantile
from tiergate.scaling.snapshot import ReplicaSignals, Role, Snapshot, snapshot_of
from tiergate.sim.loop import EventLoop
from tiergate.sim.metrics import EngineMetrics, EngineSample

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


# The deployment-wide fields of a Snapshot, which a reader computes only when asked for
# (a histogram quantile costs a rate per bucket).
RATE_FIELDS = ("request_rate", "prompt_token_rate", "generation_token_rate")
QUANTILE_FIELDS = ("ttft_p95_s", "itl_p95_s")
ALL_FIELDS = frozenset(RATE_FIELDS + QUANTILE_FIELDS)


class _Series:
    """One engine's scrapes kept by Prometheus: times and samples, oldest first."""

    __slots__ = ("name", "samples", "stale_at")

    def __init__(self, name: str) -> None:
        self.name = name
        self.samples: deque[tuple[float, EngineSample]] = deque()
        self.stale_at: float | None = None  # when its target disappeared


class SimPrometheus:
    """A Prometheus scraping every engine of ``deployments`` every ``scrape_interval_s``.

    ``retention_s`` must cover the longest ``rate`` window queried (the newest sample of each
    series is kept for the lookback delta besides). Scrapes are scheduled on ``loop`` from its
    current time on.
    """

    __slots__ = (
        "_deployments",
        "_engines",
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
        # deployment -> engine name -> its series
        self._deployments: dict[str, dict[str, _Series]] = {d: {} for d in deployments}
        self.scrape_interval_s = scrape_interval_s
        self.retention_s = retention_s
        self.lookback_delta_s = lookback_delta_s
        self.scrapes = 0
        clock = loop

        def tick() -> None:
            self.scrape(clock.now)

        loop.every(scrape_interval_s, tick)

    def scrape(self, now: float) -> None:
        """One scrape of every target at ``now``; targets gone since the last are marked stale."""
        self.scrapes += 1
        horizon = now - self.retention_s
        forget = now - max(self.retention_s, self.lookback_delta_s)
        for deployment, series in self._deployments.items():
            seen = set()
            for engine in self._engines(deployment):
                name = engine.name
                seen.add(name)
                one = series.get(name)
                if one is None or one.stale_at is not None:
                    one = series[name] = _Series(name)
                one.samples.append((now, engine.read()))
            for name in list(series):
                one = series[name]
                if name not in seen and one.stale_at is None:
                    one.stale_at = now
                samples = one.samples
                while len(samples) > 1 and samples[0][0] <= horizon:
                    samples.popleft()
                if samples[-1][0] <= forget:
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
        fields: frozenset[str] = ALL_FIELDS,
    ) -> Snapshot:
        """What the live :class:`~tiergate.scaling.signals.PrometheusSignals` would read at
        ``now`` with ``SignalQueries.for_vllm(window=window_s)``. Only the deployment-wide
        ``fields`` named are computed (the others are ``None``); the gauges always are."""
        start = now - window_s
        replicas: list[ReplicaSignals] = []
        rates = [0.0, 0.0, 0.0]
        want_rates = any(f in fields for f in RATE_FIELDS)
        want_ttft = "ttft_p95_s" in fields
        want_itl = "itl_p95_s" in fields
        rated = False
        ttft = [0.0] * len(_TTFT_BOUNDS)
        itl = [0.0] * len(_ITL_BOUNDS)
        series = self._deployments[deployment]
        for name in sorted(series):
            one = series[name]
            gauge = _instant(one, now, self.lookback_delta_s)
            if gauge is not None:
                replicas.append(ReplicaSignals(gauge.kv_usage, gauge.waiting, gauge.running, name))
            inside = [(t, s) for t, s in one.samples if start < t <= now]
            if len(inside) < 2:
                continue
            rated = True
            (t0, first), (t1, last) = inside[0], inside[-1]
            n = len(inside)
            if want_rates:
                for i, (v0, v1) in enumerate(
                    (
                        (first.requests, last.requests),
                        (first.prompt_tokens, last.prompt_tokens),
                        (first.generation_tokens, last.generation_tokens),
                    )
                ):
                    rates[i] += extrapolated_rate((t0, v0), (t1, v1), n, start, now)
            if want_ttft:
                _add_bucket_rates(ttft, first.ttft, last.ttft, (t0, t1, n, start, now))
            if want_itl:
                _add_bucket_rates(itl, first.itl, last.itl, (t0, t1, n, start, now))
        replicas += [_UNKNOWN] * (ready - len(replicas))
        values: dict[str, float | None] = dict.fromkeys(ALL_FIELDS)
        if rated:
            for field, rate in zip(RATE_FIELDS, rates, strict=True):
                if field in fields:
                    values[field] = rate
            if want_ttft:
                values["ttft_p95_s"] = _p95(_TTFT_BOUNDS, ttft)
            if want_itl:
                values["itl_p95_s"] = _p95(_ITL_BOUNDS, itl)
        return snapshot_of(
            deployment,
            role,
            now,
            replicas,
            values,
            ready=ready,
            pending=pending,
            pending_ready_at=pending_ready_at,
        )


def _add_bucket_rates(
    into: list[float],
    first: tuple[int, ...],
    last: tuple[int, ...],
    at: tuple[float, float, int, float, float],
) -> None:
    """Add each cumulative bucket's ``rate()`` to ``into``: :func:`extrapolated_rate` with the
    parts that all buckets of one engine share computed once (the hot path of a quantile)."""
    t0, t1, n, start, end = at
    sampled = t1 - t0
    average = sampled / (n - 1)
    threshold = average * 1.1
    to_start = t0 - start
    if to_start >= threshold:
        to_start = average / 2
    to_end = end - t1
    if to_end >= threshold:
        to_end = average / 2
    per_s = 1 / (sampled * (end - start))
    for i, v1 in enumerate(last):
        v0 = first[i]
        increase = v1 - v0
        if increase:  # a counter only grows here; 0 adds nothing
            # Never further back than the counter's zero (v0 >= 0 always).
            reach = sampled * v0 / increase
            reach = to_start if reach > to_start else reach  # min() costs a call per bucket
            into[i] += increase * (sampled + reach + to_end) * per_s


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
        fields: frozenset[str] = ALL_FIELDS,
    ) -> Snapshot:
        """Scrape every engine of ``deployment`` now and read the window's growth; only the
        deployment-wide ``fields`` named are computed."""
        replicas: list[ReplicaSignals] = []
        grown: list[tuple[float, EngineSample, EngineSample]] = []
        known = self._history.get(deployment, {})
        histories = {}
        for engine in self._engines(deployment):
            sample = engine.read()
            name = engine.name
            replicas.append(ReplicaSignals(sample.kv_usage, sample.waiting, sample.running, name))
            history = self._remember(known.get(name), now, sample)
            histories[name] = history
            if len(history) >= 2:
                grown.append((history[-1][0] - history[0][0], history[0][1], sample))
        # Engines no longer listed (pods gone) are forgotten; a new one starts without history.
        self._history[deployment] = histories
        replicas += [_UNKNOWN] * (ready - len(replicas))
        values: dict[str, float | None] = dict.fromkeys(ALL_FIELDS)
        # One divisor for all: the longest span any engine's history covers.
        span = max((g[0] for g in grown), default=0.0)
        if span > 0:
            rates = [0.0, 0.0, 0.0]
            ttft = [0.0] * len(_TTFT_BOUNDS)
            itl = [0.0] * len(_ITL_BOUNDS)
            for _, first, last in grown:
                rates[0] += last.requests - first.requests
                rates[1] += last.prompt_tokens - first.prompt_tokens
                rates[2] += last.generation_tokens - first.generation_tokens
                # Cumulative counts: their growth is the growth of each le series.
                if "ttft_p95_s" in fields:
                    for i, (c0, c1) in enumerate(zip(first.ttft, last.ttft, strict=True)):
                        ttft[i] += c1 - c0
                if "itl_p95_s" in fields:
                    for i, (c0, c1) in enumerate(zip(first.itl, last.itl, strict=True)):
                        itl[i] += c1 - c0
            for field, grew in zip(RATE_FIELDS, rates, strict=True):
                if field in fields:
                    values[field] = grew / span
            if "ttft_p95_s" in fields:
                values["ttft_p95_s"] = _p95(_TTFT_BOUNDS, ttft)
            if "itl_p95_s" in fields:
                values["itl_p95_s"] = _p95(_ITL_BOUNDS, itl)
        return snapshot_of(
            deployment,
            role,
            now,
            replicas,
            values,
            ready=ready,
            pending=pending,
            pending_ready_at=pending_ready_at,
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
