"""Signals from each replica's own ``/metrics``: no Prometheus in between, so no scrape lag.

Each read scrapes every replica once, at the caller's ``now``, and keeps per replica the scrapes
of the last ``window_s`` seconds plus the newest one before them as the baseline. Rates and
quantiles come from how much the counters and histogram buckets grew since the baseline, step
by step as PromQL's ``increase`` does (without its extrapolation): at a step where a counter went
down, or a ``_created`` timestamp moved, the engine restarted and the growth over that step is
the new value itself. A replica that cannot be scraped loses its history: its counters may
restart meanwhile, and one read without its rates is better than a wrong one.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tiergate.scaling.signals.histogram import histogram_quantile
from tiergate.scaling.snapshot import ReplicaSignals, Role, Snapshot, snapshot_of
from tiergate.telemetry.vllm_page import parse_vllm_load

_RUNNING = "vllm:num_requests_running"
# Snapshot field -> counter, by its declared name (exposed with _total, started at _created).
_COUNTERS: Mapping[str, str] = {
    "request_rate": "vllm:request_success",
    "prompt_token_rate": "vllm:prompt_tokens",
    "generation_token_rate": "vllm:generation_tokens",
}
# Snapshot field -> histogram, current vLLM name first, then the name it had before.
_HISTOGRAMS: Mapping[str, tuple[str, ...]] = {
    "ttft_p95_s": ("vllm:time_to_first_token_seconds",),
    "itl_p95_s": ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
}
_HISTOGRAM_NAMES = frozenset(name for names in _HISTOGRAMS.values() for name in names)
_TRACKED = frozenset(_COUNTERS.values()) | _HISTOGRAM_NAMES
_PREFIXES = (_RUNNING, *sorted(_TRACKED))


@dataclass(frozen=True, slots=True)
class EngineScrape:
    """One scrape of one engine's ``/metrics``, at ``at`` (the reader's clock).

    ``counters``: cumulative value by counter name (without ``_total``), summed over series;
    ``histograms``: cumulative count by bucket bound, summed over series, by ``Snapshot``
    field; ``started``: the earliest ``_created`` timestamp, which moves only on a restart.
    """

    at: float
    kv_usage: float | None
    waiting: float | None
    running: float | None
    counters: Mapping[str, float] = field(default_factory=dict)
    histograms: Mapping[str, Mapping[float, float]] = field(default_factory=dict)
    started: float | None = None


def parse_engine_page(text: str, at: float) -> EngineScrape:
    """What the scaling signals need from a vLLM ``/metrics`` page; ValueError if it is not
    Prometheus text. Waiting and KV usage are read as the gateway reads them (summed over
    engines, averaged); NaN samples count as absent."""
    waiting, kv_usage = parse_vllm_load(text)
    # prometheus_client's parser is slow on the hundreds of histogram lines of a vLLM page:
    # hand it only the lines of the series read here (untyped without their TYPE lines, which
    # changes nothing to sample names).
    wanted = "\n".join(line for line in text.split("\n") if line.startswith(_PREFIXES))
    running: float | None = None
    counters: dict[str, float] = {}
    buckets: dict[str, dict[float, float]] = {}
    created: list[float] = []
    for family in text_string_to_metric_families(wanted):
        for sample in family.samples:
            value = float(sample.value)
            name = sample.name
            if math.isnan(value):
                continue
            if name == _RUNNING:
                running = (running or 0.0) + value
            elif name.endswith("_created") and name.removesuffix("_created") in _TRACKED:
                created.append(value)
            elif name.endswith("_total") and name.removesuffix("_total") in _COUNTERS.values():
                counter = name.removesuffix("_total")
                counters[counter] = counters.get(counter, 0.0) + value
            elif name.endswith("_bucket") and name.removesuffix("_bucket") in _HISTOGRAM_NAMES:
                le = sample.labels.get("le")
                if le is not None:
                    histogram = buckets.setdefault(name.removesuffix("_bucket"), {})
                    bound = float(le)
                    histogram[bound] = histogram.get(bound, 0.0) + value
    histograms: dict[str, Mapping[float, float]] = {}
    for signal, names in _HISTOGRAMS.items():
        found = next((buckets[name] for name in names if name in buckets), None)
        if found is not None:
            histograms[signal] = found
    return EngineScrape(
        at=at,
        kv_usage=kv_usage,
        waiting=waiting,
        running=running,
        counters=counters,
        histograms=histograms,
        started=min(created, default=None),
    )


def _restarted(before: EngineScrape, after: EngineScrape) -> bool:
    if None not in (before.started, after.started) and after.started != before.started:
        return True
    for name, value in after.counters.items():
        if name in before.counters and value < before.counters[name]:
            return True
    for signal, counts in after.histograms.items():
        old = before.histograms.get(signal, {})
        if any(count < old[bound] for bound, count in counts.items() if bound in old):
            return True
    return False


def _increase(
    history: Sequence[EngineScrape],
) -> tuple[dict[str, float], dict[str, dict[float, float]]]:
    """How much each counter and each histogram bucket grew from the first scrape to the last,
    through restarts; only what every scrape has."""
    counters = dict.fromkeys(history[-1].counters, 0.0)
    histograms = {signal: dict.fromkeys(b, 0.0) for signal, b in history[-1].histograms.items()}
    for before, after in itertools.pairwise(history):
        restarted = _restarted(before, after)
        for name in list(counters):
            if name not in before.counters or name not in after.counters:
                del counters[name]
                continue
            counters[name] += after.counters[name] - (0.0 if restarted else before.counters[name])
        for signal in list(histograms):
            old = before.histograms.get(signal)
            new = after.histograms.get(signal)
            if old is None or new is None or old.keys() != new.keys():
                del histograms[signal]
                continue
            grown = histograms[signal]
            for bound in grown:
                grown[bound] += new[bound] - (0.0 if restarted else old[bound])
    return counters, histograms


class ScrapeSignals:
    """Reads a deployment's signals by scraping each replica's ``/metrics`` URL.

    Rates and quantiles cover the last ``window_s`` seconds (of the ``now`` the caller passes
    to :meth:`read`); a replica's first scrape gives its gauges, its rates start at the next
    read. ``session`` is the caller's; each scrape may take ``timeout_s``.
    """

    def __init__(
        self,
        urls: Sequence[str],
        session: aiohttp.ClientSession,
        window_s: float = 60.0,
        *,
        timeout_s: float = 2.0,
    ) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        self.window_s = window_s
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._history: dict[str, deque[EngineScrape]] = {}
        self._urls: tuple[str, ...] = ()
        self.set_urls(urls)

    @property
    def urls(self) -> tuple[str, ...]:
        return self._urls

    def set_urls(self, urls: Iterable[str]) -> None:
        """Scrape these replicas from now on: a new URL starts without history (a new
        replica), a URL no longer listed is forgotten (a replica gone)."""
        urls = tuple(urls)
        if len(set(urls)) != len(urls):
            raise ValueError(f"a /metrics URL is listed twice: {urls}")
        self._urls = urls
        for url in set(self._history) - set(urls):
            del self._history[url]

    async def read(
        self,
        deployment: str,
        role: Role,
        *,
        ready: int,
        pending: int = 0,
        pending_ready_at: tuple[float, ...] = (),
        now: float,
    ) -> Snapshot:
        """Scrape every replica now; ``None`` and a note for whatever cannot be known.

        ``replicas`` has one entry per URL, in order; rates are summed over the replicas
        that have a window, quantiles taken over their buckets together.
        """
        urls = self._urls
        pages = await asyncio.gather(*(self._scrape(url, now) for url in urls))
        notes: list[str] = []
        replicas: list[ReplicaSignals] = []
        rates: dict[str, float] = {}
        bucket_rates: dict[str, dict[float, float]] = {}
        increases: list[tuple[float, dict[str, float], dict[str, dict[float, float]]]] = []
        for url, page in zip(urls, pages, strict=True):
            if isinstance(page, str):
                self._history.pop(url, None)
                notes.append(f"{url}: {page}")
                replicas.append(ReplicaSignals(None, None, None, name=url))
                continue
            replicas.append(ReplicaSignals(page.kv_usage, page.waiting, page.running, name=url))
            gauges = {"kv_usage": page.kv_usage, "waiting": page.waiting, "running": page.running}
            absent = [signal for signal, value in gauges.items() if value is None]
            if absent:
                notes.append(f"{url}: no {', '.join(absent)} in its /metrics")
            history = self._remember(url, page)
            if len(history) < 2:
                notes.append(f"{url}: first scrape, its rates count from the next read")
                continue
            increases.append((history[-1].at - history[0].at, *_increase(history)))
        # One divisor for all: the window the longest history covers. A replica that joined
        # within it served nothing before (dividing by its own shorter span would count the
        # traffic that moved to it twice, once more in the older replicas' averages).
        span = max((increase[0] for increase in increases), default=0.0)
        for _, counters, histograms in increases:
            for signal, counter in _COUNTERS.items():
                if counter in counters:
                    rates[signal] = rates.get(signal, 0.0) + counters[counter] / span
            for signal, grown in histograms.items():
                merged = bucket_rates.setdefault(signal, {})
                for bound, count in grown.items():
                    merged[bound] = merged.get(bound, 0.0) + count / span
        if ready and len(urls) != ready:  # 0: the caller does not know
            notes.append(f"{len(urls)} replicas to scrape, {ready} ready")
            # Ready replicas that are not scraped are unknown, not idle.
            replicas += [ReplicaSignals(None, None, None)] * (ready - len(urls))
        values: dict[str, float | None] = {}
        for signal, counter in _COUNTERS.items():
            values[signal] = rates.get(signal)
            if values[signal] is None:
                notes.append(f"{signal}: unknown (no replica with {counter}_total in a window)")
        for signal, names in _HISTOGRAMS.items():
            summed = bucket_rates.get(signal)
            values[signal] = None if summed is None else histogram_quantile(0.95, summed)
            if summed is None:
                notes.append(f"{signal}: unknown (no replica with {names[0]} in a window)")
            elif values[signal] is None:
                notes.append(f"{signal}: nothing observed in the window (unknown, not 0)")
        return snapshot_of(
            deployment,
            role,
            now,
            replicas,
            values,
            ready=ready,
            pending=pending,
            pending_ready_at=pending_ready_at,
            notes=notes,
        )

    def _remember(self, url: str, scrape: EngineScrape) -> deque[EngineScrape]:
        history = self._history.setdefault(url, deque())
        # A read at the same instant, or a clock that went back, replaces what came after.
        while history and history[-1].at >= scrape.at:
            history.pop()
        history.append(scrape)
        # The newest scrape at or before the window's start stays, as the baseline.
        start = scrape.at - self.window_s
        while len(history) > 2 and history[1].at <= start:
            history.popleft()
        return history

    async def _scrape(self, url: str, now: float) -> EngineScrape | str:
        """The replica's page read, or why not."""
        try:
            async with self._session.get(url, timeout=self._timeout) as response:
                if response.status != 200:
                    return f"unreachable (HTTP {response.status})"
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return f"unreachable ({exc!r})"
        try:
            return parse_engine_page(body.decode("utf-8", errors="replace"), now)
        except ValueError as exc:
            return f"unreadable /metrics ({exc})"
