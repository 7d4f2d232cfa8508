"""Signals from simulated engines: Prometheus' lag and rate(), the direct-scrape path, quantiles."""

from __future__ import annotations

import math

import pytest

from tiergate.emulator.metrics import TTFT_BUCKETS
from tiergate.scaling.signals import histogram_quantile
from tiergate.scaling.snapshot import Role
from tiergate.sim.loop import EventLoop
from tiergate.sim.metrics import EngineMetrics, cumulative
from tiergate.sim.signals import SimPrometheus, SimScrape, extrapolated_rate


def engine(name: str, waiting: float = 0.0) -> EngineMetrics:
    return EngineMetrics(name, lambda: (1.0, waiting, 0.25))


def step_load(loop: EventLoop, metrics: EngineMetrics, at: float, per_s: int) -> None:
    """From ``at`` on, ``per_s`` requests finish every second (counted at each half second,
    away from the scrapes' instants)."""

    def tick() -> None:
        if loop.now >= at:
            metrics.requests_total += per_s

    loop.every(1.0, tick, first=0.5)


def test_a_load_step_shows_in_the_rate_after_the_next_scrape_and_fully_after_a_window() -> None:
    loop = EventLoop()
    e1 = engine("e1")
    step_load(loop, e1, at=100.0, per_s=2)  # +2 at t = 100.5, 101.5, ...: 2/s from t = 100
    prometheus = SimPrometheus(loop, lambda d: [e1], ["d"], scrape_interval_s=15.0)

    def rate_at(t: float) -> float | None:
        loop.run(until=t)
        snap = prometheus.snapshot("d", Role.UNIFIED, window_s=60.0, ready=1, now=t)
        return snap.request_rate

    # t = 104: scrapes at 45, 60, 75, 90 all read 0; the step is not scraped yet.
    assert rate_at(104.0) == 0.0
    # t = 105: samples (60, 0), (75, 0), (90, 0), (105, 10): increase 10 over 45 s sampled;
    # towards the start no further than the counter's zero (it starts at 0 there), towards
    # the end 0 s: 10 * 45 / 45 / 60 = 1/6 per second.
    assert rate_at(105.0) == pytest.approx(10 / 60)
    # t = 165: samples (120, 40) ... (165, 130): increase 90 over 45 s, extrapolated by 15 s
    # to the window's start (under 1.1 intervals, and 45 * 40 / 90 = 20 s to zero is further):
    # 90 * 60 / 45 / 60 = 2.0, the true rate.
    assert rate_at(165.0) == pytest.approx(2.0)


def test_rate_extrapolation_follows_prometheus() -> None:
    # Samples at 10 s and 40 s (4 samples, 10 s apart) in (0, 60], values 100 -> 130:
    # to the start 10 s (< 11 s threshold; zero is 30 * 100 / 30 = 100 s away), to the end
    # 20 s >= 11 s so half an interval, 5 s: 30 * (30 + 10 + 5) / 30 / 60 = 0.75.
    assert extrapolated_rate((10.0, 100.0), (40.0, 130.0), 4, 0.0, 60.0) == pytest.approx(0.75)


def test_gauges_are_the_last_scrape_and_a_gone_engine_drops_out_at_the_next_scrape() -> None:
    loop = EventLoop()
    engines = [engine("e1", waiting=3.0), engine("e2", waiting=4.0)]
    prometheus = SimPrometheus(loop, lambda d: list(engines), ["d"], scrape_interval_s=15.0)
    loop.run(until=20.0)
    snap = prometheus.snapshot("d", Role.UNIFIED, window_s=60.0, ready=2, now=20.0)
    assert [r.waiting for r in snap.replicas] == [3.0, 4.0]
    engines.pop()  # e2's pod is deleted at t = 20
    loop.run(until=29.0)
    # Until the next scrape (t = 30) Prometheus still answers with e2's last sample.
    snap = prometheus.snapshot("d", Role.UNIFIED, window_s=60.0, ready=1, now=29.0)
    assert [r.name for r in snap.replicas] == ["e1", "e2"]
    loop.run(until=30.0)
    snap = prometheus.snapshot("d", Role.UNIFIED, window_s=60.0, ready=1, now=30.0)
    assert [r.name for r in snap.replicas] == ["e1"]


