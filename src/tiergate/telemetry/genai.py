"""Span attribute names and values: OpenTelemetry GenAI conventions, tiergate's own, Langfuse's.

GenAI names follow the semantic conventions as of semconv 1.42 (``gen_ai.provider.name``, not
the deprecated ``gen_ai.system``; ``gen_ai.usage.input_tokens``/``output_tokens``, not
``prompt_tokens``/``completion_tokens``). Langfuse reads those too, but its ``langfuse.*``
attributes win over them; they are added only in Langfuse mode.

Pure functions over values: no OpenTelemetry import here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TypeAlias

from tiergate.providers.base import Usage

AttributeValue: TypeAlias = str | bool | int | float | tuple[str, ...]
Attributes: TypeAlias = dict[str, AttributeValue]

OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_STREAM = "gen_ai.request.stream"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
USAGE_CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
ERROR_TYPE = "error.type"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"

TIER = "tiergate.tier"
ATTEMPTS = "tiergate.attempts"
ATTEMPT = "tiergate.attempt"
OUTCOME = "tiergate.outcome"
FALLBACK_REASON = "tiergate.fallback_reason"
COST_USD = "tiergate.cost_usd"
STAGE = "tiergate.stage"
KEY_ID = "tiergate.key_id"
TEAM = "tiergate.team"
PROJECT = "tiergate.project"
REQUEST_ID = "tiergate.request_id"

LF_OBSERVATION_TYPE = "langfuse.observation.type"
LF_MODEL_NAME = "langfuse.observation.model.name"
LF_USAGE_DETAILS = "langfuse.observation.usage_details"
LF_COST_DETAILS = "langfuse.observation.cost_details"
LF_COMPLETION_START_TIME = "langfuse.observation.completion_start_time"
LF_TRACE_NAME = "langfuse.trace.name"
LF_TRACE_TAGS = "langfuse.trace.tags"
LF_TRACE_METADATA = "langfuse.trace.metadata"

# tiergate's provider kinds (fleet spec) -> the conventions' well-known gen_ai.provider.name;
# kinds without one (an OpenAI-compatible engine may be vLLM, SGLang or OpenAI) pass unchanged.
_PROVIDER_NAMES = {"bedrock": "aws.bedrock"}


def provider_name(provider: str) -> str:
    """The ``gen_ai.provider.name`` of a tier's provider kind."""
    return _PROVIDER_NAMES.get(provider, provider)


def span_name(operation: str, model: str) -> str:
    """``{gen_ai.operation.name} {gen_ai.request.model}``, as the conventions name spans."""
    return f"{operation} {model}"


def request_attributes(
    *,
    operation: str,
    request_id: str,
    model: str,
    stage: str | None,
    key_id: str | None,
    team: str | None,
    project: str | None,
    stream: bool,
    max_tokens: int | None,
    temperature: float | None,
) -> Attributes:
    """What is known of a client request when it arrives."""
    attributes: Attributes = {
        OPERATION_NAME: operation,
        REQUEST_MODEL: model,
        REQUEST_STREAM: stream,
        REQUEST_ID: request_id,
    }
    _put(attributes, REQUEST_MAX_TOKENS, max_tokens)
    _put(attributes, REQUEST_TEMPERATURE, temperature)
    _put(attributes, STAGE, stage)
    _put(attributes, KEY_ID, key_id)
    _put(attributes, TEAM, team)
    _put(attributes, PROJECT, project)
    return attributes


def attempt_attributes(
    *, operation: str, index: int, tier: str, provider: str, upstream_model: str
) -> Attributes:
    """An attempt's attributes at its start; ``index`` counts from 1."""
    return {
        OPERATION_NAME: operation,
        PROVIDER_NAME: provider_name(provider),
        REQUEST_MODEL: upstream_model,
        TIER: tier,
        ATTEMPT: index,
    }


def attempt_end_attributes(*, outcome: str, status: int | None) -> Attributes:
    """An attempt's outcome; a failed one also names why the cascade moved on."""
    attributes: Attributes = {OUTCOME: outcome}
    _put(attributes, HTTP_RESPONSE_STATUS_CODE, status)
    if outcome != "ok":
        attributes[FALLBACK_REASON] = outcome
        attributes[ERROR_TYPE] = outcome
    return attributes


