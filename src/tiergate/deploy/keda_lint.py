"""Lint KEDA ScaledObjects that scale vLLM on Prometheus triggers.

The traps are the ones the seed's own ScaledObject falls into, each a silent failure rather
than an error in KEDA: vLLM's series are named ``vllm:…`` (a colon; scraping renames nothing),
so ``vllm_…`` matches no series, and KEDA reads the empty result as 0 — a standing vote to
scale down; ``vllm:kv_cache_usage_perc`` is a 0-1 fraction, so a threshold of 80 is never
reached; an average or a latency quantile under the default ``AverageValue`` metric type is
divided by the replica count again; ``histogram_quantile`` over per-pod buckets without
``sum by (le)`` returns one series per pod, which KEDA rejects, and NaN at zero traffic, which
it reads as 0. Sources: ``keda-hpa.md`` and ``vllm-metrics.md`` in the reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tiergate.errors import SpecError, SpecIssue
from tiergate.spec.yamldoc import Document

# Old vLLM names and their current ones (removed in v0.12 and later; vllm-metrics.md).
RENAMED = {
    "gpu_cache_usage_perc": "kv_cache_usage_perc",
    "gpu_prefix_cache_queries": "prefix_cache_queries",
    "gpu_prefix_cache_hits": "prefix_cache_hits",
    "time_per_output_token_seconds": "inter_token_latency_seconds",
}
FRACTION_GAUGES = ("kv_cache_usage_perc", "gpu_cache_usage_perc")
_UNDERSCORE_NAME = re.compile(r"\bvllm_([a-z_]+)")
_COLON_NAME = re.compile(r"\bvllm:([a-z_]+)")


@dataclass(slots=True)
class LintResult:
    errors: list[SpecIssue]
    warnings: list[SpecIssue]


class ScaledObjectLintError(SpecError):
    """A ScaledObject's lint as the CLI reports it: ``issues`` its errors, and its warnings."""

    def __init__(self, errors: list[SpecIssue], warnings: list[SpecIssue]) -> None:
        super().__init__(errors)
        self.warnings = tuple(warnings)


def is_scaled_object(data: object) -> bool:
    return (
        isinstance(data, dict)
        and data.get("kind") == "ScaledObject"
        and str(data.get("apiVersion", "")).startswith("keda.sh/")
    )


def lint_scaled_object(doc: Document) -> LintResult:
    """Every problem of the ScaledObject in ``doc``, errors and warnings, with positions."""
    result = LintResult([], [])
    data = doc.data if isinstance(doc.data, dict) else {}
    spec = data.get("spec")
    if not isinstance(spec, dict):
        result.errors.append(doc.issue(("spec",), "a ScaledObject needs a 'spec' mapping"))
        return result
    if not isinstance(spec.get("scaleTargetRef"), dict):
        result.errors.append(doc.issue(("spec",), "missing 'scaleTargetRef' (the Deployment)"))
    _bounds(doc, spec, result)
    triggers = spec.get("triggers")
    if not isinstance(triggers, list) or not triggers:
        result.errors.append(doc.issue(("spec",), "missing 'triggers': nothing would scale it"))
        return result
    for index, trigger in enumerate(triggers):
        if not isinstance(trigger, dict):
            continue
        if trigger.get("type") == "prometheus":
            _prometheus(doc, ("spec", "triggers", index), trigger, result)
        elif trigger.get("type") in ("external", "external-push"):
            _external(doc, ("spec", "triggers", index), trigger, result)
    return result


def _external(
    doc: Document, path: tuple[str | int, ...], trigger: dict[str, object], result: LintResult
) -> None:
    """tiergate's external scaler returns the desired replica count with a target of 1: only
    ``AverageValue`` turns that into exactly that many replicas."""
    metadata = trigger.get("metadata")
    meta = metadata if isinstance(metadata, dict) else {}
    if "scalerAddress" not in meta:
        result.errors.append(
            doc.issue((*path, "metadata"), "missing 'scalerAddress' (host:port of the scaler)")
        )
    if "deployment" not in meta:
        result.warnings.append(
            doc.issue(
                (*path, "metadata"),
                "no 'deployment': tiergate's scaler needs it to know which deployment this is",
            )
        )
    if trigger.get("metricType", "AverageValue") != "AverageValue":
        result.errors.append(
            doc.issue(
                (*path, "metricType"),
                "tiergate's scaler returns the desired replica count with a target of 1: with "
                "metricType Value the HPA would ask for replicas x desired; use AverageValue",
            )
        )


