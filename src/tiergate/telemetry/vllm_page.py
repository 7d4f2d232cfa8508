"""Reading a vLLM engine's ``/metrics`` page: the load gauges the gateway's spillover, the
scaler's direct scrapes and the demo's monitor all need, read one way."""

from __future__ import annotations

import math

_WAITING = "vllm:num_requests_waiting"
_KV_USAGE = "vllm:kv_cache_usage_perc"
# vLLM's name for the same 0-1 gauge before the V1 engine renamed it.
_KV_USAGE_LEGACY = "vllm:gpu_cache_usage_perc"
_NAMES = (_WAITING, _KV_USAGE, _KV_USAGE_LEGACY)


def parse_vllm_load(text: str) -> tuple[float | None, float | None]:
    """(waiting requests, KV-cache usage) from a vLLM ``/metrics`` page in Prometheus text.

    Waiting is summed over series (one endpoint may host several engines or models); KV-cache
    usage is their mean, from ``vllm:kv_cache_usage_perc`` or else the legacy
    ``vllm:gpu_cache_usage_perc``. A metric that is absent, or only NaN, gives None.
    """
    waiting = 0.0
    waiting_series = 0
    kv_sum = 0.0
    kv_series = 0
    legacy_sum = 0.0
    legacy_series = 0
    # One pass with prefix checks: a vLLM page holds hundreds of histogram lines to skip, and a
    # regex or prometheus_client's parser per line costs far more than these startswith calls.
    for line in text.split("\n"):
        if not line.startswith(_NAMES):
            continue
        if line.startswith(_WAITING):
            value = _sample_value(line, len(_WAITING))
            if value is not None:
                waiting += value
                waiting_series += 1
        elif line.startswith(_KV_USAGE):
            value = _sample_value(line, len(_KV_USAGE))
            if value is not None:
                kv_sum += value
                kv_series += 1
        else:
            value = _sample_value(line, len(_KV_USAGE_LEGACY))
            if value is not None:
                legacy_sum += value
                legacy_series += 1
    kv_usage: float | None = None
    if kv_series:
        kv_usage = kv_sum / kv_series
    elif legacy_series:
        kv_usage = legacy_sum / legacy_series
    return (waiting if waiting_series else None), kv_usage


def _sample_value(line: str, name_length: int) -> float | None:
    """The value of a sample line whose metric name is ``line[:name_length]``, or None."""
    rest = line[name_length:]
    if rest.startswith("{"):
        # Values and timestamps never contain "}", so the last one closes the label set even
        # when quoted label values hold spaces, commas, braces or escaped quotes.
        rest = rest[rest.rfind("}") + 1 :]
    elif rest[:1] not in (" ", "\t"):
        return None  # a longer metric name that starts with ours
    fields = rest.split()
    if not fields:
        return None
    try:
        value = float(fields[0])  # also takes NaN, +Inf and -Inf
    except ValueError:
        return None
    return None if math.isnan(value) else value
