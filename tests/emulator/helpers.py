"""Helpers of the emulator tests: reading Prometheus text, polling."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` (full sample name) whose labels include ``labels``."""
    return sum(
        float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def histogram_mean(text: str, name: str) -> float:
    """``name_sum / name_count`` of a histogram (NaN when it has no observations)."""
    count = metric(text, f"{name}_count")
    return metric(text, f"{name}_sum") / count if count else float("nan")
