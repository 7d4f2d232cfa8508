"""How PrometheusSignals reads each kind of answer of the query API, from a fake API server
whose answers are chosen per query: anything but one finite value per signal is unknown."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from tests.loopback import LoopbackServer
from tiergate.scaling.signals import PrometheusSignals, SignalQueries, parse_query_response
from tiergate.scaling.snapshot import ReplicaSignals, Role, Snapshot

QUERIES = SignalQueries(
    kv_usage="kv",
    waiting="waiting",
    running="running",
    request_rate="requests",
    prompt_token_rate="prompt",
    generation_token_rate="generation",
    ttft_p95_s="ttft",
    itl_p95_s="itl",
)


def vector(*series: tuple[Mapping[str, str], str]) -> dict[str, Any]:
    result = [{"metric": dict(labels), "value": [1700000000.5, value]} for labels, value in series]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def scalar(value: str) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "scalar", "result": [1700000000.5, value]}}


def one(value: str) -> dict[str, Any]:
    return vector(({}, value))


def per_pod(**values: str) -> dict[str, Any]:
    return vector(*(({"pod": pod}, value) for pod, value in values.items()))


class FakePrometheus(LoopbackServer):
    """Answers ``/api/v1/query`` from ``answers``: query -> (HTTP status, body)."""

    def __init__(self, answers: Mapping[str, tuple[int, bytes]]) -> None:
        self.answers = answers

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/query", self._query)
        return app

    async def _query(self, request: web.Request) -> web.Response:
        status, body = self.answers[request.query["query"]]
        return web.Response(status=status, body=body, content_type="application/json")


def ok(payload: dict[str, Any]) -> tuple[int, bytes]:
    return 200, orjson.dumps(payload)


HEALTHY = {
    "kv": ok(per_pod(a="0.5", b="0.25")),
    "waiting": ok(per_pod(a="2", b="0")),
    "running": ok(per_pod(a="4", b="3")),
    "requests": ok(one("0")),
    "prompt": ok(one("1200.5")),
    "generation": ok(one("300")),
    "ttft": ok(scalar("0.75")),
    "itl": ok(one("0.05")),
}


async def read(
    http: aiohttp.ClientSession, changes: Mapping[str, tuple[int, bytes]], ready: int = 2
) -> Snapshot:
    async with FakePrometheus({**HEALTHY, **changes}) as server:
        signals = PrometheusSignals(f"http://127.0.0.1:{server.port}/", QUERIES, http)
        return await signals.read("pool-a", Role.UNIFIED, ready=ready, now=7.0)


async def test_finite_values_are_read_and_a_zero_rate_is_a_zero(
    http: aiohttp.ClientSession,
) -> None:
    snapshot = await read(http, {})
    assert snapshot == Snapshot(
        deployment="pool-a",
        role=Role.UNIFIED,
        at=7.0,
        ready=2,
        replicas=(
            ReplicaSignals(kv_usage=0.5, waiting=2.0, running=4.0, name="a"),
            ReplicaSignals(kv_usage=0.25, waiting=0.0, running=3.0, name="b"),
        ),
        request_rate=0.0,
        prompt_token_rate=1200.5,
        generation_token_rate=300.0,
        ttft_p95_s=0.75,
        itl_p95_s=0.05,
    )


async def test_nan_and_infinite_quantiles_are_unknown(http: aiohttp.ClientSession) -> None:
    snapshot = await read(http, {"ttft": ok(one("NaN")), "itl": ok(scalar("+Inf"))})
    assert (snapshot.ttft_p95_s, snapshot.itl_p95_s) == (None, None)
    assert snapshot.notes == (
        "ttft_p95_s: NaN (nothing observed in the window)",
        "itl_p95_s: inf (beyond the histogram's largest finite bucket)",
    )


async def test_several_series_where_one_is_expected_is_an_error_not_a_pick(
    http: aiohttp.ClientSession,
) -> None:
    two = vector(({"model_name": "x"}, "3"), ({"model_name": "y"}, "4"))
    snapshot = await read(http, {"requests": ok(two)})
    assert snapshot.request_rate is None
    assert snapshot.notes == (
        "request_rate: 2 series where one was expected: {'model_name': 'x'}, {'model_name': 'y'}",
    )


async def test_an_empty_result_is_unknown(http: aiohttp.ClientSession) -> None:
    snapshot = await read(http, {"generation": ok(vector())})
    assert snapshot.generation_token_rate is None
    assert snapshot.notes == ("generation_token_rate: empty result (no series matched)",)


async def test_a_replica_missing_from_one_query_is_unknown_there(
    http: aiohttp.ClientSession,
) -> None:
    snapshot = await read(http, {"kv": ok(per_pod(a="NaN")), "running": ok(per_pod(a="1"))})
    assert snapshot.replicas == (
        ReplicaSignals(kv_usage=None, waiting=2.0, running=1.0, name="a"),
        ReplicaSignals(kv_usage=None, waiting=0.0, running=None, name="b"),
    )
    assert snapshot.notes == (
        "kv_usage of a: NaN (nothing observed in the window)",
        "kv_usage: no series for b",
        "running: no series for b",
    )


async def test_per_replica_answers_that_cannot_be_told_apart_are_errors(
    http: aiohttp.ClientSession,
) -> None:
    twice = vector(({"pod": "a", "engine": "0"}, "1"), ({"pod": "a", "engine": "1"}, "2"))
    unlabelled = vector(({"instance": "10.0.0.1:8000"}, "0.5"))
    snapshot = await read(http, {"waiting": ok(twice), "kv": ok(unlabelled)})
    assert snapshot.replicas == (
        ReplicaSignals(kv_usage=None, waiting=None, running=4.0, name="a"),
        ReplicaSignals(kv_usage=None, waiting=None, running=3.0, name="b"),
    )
    assert snapshot.notes == (
        "kv_usage: a series without the label 'pod': {'instance': '10.0.0.1:8000'}",
        "waiting: several series for pod='a'",
    )


async def test_fewer_replicas_than_ready_are_padded_with_unknown_ones(
    http: aiohttp.ClientSession,
) -> None:
    snapshot = await read(http, {}, ready=3)
    assert snapshot.replicas[2] == ReplicaSignals(kv_usage=None, waiting=None, running=None)
    assert snapshot.notes == ("signals for 2 replicas, 3 ready",)


async def test_errors_of_the_api_become_notes(http: aiohttp.ClientSession) -> None:
    bad_query = orjson.dumps(
        {"status": "error", "errorType": "bad_data", "error": 'parse error: unexpected "}"'}
    )
    matrix = {"status": "success", "data": {"resultType": "matrix", "result": []}}
    snapshot = await read(
        http,
        {
            "kv": (400, bad_query),
            "prompt": (503, b"<html>Service Unavailable</html>"),
            "ttft": ok(matrix),
            "itl": ok({"status": "success", "data": {"resultType": "vector"}}),
        },
    )
    assert snapshot.replicas[0].kv_usage is None
    assert (snapshot.prompt_token_rate, snapshot.ttft_p95_s, snapshot.itl_p95_s) == (None,) * 3
    assert snapshot.notes == (
        'kv_usage: HTTP 400: bad_data: parse error: unexpected "}"',
        "prompt_token_rate: HTTP 503 with a body that is not JSON",
        "ttft_p95_s: result of type 'matrix', expected a vector or a scalar",
        "itl_p95_s: malformed answer from Prometheus (KeyError('result'))",
    )


def test_parse_query_response_keeps_nan_for_the_reader_to_judge() -> None:
    answer = parse_query_response(200, orjson.dumps(per_pod(a="NaN", b="-Inf")))
    assert isinstance(answer, list)
    assert [labels["pod"] for labels, _ in answer] == ["a", "b"]
    assert str(answer[0][1]) == "nan"
    assert answer[1][1] == float("-inf")
