"""The scaling loop of ``test_scaling_loop.py`` with the scaler reading its signals from a real
Prometheus, as in a cluster: ``signals: {prometheus: ...}``, the default vLLM queries.

Prometheus scrapes the pool's ready replicas every second, found through file service
discovery: the actuator rewrites the targets file (atomically) whenever the set of ready
replicas changes, each replica labelled with its deployment and pod as Kubernetes pod discovery
would. The pool is the controller's replica source, so the replicas Prometheus cannot see yet
(starting, or ready but not yet discovered) are known to the scaler as pending or ready.

Prometheus lags behind the replicas: a changed targets file reaches the scrape loops only after
a few seconds (its discovery and scrape managers each apply target changes at most every 5 s,
so up to ~10 s), then rates need two scrapes within ``windowS``. The scale-down stabilization window is sized to
outlast that lag, so that replicas serving but not yet scraped (a rate measured short) do not
read as a fall in load; the assertions are about orders and counts, never durations.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.e2e.test_scaling_loop import (
    DEPLOYMENT,
    MAX_REPLICAS,
    MIN_REPLICAS,
    STEP_S,
    Load,
    actuate,
    arrivals,
    emulator_config,
    fleet_text,
    print_timeline,
)
from tests.polling import eventually
from tests.prometheus import prometheus_binary, running_prometheus, write_file_sd
from tiergate.emulator.pool import EmulatorPool
from tiergate.emulator.replica import Replica
from tiergate.scaling.controller import Controller
from tiergate.scaling.signals import label_selector
from tiergate.scaling.snapshot import Role
from tiergate.spec import parse_fleet

WINDOW_S = 6.0  # PromQL rate window: six scrapes
DOWN_STABILIZATION_S = 10.0
# (seconds, requests per second): rises past what MAX_REPLICAS carry, then falls to a trickle.
TRACE = ((3.0, 2.0), (12.0, 16.0), (17.0, 1.0))
DRAIN_S = 2.0
SELECTOR = label_selector(deployment=DEPLOYMENT)


def prometheus_config(targets: Path) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {
                "job_name": "vllm",
                "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "1s"}],
            }
        ],
    }


class Targets:
    """The targets file of Prometheus' file discovery: the ready replicas, rewritten when they
    change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._published: list[tuple[str, str]] | None = None

    def __call__(self, ready: list[Replica]) -> None:
        targets = sorted(
            (f"{replica.host}:{replica.port}", f"{DEPLOYMENT}-{replica.index}") for replica in ready
        )
        if targets == self._published:
            return
        write_file_sd(
            self.path,
            [
                {"targets": [address], "labels": {"deployment": DEPLOYMENT, "pod": pod}}
                for address, pod in targets
            ],
        )
        self._published = targets


async def test_replicas_follow_a_trace_through_prometheus(tmp_path: Path) -> None:
    prometheus_binary()  # skip (fail under CI) before anything starts
    timeout = aiohttp.ClientTimeout(total=10)
    targets = Targets(tmp_path / "targets.json")
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        EmulatorPool(emulator_config(), DEPLOYMENT) as pool,
    ):
        await pool.scale_to(MIN_REPLICAS, cold=False)
        targets(pool.ready())
        async with running_prometheus(
            prometheus_config(targets.path), tmp_path / "prometheus"
        ) as prometheus:
            signals = f"{{prometheus: {{url: '{prometheus.url}', windowS: {WINDOW_S:g}, selector: '{SELECTOR}'}}}}"
            text = fleet_text(signals, pool.cold_start_s, DOWN_STABILIZATION_S)
            spec = parse_fleet(text, "f.yaml", env={})
            controller = Controller(spec.scaling, http, clock=time.monotonic, replicas=pool)
            (item,) = controller.scaled.values()

            async def scraped() -> bool:
                """The first replica is discovered and has a request rate (two scrapes)."""
                seen = await item.reader.read(
                    DEPLOYMENT, Role.UNIFIED, ready=MIN_REPLICAS, now=time.monotonic()
                )
                names = [replica.name for replica in seen.replicas]
                return names == [f"{DEPLOYMENT}-0"] and seen.request_rate is not None

            await eventually(scraped, timeout_s=20.0, interval_s=0.25, what="first replica scraped")
            load = Load(pool, http)
            end_s = sum(duration for duration, _ in TRACE) + DRAIN_S
            timeline = await actuate(
                pool, controller, load, times=arrivals(TRACE), end_s=end_s, publish=targets
            )

    print_timeline(timeline, load, pool.cold_start_s)

    assert load.failed == 0
    assert load.served == len(arrivals(TRACE))
    assert all(MIN_REPLICAS <= tick.desired <= MAX_REPLICAS for tick in timeline)
    assert all(MIN_REPLICAS <= tick.asked <= MAX_REPLICAS for tick in timeline)
    # The scaler knew of the replicas on their way, and when they would be ready.
    assert any(tick.pending and len(tick.pending_ready_at) == tick.pending for tick in timeline)
    peak_start, peak_end = TRACE[0][0], TRACE[0][0] + TRACE[1][0]
    # The peak needs 16 / 4 = 4 replicas: the scaler asks for all it may, and they serve.
    asked_max = [tick.t for tick in timeline if tick.asked == MAX_REPLICAS]
    serving_max = [tick.t for tick in timeline if tick.serving == MAX_REPLICAS]
    assert asked_max
    assert peak_start < min(asked_max) < peak_end
    assert serving_max
    assert min(asked_max) < min(serving_max) < peak_end
    # No scale-down during the peak; after it, only once the stabilization window has passed
    # since the last scale-up; in the end the fleet has shrunk.
    ups = [b.t for a, b in itertools.pairwise(timeline) if b.asked > a.asked]
    downs = [b.t for a, b in itertools.pairwise(timeline) if b.asked < a.asked]
    assert ups
    assert downs
    assert min(downs) > peak_end
    assert min(downs) >= max(ups) + DOWN_STABILIZATION_S - STEP_S / 2
    assert timeline[-1].asked < MAX_REPLICAS
