"""``GET /openapi.json``: the gateway publishes its API, every route it serves, as OpenAPI 3.1."""

from __future__ import annotations

import orjson
from openapi_spec_validator import validate

from tests.gateway.helpers import StartGateway, StartUpstreams, fleet_yaml, tier
from tiergate.gateway.openapi import OPERATIONS


async def test_openapi_json_is_a_valid_document_of_every_route_served(
    gateway: StartGateway, upstreams: StartUpstreams
) -> None:
    (a,) = await upstreams("a")
    gw = await gateway(fleet_yaml([tier("main", a)]))
    assert gw.app is not None

    async with gw.http.get(gw.url + "/openapi.json") as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        document = orjson.loads(await response.read())

    validate(document)
    assert document["openapi"].startswith("3.1")
    served = {
        (route.method, route.resource.canonical)
        for route in gw.app.router.routes()
        if route.resource is not None and route.method not in ("HEAD", "*")
    }
    published = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    assert served == published
    undescribed = sorted(route for route in served if route not in OPERATIONS)
    assert not undescribed, f"routes without an entry in openapi.OPERATIONS: {undescribed}"
    chat = document["paths"]["/v1/chat/completions"]["post"]
    assert {"bearer": []} in chat["security"]
    assert {"apiKey": []} in chat["security"]
    assert chat["responses"]["default"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    async with gw.http.get(gw.url + "/v1/models") as response:
        listed = [m["id"] for m in orjson.loads(await response.read())["data"]]
    model = document["components"]["schemas"]["ChatCompletionRequest"]["properties"]["model"]
    assert sorted(model["enum"]) == sorted(listed) == ["main", "org/model-main"]


async def test_every_operation_the_document_describes_is_served(
    gateway: StartGateway, upstreams: StartUpstreams
) -> None:
    (a,) = await upstreams("a")
    gw = await gateway(fleet_yaml([tier("main", a)]))
    assert gw.app is not None
    served = {
        (route.method, route.resource.canonical)
        for route in gw.app.router.routes()
        if route.resource is not None
    }

    missing = sorted(operation for operation in OPERATIONS if operation not in served)

    assert not missing, f"described in openapi.OPERATIONS but not served: {missing}"
