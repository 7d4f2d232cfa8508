"""The PromQL of each signal, with defaults written for current vLLM metric names.

Names follow vLLM V1 (``vllm/v1/metrics/loggers.py``): counters exposed with ``_total``, the
KV gauge a 0-1 fraction called ``vllm:kv_cache_usage_perc``. Where vLLM renamed a series the
default asks for both with ``or``, so that engines from before the rename still answer:
``vllm:gpu_cache_usage_perc`` (removed in v0.12) and ``vllm:time_per_output_token_seconds``
(removed in January 2026).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_WINDOW = re.compile(r"(?:\d+(?:ms|[smhdwy]))+")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def label_selector(**labels: str) -> str:
    """A PromQL selector matching these label values exactly, such as
    ``{namespace="llm",deployment="llama-decode"}``."""
    for name in labels:
        if not _LABEL_NAME.fullmatch(name):
            raise ValueError(f"not a Prometheus label name: {name!r}")
    matchers = ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items())
    return "{" + matchers + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _duration(window: str | float) -> str:
    """``window`` as a PromQL duration; seconds are written in whole milliseconds."""
    if not isinstance(window, str):
        milliseconds = round(window * 1000)
        if not milliseconds > 0:
            raise ValueError(f"window must be positive, got {window} s")
        seconds, rest = divmod(milliseconds, 1000)
        window = f"{seconds}s" if not rest else f"{milliseconds}ms"
    if not _WINDOW.fullmatch(window):
        raise ValueError(f"not a PromQL duration: {window!r}")
    return window


def _braced(selector: str) -> str:
    """``selector`` as it follows a metric name: ``{...}``, or nothing when empty."""
    selector = selector.strip()
    if not selector:
        return ""
    if selector.startswith("{"):
        if not selector.endswith("}"):
            raise ValueError(f"selector opens a brace it does not close: {selector!r}")
        return selector
    return "{" + selector + "}"


@dataclass(frozen=True, slots=True)
class SignalQueries:
    """One PromQL instant query per signal of a :class:`~tiergate.scaling.snapshot.Snapshot`.

    The per-replica queries (``kv_usage``, ``waiting``, ``running``) must return one series per
    replica, told apart by the label ``replica_label``; the others exactly one series or a
    scalar. Rates are per second, quantiles in seconds. Build the defaults with
    :meth:`for_vllm` and change single queries with :func:`dataclasses.replace`.
    """

    kv_usage: str
    waiting: str
    running: str
    request_rate: str
    prompt_token_rate: str
    generation_token_rate: str
    ttft_p95_s: str
    itl_p95_s: str
    replica_label: str = "pod"

    def __post_init__(self) -> None:
        if not _LABEL_NAME.fullmatch(self.replica_label):
            raise ValueError(f"not a Prometheus label name: {self.replica_label!r}")
        for name, promql in {**self.per_replica(), **self.deployment_wide()}.items():
            if not promql.strip():
                raise ValueError(f"the {name} query is empty")

    @classmethod
    def for_vllm(
        cls, selector: str = "", window: str | float = "1m", replica_label: str = "pod"
    ) -> SignalQueries:
        """Queries over the vLLM engines that ``selector`` picks (``label_selector(...)`` or
        its text with or without braces), rates and quantiles over ``window``: a PromQL
        duration such as ``"1m"``, or seconds (the spec's ``windowS``). Give it at least four
        scrape intervals, so that ``rate`` always has two samples."""
        window = _duration(window)
        s = _braced(selector)
        by = f"by ({replica_label})"

        def rate(name: str) -> str:
            return f"rate({name}{s}[{window}])"

        def p95(histogram: str) -> str:
            return f"histogram_quantile(0.95, sum by (le) ({histogram}))"

        return cls(
            kv_usage=(
                f"avg {by} (vllm:kv_cache_usage_perc{s}) or avg {by} (vllm:gpu_cache_usage_perc{s})"
            ),
            waiting=f"sum {by} (vllm:num_requests_waiting{s})",
            running=f"sum {by} (vllm:num_requests_running{s})",
            # vLLM counts requests when they finish; arrivals beyond what the engines finish
            # show up as waiting requests, which the policy reads per replica.
            request_rate=f"sum({rate('vllm:request_success_total')})",
            prompt_token_rate=f"sum({rate('vllm:prompt_tokens_total')})",
            generation_token_rate=f"sum({rate('vllm:generation_tokens_total')})",
            ttft_p95_s=p95(rate("vllm:time_to_first_token_seconds_bucket")),
            itl_p95_s=p95(
                f"{rate('vllm:inter_token_latency_seconds_bucket')}"
                f" or {rate('vllm:time_per_output_token_seconds_bucket')}"
            ),
            replica_label=replica_label,
        )

    def per_replica(self) -> Mapping[str, str]:
        """The queries answered with one series per replica, by ``ReplicaSignals`` field."""
        return {"kv_usage": self.kv_usage, "waiting": self.waiting, "running": self.running}

    def deployment_wide(self) -> Mapping[str, str]:
        """The queries answered with one value for the deployment, by ``Snapshot`` field."""
        return {
            "request_rate": self.request_rate,
            "prompt_token_rate": self.prompt_token_rate,
            "generation_token_rate": self.generation_token_rate,
            "ttft_p95_s": self.ttft_p95_s,
            "itl_p95_s": self.itl_p95_s,
        }
