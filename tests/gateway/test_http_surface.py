"""The gateway's HTTP surface under hostile input: encoded bodies, slow clients, malformed
headers, keys that are not UTF-8, unknown routes; every refusal in OpenAI's error JSON."""

from __future__ import annotations

import asyncio
import gzip
import signal
import sys
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest
import yaml

from tests.gateway.helpers import (
    API_KEY,
    CHAT,
    HELLO,
    LogSecrets,
    StartGateway,
    StartUpstreams,
    eventually,
    fleet_yaml,
    free_port,
    raw_http,
    tier,
)

MASTER = "master-key-for-http-tests-0123456789"
BODY = orjson.dumps({"model": "a", "messages": HELLO})


def request_bytes(
    path: str, body: bytes = b"", *, method: str = "POST", headers: dict[str, str] | None = None
) -> bytes:
    """An HTTP/1.1 request as bytes, ``Connection: close``; ``headers`` are written latin-1."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if method == "POST":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body


def governed(upstream: Any, store: Path, **gateway: Any) -> str:
    """One tier ``a``; keys required; the master key set."""
    section = {
        "masterKey": MASTER,
        "keys": "required",
        "keyCacheMs": 0,
        "ledger": {"store": f"sqlite:///{store}"},
    }
    text = fleet_yaml([tier("a", upstream)], gateway=gateway or None)
    return text + yaml.safe_dump({"governance": section}, sort_keys=False)


# -- item 1: encoded bodies -----------------------------------------------------------------


async def test_a_gzip_bomb_is_refused_with_413_and_the_gateway_stays_healthy(
    gateway: StartGateway, upstreams: StartUpstreams
) -> None:
    (a,) = await upstreams("a")
    gw = await gateway(fleet_yaml([tier("a", a)], gateway={"maxBodyBytes": 1 << 20}))
    # 64 MiB of JSON-ish padding inflating from ~64 KiB: 64 times the limit.
    bomb = gzip.compress(b'{"model": "a", "messages": [], "x": "' + b" " * (64 << 20), 9)
    assert len(bomb) < (1 << 20) // 8
    status, _, payload = await gw.post(CHAT, data=bomb, headers={"Content-Encoding": "gzip"})
    assert status == 413, payload
    assert payload["error"]["code"] == "request_too_large"
    assert await gw.get("/health") == (200, '{"status":"ok"}')
    assert a.posts() == []


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data, wbits=-zlib.MAX_WBITS)),  # raw deflate
    ],
)
async def test_gzip_and_deflate_bodies_are_decoded(
    gateway: StartGateway, upstreams: StartUpstreams, encoding: str, encode: Any
) -> None:
    (a,) = await upstreams("a")
    gw = await gateway(fleet_yaml([tier("a", a)]))
    status, headers, payload = await gw.post(
        CHAT, data=encode(BODY), headers={"Content-Encoding": encoding}
    )
    assert status == 200, payload
    assert headers["x-tiergate-tier"] == "a"


@pytest.mark.parametrize(
    "body",
    [b"\x1f\x8b\x08\x00garbage-not-gzip", gzip.compress(BODY)[:-12], gzip.compress(BODY) + b"x"],
    ids=["corrupt", "truncated", "trailing-bytes"],
)
async def test_a_malformed_compressed_body_is_a_400(
    gateway: StartGateway, upstreams: StartUpstreams, body: bytes
) -> None:
    (a,) = await upstreams("a")
    gw = await gateway(fleet_yaml([tier("a", a)]))
    status, headers, payload = await gw.post(CHAT, data=body, headers={"Content-Encoding": "gzip"})
    assert status == 400, payload
    assert headers["content-type"].startswith("application/json")
    assert payload["error"]["code"] == "invalid_encoding"


async def test_an_encoding_not_decoded_here_is_a_415(
    gateway: StartGateway, upstreams: StartUpstreams
) -> None:
    (a,) = await upstreams("a")
    gw = await gateway(fleet_yaml([tier("a", a)]))
    for encoding in ("br", "zstd", "gzip, gzip"):
        status, _, payload = await gw.post(CHAT, data=BODY, headers={"Content-Encoding": encoding})
        assert status == 415, (encoding, payload)
        assert payload["error"]["code"] == "unsupported_content_encoding"


async def test_a_request_without_a_key_is_refused_before_its_body_is_read(
    gateway: StartGateway, upstreams: StartUpstreams, tmp_path: Path
) -> None:
    (a,) = await upstreams("a")
    gw = await gateway(governed(a, tmp_path / "ledger.db"))
    # Headers announcing 1 MB of body (within the limit), and not one byte of it sent.
    head = request_bytes(CHAT)[: -len(b"\r\n\r\n")].replace(
        b"Content-Length: 0", b"Content-Length: 1000000"
    )
    reply = await raw_http(gw.url, head + b"\r\n\r\n", wait_s=5)
    assert reply.status == 401, reply
    assert reply.error()["code"] == "missing_api_key"


# -- item 3: keys that are not UTF-8 --------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "header", "value"),
    [
        (CHAT, "Authorization", "Bearer sk-tg-\xff"),
        (CHAT, "x-api-key", "\xff"),
        ("/admin/keys", "Authorization", "Bearer \xff\xfe-master"),
    ],
)
async def test_a_key_that_is_not_utf8_is_a_401(  # noqa: PLR0917 - fixtures and parameters
    gateway: StartGateway,
    upstreams: StartUpstreams,
    tmp_path: Path,
    path: str,
    header: str,
    value: str,
) -> None:
    (a,) = await upstreams("a")
    gw = await gateway(governed(a, tmp_path / "ledger.db"))
    method = "POST" if path == CHAT else "GET"
    body = BODY if method == "POST" else b""
    reply = await raw_http(
        gw.url, request_bytes(path, body, method=method, headers={header: value})
    )
    assert reply.status == 401, reply
    reply.error()


# -- item 4: secrets in logs ----------------------------------------------------------------


@pytest.mark.parametrize("tail", ["\r", "\x00", "\x7f"], ids=["CR", "NUL", "DEL"])
async def test_a_header_with_a_control_character_is_a_400_and_no_log_holds_the_key(
    gateway: StartGateway,
    upstreams: StartUpstreams,
    tmp_path: Path,
    log_secrets: LogSecrets,
    tail: str,
) -> None:
    (a,) = await upstreams("a")
    gw = await gateway(governed(a, tmp_path / "ledger.db"))
    key = "sk-tg-read-from-a-crlf-env-file-0123"
    log_secrets.add(key)
    for header, value in (("Authorization", f"Bearer {key}{tail}"), ("x-api-key", key + tail)):
        reply = await raw_http(gw.url, request_bytes(CHAT, BODY, headers={header: value}))
        assert reply.status == 400, reply
        error = reply.error()
        assert key not in error["message"]
    # The master key, sent the same way to the admin API.
    reply = await raw_http(
        gw.url,
        request_bytes("/admin/keys", method="GET", headers={"Authorization": f"Bearer {MASTER}\r"}),
    )
    assert reply.status == 400, reply
    # Something was logged about them, without the keys (checked when the test ends).
    assert any("malformed request" in line for line in log_secrets.lines)


async def test_keys_presented_on_every_path_stay_out_of_the_log(
    gateway: StartGateway, upstreams: StartUpstreams, tmp_path: Path, log_secrets: LogSecrets
) -> None:
    (a,) = await upstreams("a")
    gw = await gateway(governed(a, tmp_path / "ledger.db"))
    headers = {"Authorization": f"Bearer {MASTER}"}
    async with gw.http.post(gw.url + "/admin/keys", json={}, headers=headers) as response:
        assert response.status == 201
        created = (await response.json())["key"]
    log_secrets.add(created, "sk-tg-unknown-key-0123456789")
    client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=created, max_retries=0)
    reply = await client.chat.completions.create(model="a", messages=HELLO)  # type: ignore[arg-type]
    assert reply.choices
    await client.close()
    status, _, _ = await gw.post(
        CHAT, {"model": "a"}, headers={"Authorization": "Bearer sk-tg-unknown-key-0123456789"}
    )
    assert status == 401
    assert log_secrets.lines, "the test should see the gateway's log"


# -- item 5: slow clients -------------------------------------------------------------------


async def test_a_client_dribbling_its_headers_is_disconnected(
    gateway: StartGateway, upstreams: StartUpstreams
) -> None:
    (a,) = await upstreams("a")
    gw = await gateway(fleet_yaml([tier("a", a)], gateway={"headerTimeoutMs": 200}))
    host, port = gw.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    closed = False
    try:
        for i in range(100):  # 100 header lines, one every 50 ms: 5 s, 25 times the bound
            writer.write(f"X-Slow-{i}: x\r\n".encode())
            await writer.drain()
            try:
                async with asyncio.timeout(0.05):
                    if await reader.read(1024) == b"":
                        closed = True
                        break
            except TimeoutError:
                continue
    except ConnectionError:
        closed = True
    finally:
        writer.close()
    assert closed, "the gateway kept a connection whose headers never ended"
    assert await gw.get("/health") == (200, '{"status":"ok"}')


async def test_a_body_that_does_not_arrive_in_time_is_a_408(
    gateway: StartGateway, upstreams: StartUpstreams
) -> None:
    (a,) = await upstreams("a")
    gw = await gateway(fleet_yaml([tier("a", a)], gateway={"bodyTimeoutMs": 200}))
    head = request_bytes(CHAT, BODY)
    reply = await raw_http(gw.url, head[: -len(BODY) // 2], wait_s=5)  # half the body, then none
    assert reply.status == 408, reply
    assert reply.error()["code"] == "request_timeout"
    assert a.posts() == []


def test_the_slow_client_bounds_have_defaults() -> None:
    from tests.gateway.helpers import build_fleet  # noqa: PLC0415

    settings = build_fleet(fleet_yaml([tier("a", "http://127.0.0.1:1/v1")])).gateway
    assert (settings.header_timeout_s, settings.body_timeout_s) == (10.0, 30.0)


# -- item 6: one error shape, and models.retrieve ------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/nope", 404),
        ("POST", "/v1/chat/nope", 404),
        ("GET", "/nope", 404),
        ("GET", CHAT, 405),
        ("DELETE", "/v1/models", 405),
    ],
)
async def test_unknown_routes_and_methods_answer_in_openai_error_json(
    gateway: StartGateway, upstreams: StartUpstreams, method: str, path: str, status: int
) -> None:
    (a,) = await upstreams("a")
    gw = await gateway(fleet_yaml([tier("a", a)]))
    async with gw.http.request(method, gw.url + path) as response:
        assert response.status == status
        assert response.content_type == "application/json"
        error = (await response.json())["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "invalid_request_error"
        if status == 405:
            assert response.headers["Allow"]
            assert error["code"] == "method_not_allowed"
        else:
            assert error["code"] == "unknown_url"


@pytest.mark.parametrize(
    "request_head",
    [
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000,
        b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: abc",
        b"\x16\x03\x01 not-http",
    ],
    ids=["header-too-long", "bad-content-length", "not-http"],
)
async def test_malformed_http_is_a_400_in_openai_error_json(
    gateway: StartGateway, upstreams: StartUpstreams, request_head: bytes
) -> None:
    (a,) = await upstreams("a")
    gw = await gateway(fleet_yaml([tier("a", a)]))
    reply = await raw_http(gw.url, request_head + b"\r\n\r\n")
    assert reply.status == 400, reply
    assert reply.error()["code"] == "invalid_http"
    assert await gw.get("/health") == (200, '{"status":"ok"}')


async def test_the_official_client_retrieves_and_lists_models(
    gateway: StartGateway, upstreams: StartUpstreams
) -> None:
    a, b = await upstreams("a", "b")
    gw = await gateway(fleet_yaml([tier("a", a), tier("b", b)]))
    model = await gw.client.models.retrieve("b")
    assert (model.id, model.object, model.owned_by) == ("b", "model", "tiergate")
    listed = [m.id async for m in gw.client.models.list()]
    assert {"a", "b", "org/model-a"} <= set(listed)
    assert (await gw.client.models.retrieve("org/model-a")).id == "org/model-a"  # a slash
    with pytest.raises(openai.NotFoundError) as caught:
        await gw.client.models.retrieve("nope")
    assert caught.value.code == "model_not_found"
    assert API_KEY  # the client presents the suite's key; it must stay out of the log


async def test_the_log_of_tiergate_serve_at_debug_holds_no_key(
    upstreams: StartUpstreams, tmp_path: Path
) -> None:
    """The real process (its logging set up by the CLI, ``--log-level debug``), sent keys on
    every path a client can take, malformed ones included."""
    (a,) = await upstreams("a")
    upstream_key = "sk-upstream-provider-key-0123456789"
    text = governed(a, tmp_path / "ledger.db").replace(
        "provider: openai-compatible", f"provider: openai-compatible\n  apiKey: {upstream_key}"
    )
    spec = tmp_path / "fleet.yaml"
    spec.write_text(text)
    log = tmp_path / "serve.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    replies = []
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tiergate", "serve", "-c", str(spec), "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "debug", stdout=out, stderr=out,
        )  # fmt: skip
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:

            async def up() -> bool:
                assert proc.returncode is None, log.read_text()
                try:
                    async with http.get(url + "/health") as response:
                        return response.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await eventually(up, timeout_s=20.0, interval_s=0.05, what="tiergate serve up")
            master = {"Authorization": f"Bearer {MASTER}"}
            async with http.post(url + "/admin/keys", json={}, headers=master) as response:
                assert response.status == 201
                created = (await response.json())["key"]
            async with http.post(
                url + CHAT, data=BODY, headers={"Authorization": f"Bearer {created}"}
            ) as response:
                assert response.status == 200
        for headers in (
            {"Authorization": f"Bearer {created}\r"},
            {"x-api-key": created + "\x00"},
            {"Authorization": f"Bearer {MASTER}\r"},
            {"Authorization": f"Bearer {created}\xff"},
        ):
            replies.append(await raw_http(url, request_bytes(CHAT, BODY, headers=headers)))
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 20)
    text = log.read_text(errors="replace")
    for secret in (MASTER, created, upstream_key):
        assert secret not in text, f"{secret} in the log of tiergate serve"
    assert "malformed request" in text, text
    assert [r.status for r in replies] == [400, 400, 400, 401]
    for reply in replies:
        reply.error()
