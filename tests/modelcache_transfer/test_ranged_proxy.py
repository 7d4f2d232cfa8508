"""Ranged reads through the environment's proxy: plain HTTP sent to the proxy as whole URLs
(with ``Proxy-Authorization`` from the proxy URL), HTTPS through a CONNECT tunnel, and
``NO_PROXY`` honoured. The proxy is a byte relay on loopback that records what it was asked."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.modelcache_transfer.range_server import RangeServer, random_bytes
from tiergate.modelcache.errors import SourceError
from tiergate.modelcache.sources.ranged import RangeClient, RangeGet, read_bytes

DATA = random_bytes(300_000, seed=31)
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


class Relay:
    """A proxy on 127.0.0.1: a ``CONNECT`` is answered 200 and tunnelled; any other request is
    relayed as sent to the host its URL names (servers take absolute-form targets). The head of
    every request it sees first on a connection is kept in ``heads``."""

    def __init__(self) -> None:
        self.heads: list[str] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            text = head.decode("latin-1")
            self.heads.append(text)
            method, target, _ = text.split("\r\n", 1)[0].split(" ", 2)
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                host_port = target.split("://", 1)[1].split("/", 1)[0]
                host, port = host_port.rsplit(":", 1)
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                up_writer.write(head)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


@pytest.fixture
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1 (openssl's CLI): server and client contexts."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
         "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    async with Relay() as proxy:
        yield proxy


async def _read(client: RangeClient, url: str, start: int, end: int) -> bytes:
    reader = RangeGet(client, url, "test read")
    return await asyncio.to_thread(read_bytes, reader, start, end, 5.0)


async def test_plain_http_goes_to_the_proxy_as_whole_urls(
    relay: Relay, no_proxy_environment: pytest.MonkeyPatch
) -> None:
    no_proxy_environment.setenv("HTTP_PROXY", f"http://user:p%40ss@127.0.0.1:{relay.port}")
    async with RangeServer({"w.bin": DATA}) as server:
        client = RangeClient(5.0)
        try:
            assert await _read(client, server.url("w.bin"), 1000, 250_000) == DATA[1000:250_000]
        finally:
            client.close()
    assert server.requests == [("w.bin", 1000, 250_000)]
    (head,) = relay.heads
    assert head.startswith(f"GET {server.url('w.bin')} HTTP/1.1\r\n")
    assert "Proxy-Authorization: Basic dXNlcjpwQHNz\r\n" in head  # user:p@ss


async def test_https_goes_through_a_connect_tunnel(
    relay: Relay,
    no_proxy_environment: pytest.MonkeyPatch,
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_context, client_context = tls
    no_proxy_environment.setenv("HTTPS_PROXY", f"http://a:b@127.0.0.1:{relay.port}")
    server = RangeServer({"w.bin": DATA})
    server.ssl_context = server_context
    async with server:
        url = server.url("w.bin").replace("http://", "https://")
        client = RangeClient(5.0, ssl_context=client_context)
        try:
            assert await _read(client, url, 0, len(DATA)) == DATA
            assert await _read(client, url, 7, 70) == DATA[7:70]  # the tunnel, kept alive
        finally:
            client.close()
    (head,) = relay.heads
    assert head.startswith(f"CONNECT 127.0.0.1:{server.port} HTTP/1.")
    assert "Proxy-Authorization: Basic YTpi\r\n" in head  # a:b
    assert len(server.requests) == 2


async def test_no_proxy_is_honoured(relay: Relay, no_proxy_environment: pytest.MonkeyPatch) -> None:
    no_proxy_environment.setenv("HTTP_PROXY", f"http://127.0.0.1:{relay.port}")
    no_proxy_environment.setenv("NO_PROXY", "127.0.0.1")
    async with RangeServer({"w.bin": DATA}) as server:
        client = RangeClient(5.0)
        try:
            assert await _read(client, server.url("w.bin"), 0, 10) == DATA[:10]
        finally:
            client.close()
    assert relay.heads == []
    assert server.requests == [("w.bin", 0, 10)]


async def test_a_proxy_spoken_to_over_tls_is_refused_before_credentials_leave(
    relay: Relay, no_proxy_environment: pytest.MonkeyPatch
) -> None:
    """http.client cannot speak TLS to the proxy itself: an https:// proxy URL would carry its
    Proxy-Authorization in clear text, so it is refused, naming the proxy without them."""
    no_proxy_environment.setenv("HTTP_PROXY", f"https://user:SECRET@127.0.0.1:{relay.port}")
    async with RangeServer({"w.bin": DATA}) as server:
        client = RangeClient(5.0)
        try:
            with pytest.raises(SourceError, match="TLS to the proxy itself is not supported") as e:
                await _read(client, server.url("w.bin"), 0, 10)
        finally:
            client.close()
    assert "SECRET" not in str(e.value)
    assert relay.heads == []
    assert server.requests == []


async def test_a_file_replaced_during_the_fetch_is_a_source_error() -> None:
    """A range answered from a file of another size than the one listed: the object was
    replaced, and its ranges would mix two versions."""
    async with RangeServer({"w.bin": DATA + b"grown"}) as server:
        client = RangeClient(5.0)
        reader = RangeGet(client, server.url("w.bin"), "GET w.bin", size=len(DATA))
        try:
            with pytest.raises(SourceError, match=f"now {len(DATA) + 5} bytes, listed as"):
                await asyncio.to_thread(read_bytes, reader, 0, 10, 5.0)
        finally:
            client.close()