def _bounds(doc: Document, spec: dict[str, object], result: LintResult) -> None:
    low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    if isinstance(low, int) and isinstance(high, int) and low > high:
        result.errors.append(
            doc.issue(
                ("spec", "minReplicaCount"), f"minReplicaCount {low} > maxReplicaCount {high}"
            )
        )


def _prometheus(
    doc: Document, path: tuple[str | int, ...], trigger: dict[str, object], result: LintResult
) -> None:
    metadata = trigger.get("metadata")
    if not isinstance(metadata, dict):
        result.errors.append(doc.issue(path, "a prometheus trigger needs 'metadata'"))
        return
    meta = (*path, "metadata")
    if "serverAddress" not in metadata:
        result.errors.append(
            doc.issue(
                meta,
                "missing 'serverAddress': KEDA's prometheus scaler requires the Prometheus URL "
                "(for example http://prometheus-server.monitoring:9090)",
            )
        )
    query = metadata.get("query")
    if not isinstance(query, str):
        result.errors.append(doc.issue(meta, "missing 'query'"))
        return
    query_path = (*meta, "query")
    _names(doc, query_path, query, result)
    threshold = _number(metadata.get("threshold"))
    if threshold is None:
        result.errors.append(doc.issue(meta, "missing or non-numeric 'threshold'"))
    elif _is_fraction_gauge(query) and threshold > 1:
        result.errors.append(
            doc.issue(
                (*meta, "threshold"),
                f"threshold {threshold:g} on vllm:kv_cache_usage_perc, a 0-1 fraction (1 = "
                f"100%): it is never reached; for {threshold:g}% write {threshold / 100:g}",
            )
        )
    quantile = "histogram_quantile" in query
    if quantile and not re.search(r"\bsum\s*(by|without)?\s*\(\s*le\s*\)|by\s*\(\s*le\s*\)", query):
        result.errors.append(
            doc.issue(
                query_path,
                "histogram_quantile over per-pod buckets without 'sum by (le)' returns one "
                "series per pod and engine: KEDA refuses a result with more than one series. "
                "Write histogram_quantile(0.95, sum by (le) (rate(…_bucket[1m])))",
            )
        )
    if quantile and metadata.get("ignoreNullValues", "true") != "false":
        result.warnings.append(
            doc.issue(
                query_path,
                "at zero traffic histogram_quantile is NaN, which KEDA reads as 0 "
                "(ignoreNullValues defaults to true): a vote to scale down; tiergate's scaler "
                "treats it as unknown",
            )
        )
    _metric_type(doc, path, trigger, query, result)


def _names(doc: Document, path: tuple[str | int, ...], query: str, result: LintResult) -> None:
    for name in _UNDERSCORE_NAME.findall(query):
        current = RENAMED.get(name, name)
        result.errors.append(
            doc.issue(
                path,
                f"vllm_{name} matches no series: vLLM's metrics are named with a colon "
                f"(vllm:{name}) and scraping renames nothing, so the query returns nothing and "
                f"KEDA reads 0 — a standing vote to scale down. Write vllm:{current}",
            )
        )
    for name in _COLON_NAME.findall(query):
        if name in RENAMED:
            result.errors.append(
                doc.issue(
                    path,
                    f"vllm:{name} was removed from vLLM (v0.12 and later): "
                    f"write vllm:{RENAMED[name]}",
                )
            )


def _metric_type(
    doc: Document,
    path: tuple[str | int, ...],
    trigger: dict[str, object],
    query: str,
    result: LintResult,
) -> None:
    metric_type = trigger.get("metricType", "AverageValue")
    per_replica = re.match(r"\s*(avg|max|min|histogram_quantile)\b", query)
    if metric_type == "AverageValue" and per_replica:
        result.errors.append(
            doc.issue(
                path,
                f"the query is already a per-replica figure ({per_replica.group(1)}), but with "
                "metricType AverageValue (the default) the HPA divides it by the replica count "
                "again: desired = ceil(value / threshold), whatever the current replicas. Set "
                "metricType: Value (desired = ceil(replicas * value / threshold))",
            )
        )


def _is_fraction_gauge(query: str) -> bool:
    return any(name in query for name in FRACTION_GAUGES)


def _number(value: object) -> float | None:
    try:
        return float(str(value))
    except ValueError:
        return None
