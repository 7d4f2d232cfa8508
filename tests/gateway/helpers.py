"""Helpers of the gateway tests: fleet specs as YAML, a gateway handle, polling, metrics.

- ``tier(name, upstream, **keys)`` and ``fleet_yaml(tiers, ...)`` write a fleet spec as YAML
  text (camelCase keys, as in a real file); ``build_fleet(text)`` parses it.
- ``Gateway``: a running gateway with an ``AsyncOpenAI`` client (``client``), a raw
  ``aiohttp.ClientSession`` (``http``) and small request helpers.
- ``eventually(check)`` polls a condition a bounded number of times.
- ``metric(text, name, **labels)`` reads a sample (summed over matching label sets) from
  Prometheus text.
- ``LogSecrets``: log records kept to be searched for secrets (the ``log_secrets`` fixture).
- ``raw_http(url, data)`` sends bytes as they are and reads what comes back until the server
  closes the connection (or a bounded wait ends).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import openai
import orjson
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.upstream import FakeUpstream
from tests.polling import eventually  # noqa: F401 - re-exported for the gateway tests
from tiergate.spec import Fleet, parse_fleet

StartUpstreams = Callable[..., Awaitable[list[FakeUpstream]]]
StartGateway = Callable[[str], Awaitable["Gateway"]]

API_KEY = "sk-test-client-key-0123456789"
CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "hello"}]


def tier(
    name: str, upstream: FakeUpstream | str, *, model: str | None = None, **keys: Any
) -> dict[str, Any]:
    """One ``models[]`` entry for ``upstream`` (a FakeUpstream or a base URL).

    ``model`` (the upstream's model id) defaults to ``org/model-NAME``; ``keys`` are further
    camelCase keys of the entry (``healthCheck={...}``, ``timeouts={...}``, ``spillover={...}``).
    """
    base_url = upstream if isinstance(upstream, str) else upstream.url
    entry: dict[str, Any] = {
        "name": name,
        "provider": "openai-compatible",
        "baseUrl": base_url,
        "model": model or f"org/model-{name}",
    }
    entry.update(keys)
    return entry


def fleet_yaml(
    tiers: list[dict[str, Any]],
    *,
    cascade: list[str] | None = None,
    fallback: list[dict[str, Any]] | None = None,
    breaker: dict[str, Any] | None = None,
    gateway: dict[str, Any] | None = None,
) -> str:
    """A fleet spec's YAML text: the tiers in cascade order unless ``cascade`` says otherwise."""
    routing: dict[str, Any] = {"cascadeOrder": cascade or [t["name"] for t in tiers]}
    if fallback is not None:
        routing["fallbackConditions"] = fallback
    if breaker is not None:
        routing["breaker"] = breaker
    doc: dict[str, Any] = {"routing": routing, "models": tiers}
    if gateway is not None:
        doc["gateway"] = gateway
    return yaml.safe_dump(doc, sort_keys=False)


def build_fleet(text: str) -> Fleet:
    return parse_fleet(text, "test.yaml", env={})


class LogSecrets(logging.Handler):
    """Every log record, formatted with its traceback, searched for secrets at the end."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self._secrets: set[str] = set()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def add(self, *secrets: str) -> None:
        self._secrets.update(s for s in secrets if s)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def leaks(self, text: str) -> list[str]:
        """The secrets found in ``text``."""
        return [s for s in self._secrets if s in text]

    def check(self) -> None:
        found = [(line, self.leaks(line)) for line in self.lines if self.leaks(line)]
        assert not found, f"secrets in the log: {found}"


@dataclass(frozen=True)
class RawReply:
    status: int | None  # None when the server closed without answering
    headers: dict[str, str]  # lower-cased names
    body: bytes
    closed: bool  # the server closed the connection before a whole response came

    def error(self) -> dict[str, Any]:
        """The OpenAI ``error`` object of the body (fails unless the body is one)."""
        assert self.headers.get("content-type", "").startswith("application/json"), self
        payload = orjson.loads(self.body)
        assert set(payload["error"]) >= {"message", "type", "param", "code"}, payload
        return dict(payload["error"])


async def raw_http(url: str, data: bytes, *, wait_s: float = 10) -> RawReply:
    """Send ``data`` to the server at ``url`` (its origin); read until a whole response came
    (headers and ``Content-Length`` bytes), the server closes, or ``wait_s`` passes."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    received = b""
    closed = False
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(wait_s):
            while not _complete(received):
                chunk = await reader.read(65536)
                if not chunk:
                    closed = True
                    break
                received += chunk
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
    return _parse_reply(received, closed)


def _complete(received: bytes) -> bool:
    head, found, body = received.partition(b"\r\n\r\n")
    if not found:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def _parse_reply(received: bytes, closed: bool) -> RawReply:
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/"):
        return RawReply(None, {}, b"", closed)
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    return RawReply(status, headers, body[: int(length)] if length else body, closed)


def free_port() -> int:
    """A TCP port that nothing listens on (bound and released at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Gateway:
    """A gateway running in-process, with clients pointed at it."""

    url: str
    client: openai.AsyncOpenAI
    http: aiohttp.ClientSession
    fleet: Fleet
    app: web.Application | None = None

    async def post(
        self, path: str, body: Any = None, **kwargs: Any
    ) -> tuple[int, dict[str, str], Any]:
        """POST ``body`` as JSON (or ``data=`` raw bytes): (status, lower-cased headers, payload)."""
        if body is not None:
            kwargs["json"] = body
        async with self.http.post(self.url + path, **kwargs) as response:
            text = await response.text()
            try:
                payload: Any = await response.json(content_type=None)
            except ValueError:
                payload = text
            headers = {key.lower(): value for key, value in response.headers.items()}
            return response.status, headers, payload

    async def get(self, path: str) -> tuple[int, str]:
        async with self.http.get(self.url + path) as response:
            return response.status, await response.text()

    async def chat(self, model: str, **kwargs: Any) -> tuple[int, dict[str, str], Any]:
        """A non-streaming chat completion through the raw client."""
        return await self.post(CHAT, {"model": model, "messages": HELLO, **kwargs})

    async def served_by(self, model: str) -> str | None:
        """The tier that served one chat request for ``model`` (None when none did)."""
        status, headers, _ = await self.chat(model)
        return headers.get("x-tiergate-tier") if status == 200 else None

    async def metrics(self) -> str:
        status, text = await self.get("/metrics")
        assert status == 200
        return text


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called ``name`` (full sample name, e.g. ``..._total``) in Prometheus text."""
    return [
        (dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels`` (0 when none)."""
    return sum(
        value
        for sample_labels, value in metric_samples(text, name)
        if all(sample_labels.get(k) == v for k, v in labels.items())
    )


def refused_url() -> str:
    """A base URL where nothing listens: connecting is refused."""
    return f"http://127.0.0.1:{free_port()}/v1"


def attempts_of(payload: Any) -> list[tuple[str, str, int | None]]:
    """``(tier, reason, status)`` of each attempt in a gateway error body."""
    return [(a["tier"], a["reason"], a["status"]) for a in payload["error"]["attempts"]]


async def read_sse(
    gw: Gateway, path: str, body: dict[str, Any]
) -> tuple[int, dict[str, str], list[str]]:
    """POST a streaming request; (status, lower-cased headers, the ``data:`` payloads in order).

    Reads until the server ends the body; a connection dropped mid-body ends the list early.
    """
    events: list[str] = []
    async with gw.http.post(gw.url + path, json=body) as response:
        headers = {key.lower(): value for key, value in response.headers.items()}
        try:
            async for line in response.content:
                text = line.decode().rstrip("\r\n")
                if text.startswith("data:"):
                    events.append(text[5:].strip())
        except aiohttp.ClientPayloadError:
            events.append("<connection dropped>")
        return response.status, headers, events


async def serve_app(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on a free loopback port; returns the runner (to clean up) and its origin."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"
