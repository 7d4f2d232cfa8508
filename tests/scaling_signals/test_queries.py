"""The default PromQL for vLLM, and what SignalQueries refuses."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tiergate.scaling.signals import SignalQueries, label_selector


def test_label_selector_escapes_values() -> None:
    assert label_selector(namespace="llm", deployment='a"b\\c') == (
        '{namespace="llm",deployment="a\\"b\\\\c"}'
    )
    with pytest.raises(ValueError, match="label name"):
        label_selector(**{"not-a-label": "x"})


def test_defaults_name_current_vllm_series_with_the_selector_and_window() -> None:
    queries = SignalQueries.for_vllm('namespace="llm"', window="2m")
    s = '{namespace="llm"}'
    assert queries == SignalQueries(
        kv_usage=(
            f"avg by (pod) (vllm:kv_cache_usage_perc{s})"
            f" or avg by (pod) (vllm:gpu_cache_usage_perc{s})"
        ),
        waiting=f"sum by (pod) (vllm:num_requests_waiting{s})",
        running=f"sum by (pod) (vllm:num_requests_running{s})",
        request_rate=f"sum(rate(vllm:request_success_total{s}[2m]))",
        prompt_token_rate=f"sum(rate(vllm:prompt_tokens_total{s}[2m]))",
        generation_token_rate=f"sum(rate(vllm:generation_tokens_total{s}[2m]))",
        ttft_p95_s=(
            "histogram_quantile(0.95, sum by (le) "
            f"(rate(vllm:time_to_first_token_seconds_bucket{s}[2m])))"
        ),
        itl_p95_s=(
            "histogram_quantile(0.95, sum by (le) "
            f"(rate(vllm:inter_token_latency_seconds_bucket{s}[2m])"
            f" or rate(vllm:time_per_output_token_seconds_bucket{s}[2m])))"
        ),
    )
    # The same selector given with braces, or built, gives the same queries.
    assert SignalQueries.for_vllm(s, window="2m") == queries
    assert SignalQueries.for_vllm(label_selector(namespace="llm"), window="2m") == queries


def test_no_selector_and_another_replica_label() -> None:
    queries = SignalQueries.for_vllm(replica_label="instance")
    assert queries.waiting == "sum by (instance) (vllm:num_requests_waiting)"
    assert queries.request_rate == "sum(rate(vllm:request_success_total[1m]))"
    assert queries.replica_label == "instance"


@pytest.mark.parametrize(
    ("seconds", "window"), [(60, "60s"), (60.0, "60s"), (1.5, "1500ms"), (0.25, "250ms")]
)
def test_a_window_in_seconds_is_written_as_a_promql_duration(seconds: float, window: str) -> None:
    queries = SignalQueries.for_vllm(window=seconds)
    assert queries.request_rate == f"sum(rate(vllm:request_success_total[{window}]))"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"window": "1 minute"}, "PromQL duration"),
        ({"window": ""}, "PromQL duration"),
        ({"window": 0.0}, "positive"),
        ({"window": -5}, "positive"),
        ({"selector": '{namespace="llm"'}, "does not close"),
        ({"replica_label": "pod name"}, "label name"),
    ],
)
def test_bad_settings_are_refused(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SignalQueries.for_vllm(**arguments)


def test_an_empty_query_is_refused() -> None:
    with pytest.raises(ValueError, match="the ttft_p95_s query is empty"):
        dataclasses.replace(SignalQueries.for_vllm(), ttft_p95_s=" ")
