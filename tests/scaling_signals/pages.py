"""vLLM ``/metrics`` pages with chosen values, and servers that serve them on 127.0.0.1."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from aiohttp import web

from tests.loopback import LoopbackServer

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


@dataclass(frozen=True)
class Engine:
    """The values one vLLM engine exposes; histograms are cumulative counts by bound."""

    kv_usage: float = 0.0
    waiting: float = 0.0
    running: float = 0.0
    success: Mapping[str, float] = field(default_factory=lambda: {"stop": 0.0})
    prompt_tokens: float = 0.0
    generation_tokens: float = 0.0
    ttft: Mapping[float, float] = field(default_factory=lambda: {0.1: 0.0, math.inf: 0.0})
    itl: Mapping[float, float] = field(default_factory=lambda: {0.1: 0.0, math.inf: 0.0})
    created: float = 1_700_000_000.0
    engine: str = "0"


def _le(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(float(bound))


def vllm_page(engines: Sequence[Engine], timestamp_ms: int | None = None) -> str:
    """Prometheus text as vLLM V1 writes it (with a few neighbours whose names share a
    prefix with the series read), optionally with an explicit timestamp on every sample."""
    at = "" if timestamp_ms is None else f" {timestamp_ms}"
    lines: list[str] = []

    def family(name: str, kind: str, samples: Callable[[Engine, str], list[str]]) -> None:
        lines.append(f"# HELP {name} {name}.")
        lines.append(f"# TYPE {name} {kind}")
        for engine in engines:
            labels = f'engine="{engine.engine}",model_name="{MODEL}"'
            lines.extend(samples(engine, labels))

    def gauge(name: str, value: Callable[[Engine], float]) -> None:
        family(name, "gauge", lambda e, labels: [f"{name}{{{labels}}} {value(e)}{at}"])

    def counter(name: str, value: Callable[[Engine], float]) -> None:
        family(
            name,
            "counter",
            lambda e, labels: [
                f"{name}_total{{{labels}}} {value(e)}{at}",
                f"{name}_created{{{labels}}} {e.created}{at}",
            ],
        )

    def histogram(name: str, counts: Callable[[Engine], Mapping[float, float]]) -> None:
        def samples(e: Engine, labels: str) -> list[str]:
            buckets = counts(e)
            out = [
                f'{name}_bucket{{{labels},le="{_le(bound)}"}} {count}{at}'
                for bound, count in sorted(buckets.items())
            ]
            out.append(f"{name}_count{{{labels}}} {buckets[math.inf]}{at}")
            out.append(f"{name}_sum{{{labels}}} 0.0{at}")
            out.append(f"{name}_created{{{labels}}} {e.created}{at}")
            return out

        family(name, "histogram", samples)

    gauge("vllm:num_requests_running", lambda e: e.running)
    gauge("vllm:num_requests_waiting", lambda e: e.waiting)
    family(
        "vllm:num_requests_waiting_by_reason",
        "gauge",
        lambda e, labels: [
            f'vllm:num_requests_waiting_by_reason{{{labels},reason="capacity"}} 99{at}'
        ],
    )
    gauge("vllm:kv_cache_usage_perc", lambda e: e.kv_usage)
    counter("vllm:prompt_tokens", lambda e: e.prompt_tokens)
    counter("vllm:prompt_tokens_cached", lambda e: 1e9)
    counter("vllm:generation_tokens", lambda e: e.generation_tokens)
    family(
        "vllm:request_success",
        "counter",
        lambda e, labels: [
            line
            for reason, count in e.success.items()
            for line in (
                f'vllm:request_success_total{{{labels},finished_reason="{reason}"}} {count}{at}',
                f'vllm:request_success_created{{{labels},finished_reason="{reason}"}} {e.created}{at}',
            )
        ],
    )
    histogram("vllm:time_to_first_token_seconds", lambda e: e.ttft)
    histogram("vllm:inter_token_latency_seconds", lambda e: e.itl)
    histogram("vllm:iteration_tokens_total", lambda e: {1.0: 5.0, math.inf: 1e9})
    return "\n".join(lines) + "\n"


class MetricsServer(LoopbackServer):
    """Serves ``/metrics``: the text ``page(now_ms)`` returns, or ``status`` when not 200."""

    def __init__(self, page: Callable[[int], str] | str = "") -> None:
        self.page = page
        self.status = 200

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        return app

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _metrics(self, request: web.Request) -> web.Response:
        if self.status != 200:
            return web.Response(status=self.status, text="unavailable")
        page = self.page if isinstance(self.page, str) else self.page(time.time_ns() // 1_000_000)
        return web.Response(text=page, content_type="text/plain")