def request_end_attributes(
    *,
    tier: str | None,
    provider: str | None,
    upstream_model: str | None,
    attempts: int,
    status: int,
    usage: Usage | None,
    cost_usd: float,
    ttft_s: float | None,
    error: str | None,
) -> Attributes:
    """A request's outcome: serving tier, tokens, cost, first-token time, error type."""
    attributes: Attributes = {
        ATTEMPTS: attempts,
        COST_USD: cost_usd,
        HTTP_RESPONSE_STATUS_CODE: status,
    }
    _put(attributes, TIER, tier)
    _put(attributes, PROVIDER_NAME, None if provider is None else provider_name(provider))
    _put(attributes, RESPONSE_MODEL, upstream_model)
    _put(attributes, RESPONSE_TIME_TO_FIRST_CHUNK, ttft_s)
    if usage is not None:
        attributes[USAGE_INPUT_TOKENS] = usage.prompt
        attributes[USAGE_OUTPUT_TOKENS] = usage.completion
        attributes[USAGE_CACHE_READ_INPUT_TOKENS] = usage.cache_read
        attributes[USAGE_CACHE_CREATION_INPUT_TOKENS] = usage.cache_write
    if error is not None:
        attributes[ERROR_TYPE] = error
    elif status >= 500:
        attributes[ERROR_TYPE] = str(status)
    return attributes


def is_failure(status: int, error: str | None) -> bool:
    """Whether a request's span gets status ERROR: an error type, or a 5xx answer.

    A 4xx is the client's mistake, not the server's (the HTTP server-span convention).
    """
    return error is not None or status >= 500


def langfuse_generation_attributes(
    *,
    model: str,
    tier: str | None,
    stage: str | None,
    request_id: str,
    key_id: str | None,
    team: str | None,
    project: str | None,
    usage: Usage | None,
    cost_usd: float,
    start_time_ns: int,
    ttft_s: float | None,
) -> Attributes:
    """The request span as a Langfuse generation, with its trace's name, tags and metadata.

    Usage keys follow Langfuse's own mapping of the GenAI attributes: ``input`` is the uncached
    part of the prompt and the cache parts are ``input_cached_tokens`` and
    ``input_cache_creation``, so that the keys Langfuse groups as input add up to the prompt.
    Costs carry tiergate's total, which overrides Langfuse's price-table inference.
    """
    attributes: Attributes = {
        LF_OBSERVATION_TYPE: "generation",
        LF_MODEL_NAME: model,
        LF_COST_DETAILS: json.dumps({"total": cost_usd}),
        LF_TRACE_NAME: stage or model,
    }
    tags = tuple(
        f"{name}:{value}"
        for name, value in (("tier", tier), ("stage", stage), ("team", team))
        if value
    )
    if tags:
        attributes[LF_TRACE_TAGS] = tags
    if usage is not None:
        details = {
            "input": max(usage.prompt - usage.cache_read - usage.cache_write, 0),
            "input_cached_tokens": usage.cache_read,
            "input_cache_creation": usage.cache_write,
            "output": usage.completion,
            "total": usage.prompt + usage.completion,
        }
        attributes[LF_USAGE_DETAILS] = json.dumps(details)
    if ttft_s is not None:
        attributes[LF_COMPLETION_START_TIME] = iso_time(start_time_ns + round(ttft_s * 1e9))
    metadata = {
        "request_id": request_id,
        "tier": tier,
        "stage": stage,
        "key_id": key_id,
        "team": team,
        "project": project,
    }
    for name, value in metadata.items():
        _put(attributes, f"{LF_TRACE_METADATA}.{name}", value)
    return attributes


def langfuse_span_attributes() -> Attributes:
    """An attempt as a plain Langfuse span: its GenAI attributes would otherwise make it a
    generation, and Langfuse would count the request's tokens and cost twice."""
    return {LF_OBSERVATION_TYPE: "span"}


def iso_time(epoch_ns: int) -> str:
    """An epoch time in ns as ISO 8601 UTC with milliseconds, the form Langfuse parses."""
    moment = datetime.fromtimestamp(epoch_ns / 1e9, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _put(attributes: Attributes, name: str, value: AttributeValue | None) -> None:
    if value is not None:
        attributes[name] = value
