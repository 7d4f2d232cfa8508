"""Header values that reach the ledger, traces or the response are checked first: a byte that is
not printable ASCII, or a value past its bound, is refused with a 400 naming the header, and
the ledger goes on recording. ``/ready`` says when the ledger cannot write."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.gateway.helpers import CHAT, HELLO, StartGateway, StartUpstreams, tier
from tests.gateway.test_governance import create_key, governed, ledger
from tests.gateway.test_serve_process import StartServe, serve  # noqa: F401 - a fixture
from tests.polling import eventually
from tiergate.gateway.state import STATE

TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
# (header, a value that is refused): a byte that is not UTF-8, UTF-8 that is not ASCII, a tab
# (HTTP allows it in a value; other control characters aiohttp refuses itself), and values one
# character past each bound.
REFUSED = [
    (b"x-request-id", b"ab\xffcd"),
    (b"x-request-id", "café".encode()),
    (b"x-request-id", b"a" * 129),
    (b"x-tiergate-stage", b"plan\xff"),
    (b"x-tiergate-stage", b"plan\tb"),
    (b"x-tiergate-stage", b"s" * 65),
    (b"traceparent", TRACEPARENT[:-1] + b"\xff"),
    (b"traceparent", b"0" * 257),
    (b"tracestate", b"vendor=\xe2\x9c\x93"),
    (b"tracestate", b"v=" + b"x" * 4095),
]


async def raw_chat(url: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, Any]:
    """A chat request to the gateway at ``url`` whose header bytes go on the wire as they are:
    (status, JSON body)."""
    host, port = url.removeprefix("http://").split(":")
    body = orjson.dumps({"model": "a", "messages": HELLO})
    lines = [
        b"POST " + CHAT.encode() + b" HTTP/1.1",
        b"Host: " + host.encode(),
        b"Content-Type: application/json",
        b"Content-Length: " + str(len(body)).encode(),
        b"Connection: close",
        *(name + b": " + value for name, value in headers),
    ]
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), orjson.loads(payload)


@pytest.mark.parametrize("with_key", [False, True], ids=["no-key", "key"])
async def test_a_bad_header_value_is_refused_naming_it_and_the_ledger_keeps_recording(
    gateway: StartGateway, upstreams: StartUpstreams, tmp_path: Path, with_key: bool
) -> None:
    (a,) = await upstreams("a")
    store = tmp_path / "ledger.db"
    gw = await gateway(governed([tier("a", a)], store))
    auth = []
    if with_key:
        key, _ = await create_key(gw, team="ml")
        auth = [(b"Authorization", b"Bearer " + key.encode())]
    for name, value in REFUSED:
        status, body = await raw_chat(gw.url, [*auth, (name, value)])
        assert status == 400, (name, value)
        assert body["error"]["code"] == "invalid_header"
        assert body["error"]["param"] == name.decode()
    good = [(b"x-request-id", b"good-1"), (b"x-tiergate-stage", b"plan")]
    status, _ = await raw_chat(gw.url, [*auth, *good, (b"traceparent", TRACEPARENT)])
    assert status == 200
    records = await ledger(store, len(REFUSED) + 1)
    served = [r for r in records if r.status == 200]
    assert [(r.request_id, r.stage) for r in served] == [("good-1", "plan")]
    refused = [r for r in records if r.status == 400]
    assert len(refused) == len(REFUSED)
    assert {(r.error, r.stage) for r in refused} == {("invalid_header", None)}
    status, text = await gw.get("/ready")
    assert status == 200
    assert orjson.loads(text)["ledger"]["available"] is True


async def test_the_stage_header_the_fleet_names_is_the_one_checked(
    gateway: StartGateway, upstreams: StartUpstreams, tmp_path: Path
) -> None:
    (a,) = await upstreams("a")
    store = tmp_path / "ledger.db"
    gw = await gateway(governed([tier("a", a)], store, stageHeader="x-workflow-step"))
    status, body = await raw_chat(gw.url, [(b"x-workflow-step", b"plan\xff")])
    assert (status, body["error"]["param"]) == (400, "x-workflow-step")
    assert (await raw_chat(gw.url, [(b"x-workflow-step", b"plan")]))[0] == 200
    records = sorted(await ledger(store, 2), key=lambda r: r.at)
    assert [(r.status, r.stage) for r in records] == [(400, None), (200, "plan")]


async def test_values_at_their_bounds_are_kept_whole(
    gateway: StartGateway, upstreams: StartUpstreams, tmp_path: Path
) -> None:
    (a,) = await upstreams("a")
    store = tmp_path / "ledger.db"
    gw = await gateway(governed([tier("a", a)], store))
    request_id = ("req " + "".join(chr(c) for c in range(0x21, 0x7F)) + "x" * 128)[:128]
    stage = "s" * 64
    status, headers, _ = await gw.post(
        CHAT,
        {"model": "a", "messages": HELLO},
        headers={"x-request-id": request_id, "x-tiergate-stage": stage},
    )
    assert status == 200
    assert headers["x-request-id"] == request_id
    (record,) = await ledger(store, 1)
    assert (record.request_id, record.stage) == (request_id, stage)


@pytest.mark.parametrize(("mode", "expected"), [("open", 200), ("closed", 503)])
async def test_ready_reports_a_ledger_that_cannot_write(
    gateway: StartGateway, upstreams: StartUpstreams, tmp_path: Path, mode: str, expected: int
) -> None:
    (a,) = await upstreams("a")
    path = tmp_path / "ledger.db"
    gw = await gateway(
        governed(
            [tier("a", a)],
            path,
            ledger={"store": f"sqlite:///{path}", "onStoreDown": mode, "flushMs": 10},
        )
    )
    assert gw.app is not None
    store = gw.app[STATE].router.governance.store
    store.max_bytes = 1  # no page more than the file has: writes fail once its pages are full
    for n in range(200):  # each record fills its pages a little; bounded
        if not store.available:
            break
        await gw.post(
            CHAT, {"model": "a", "messages": HELLO}, headers={"x-request-id": f"{n:0128}"}
        )
        if n % 10 == 9:
            await asyncio.sleep(0.05)  # a group commit or more
    await eventually(lambda: not store.available, what="ledger writes failing")

    status, text = await gw.get("/ready")
    ready = orjson.loads(text)
    assert status == expected
    assert ready["status"] == ("ready" if mode == "open" else "unavailable")
    assert ready["ledger"]["available"] is False
    assert ready["ledger"]["reason"] == "writes failing (OperationalError)"
    assert (await gw.chat("a"))[0] == expected

    store.max_bytes = None  # space is back
    await eventually(lambda: store.available, what="ledger writing again")
    status, text = await gw.get("/ready")
    assert status == 200
    assert orjson.loads(text)["ledger"] == {"available": True}


async def test_sigterm_writes_every_queued_record_after_a_bad_header(
    upstreams: StartUpstreams,
    serve: StartServe,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    (a,) = await upstreams("a")
    store = tmp_path / "ledger.db"
    # Group commits 10 s apart: every record is still queued when SIGTERM comes.
    ledger_section = {"store": f"sqlite:///{store}", "flushMs": 10_000}
    server = await serve(governed([tier("a", a)], store, ledger=ledger_section))
    assert (await raw_chat(server.url, [(b"x-request-id", b"first")]))[0] == 200
    await raw_chat(server.url, [(b"x-request-id", b"ab\xffcd")])  # refused: 400
    assert (await raw_chat(server.url, [(b"x-request-id", b"last")]))[0] == 200
    server.signal(signal.SIGTERM)
    assert await asyncio.wait_for(server.proc.wait(), 10) == 0
    records = sorted(await ledger(store, 3), key=lambda r: r.at)
    assert [(r.request_id, r.status) for r in records][::2] == [("first", 200), ("last", 200)]
    assert (records[1].status, records[1].error) == (400, "invalid_header")