def test_a_ready_engine_not_yet_scraped_is_unknown_not_idle() -> None:
    loop = EventLoop()
    prometheus = SimPrometheus(loop, lambda d: [engine("e1", 2.0)], ["d"])
    loop.run(until=1.0)
    snap = prometheus.snapshot("d", Role.UNIFIED, window_s=60.0, ready=2, now=1.0)
    assert [r.waiting for r in snap.replicas] == [2.0, None]
    assert snap.request_rate is None  # one sample: rate() has no answer


def test_direct_scrapes_see_the_step_at_once() -> None:
    loop = EventLoop()
    e1 = engine("e1")
    step_load(loop, e1, at=100.0, per_s=2)
    scrape = SimScrape(lambda d: [e1], window_s=60.0)
    loop.run(until=100.0)
    first = scrape.snapshot("d", Role.UNIFIED, ready=1, now=100.0)
    assert first.request_rate is None  # the first scrape gives the gauges only
    loop.run(until=104.0)
    # Counter 0 at t = 100, 8 at t = 104: 8 / 4 = 2 per second, no Prometheus in between.
    assert scrape.snapshot("d", Role.UNIFIED, ready=1, now=104.0).request_rate == 2.0


def test_histogram_quantile_by_hand() -> None:
    # 90 TTFTs of 0.05 s (bucket le=0.06) and 10 of 2 s (le=2.5): rank 0.95 * 100 = 95 falls
    # in (1.0, 2.5], which holds observations 91-100: 1.0 + 1.5 * (95 - 90) / 10 = 1.75 s.
    e1 = engine("e1")
    scrape = SimScrape(lambda d: [e1])
    scrape.snapshot("d", Role.UNIFIED, ready=1, now=0.0)
    for _ in range(90):
        e1.observe_ttft(0.05)
    for _ in range(10):
        e1.observe_ttft(2.0)
    buckets = cumulative(TTFT_BUCKETS, e1.ttft_counts)
    assert (buckets[0.04], buckets[0.06], buckets[math.inf]) == (0, 90, 100)
    assert histogram_quantile(0.95, buckets) == pytest.approx(1.75)
    snap = scrape.snapshot("d", Role.UNIFIED, ready=1, now=10.0)
    assert snap.ttft_p95_s == pytest.approx(1.75)


def test_quantiles_through_prometheus_match_the_buckets() -> None:
    # The same 90 + 10 TTFTs, observed between the scrapes at 0 and 15: every bucket's rate
    # is extrapolated by the same factor (each starts at 0), so the quantile is 1.75 s again.
    loop = EventLoop()
    e1 = engine("e1")
    prometheus = SimPrometheus(loop, lambda d: [e1], ["d"], scrape_interval_s=15.0)

    def observe() -> None:
        for _ in range(90):
            e1.observe_ttft(0.05)
        for _ in range(10):
            e1.observe_ttft(2.0)

    loop.at(5.0, observe)
    loop.run(until=15.0)
    snap = prometheus.snapshot("d", Role.UNIFIED, window_s=60.0, ready=1, now=15.0)
    assert snap.ttft_p95_s == pytest.approx(1.75)
    assert snap.itl_p95_s is None  # nothing observed: NaN in PromQL, unknown here


def test_le_is_inclusive() -> None:
    e1 = engine("e1")
    e1.observe_ttft(0.1)  # exactly on a bound: counted in le="0.1", as Prometheus does
    e1.observe_itl(0.02, count=3)  # three gaps of 20 ms: le="0.025"
    assert cumulative(TTFT_BUCKETS, e1.ttft_counts)[0.1] == 1
    assert cumulative(TTFT_BUCKETS, e1.ttft_counts)[0.08] == 0
    assert e1.itl_counts[1] == 3


def test_direct_scrapes_forget_a_gone_engine_and_start_a_new_one_without_history() -> None:
    e1, e2 = engine("e1"), engine("e2")
    listed = [e1]
    scrape = SimScrape(lambda d: listed, window_s=60.0)
    scrape.snapshot("d", Role.UNIFIED, ready=1, now=0.0)
    e1.requests_total = 10
    listed = [e2]  # e1's pod replaced by e2's
    snap = scrape.snapshot("d", Role.UNIFIED, ready=1, now=10.0)
    assert [r.name for r in snap.replicas] == ["e2"]
    assert snap.request_rate is None  # e2's first scrape; e1's requests are gone with it
    e2.requests_total = 5
    # e2 alone: 5 requests in the 5 s since its first scrape.
    assert scrape.snapshot("d", Role.UNIFIED, ready=1, now=15.0).request_rate == 1.0
