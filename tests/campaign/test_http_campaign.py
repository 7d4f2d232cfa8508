"""Hostile HTTP requests, sent as raw bytes over a socket to a live ``tiergate serve``.

Hypothesis draws the request line (methods, paths with odd bytes), headers (names and values
with non-ASCII and control bytes, the keys in every form), bodies (OpenAI requests with wrong
types, arbitrary JSON, bytes), ``Content-Encoding`` values and framings (``Content-Length`` too
short or too long, chunked, malformed chunked, both). Whatever arrives, the gateway must:

- never answer 500, and answer 502/503/504 only with its own error JSON (a cascade that ran
  out: ``upstream_error`` with the attempts; a store that is down);
- answer every error on ``/v1/`` in OpenAI's error shape;
- keep tracebacks and the keys out of its log, keep running, and stay bounded in memory.

Every example is checked and the distinct failures are reported together at the end, each with
the first request that showed it, so one run lists everything that is wrong.
"""

from __future__ import annotations

import functools
import gzip
import http.client
import json
import socket
import zlib
from dataclasses import dataclass
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from tests.campaign.bounds import campaign_settings
from tests.campaign.conftest import LiveGateway, not_its_own_5xx, openai_error

# Placeholders in drawn headers, replaced by the live gateway's secrets when sent.
KEY = b"<KEY>"
MASTER = b"<MASTER>"

MAX_EXAMPLES = 250
# A generous memory bound for the whole campaign (not a timing one): a leak, or a body held
# whole in memory (a decompression bomb), goes far past it.
RSS_GROWTH_LIMIT_KIB = 200 * 1024
ANSWER_WAIT_S = 15.0  # a bound on each read, so that a hang ends the example

PATHS = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/models",
    "/v1/models/main",
    "/v1/models/nope",
    "/v1/nope",
    "/v1",
    "/health",
    "/ready",
    "/metrics",
    "/openapi.json",
    "/admin/keys",
    "/admin/keys/k_nope",
    "/admin/report",
    "/",
]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE"]
HEADER_NAMES = [
    b"Content-Type",
    b"Accept",
    b"Accept-Encoding",
    b"x-request-id",
    b"x-tiergate-stage",
    b"traceparent",
    b"tracestate",
    b"Expect",
    b"Connection",
    b"Host",
    b"api-key",
]
AUTH = [
    [],
    [(b"Authorization", b"Bearer " + KEY)],
    [(b"x-api-key", KEY)],
    [(b"Authorization", b"Bearer " + MASTER)],
    [(b"Authorization", b"bearer  " + KEY + b" ")],
    [(b"Authorization", b"Bearer \xff\xfe\x00")],
    [(b"x-api-key", b"\xc3\x28")],
    [(b"Authorization", b"Basic " + KEY)],
    [(b"Authorization", b"Bearer")],
    # The key itself in a header line the HTTP parser rejects: its error must not log the key.
    [(b"Authorization", b"Bearer " + KEY + b"\x01")],
    [(b"x-api-key", KEY + b"\x7f")],
]
ENCODINGS = [None, "gzip", "deflate", "gzip-garbage", "br", "x-bogus", "gzip, gzip", "identity"]
FRAMINGS = ["length", "length", "chunked", "short", "long", "bad-chunked", "both", "none"]


@dataclass(frozen=True)
class RawRequest:
    """One drawn request, before the secrets are put in and the framing is applied."""

    method: str
    path: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    encoding: str | None = None
    framing: str = "length"

    def wire(self, gateway: LiveGateway) -> bytes:
        """The request's bytes as sent."""
        body, headers = self.body, list(self.headers)
        if self.encoding is not None:
            body = _encode(body, self.encoding)
            name = self.encoding.removesuffix("-garbage").removesuffix("-bomb")
            headers.append((b"Content-Encoding", name.encode()))
        headers = [(n, v.replace(KEY, gateway.key.encode())) for n, v in headers]
        headers = [(n, v.replace(MASTER, gateway.master.encode())) for n, v in headers]
        headers.append((b"Host", f"127.0.0.1:{gateway.port}".encode()))
        headers.append((b"Connection", b"close"))
        body, framing_headers = _frame(body, self.framing)
        lines = [self.method.encode() + b" " + self.path + b" HTTP/1.1"]
        lines += [n + b": " + v for n, v in [*headers, *framing_headers]]
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    @property
    def half_close(self) -> bool:
        """Whether the gateway must see the end of the stream to finish reading the request."""
        return self.framing in ("long", "bad-chunked")


def _encode(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body)
    if encoding == "deflate":
        return zlib.compress(body)
    if encoding == "gzip-bomb":
        return bomb()
    return body  # announced but not applied: the gateway gets bytes that do not decode


def _frame(body: bytes, framing: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    length = str(len(body)).encode()
    if framing == "length":
        return body, [(b"Content-Length", length)]
    if framing == "short":
        return body, [(b"Content-Length", str(max(0, len(body) - 3)).encode())]
    if framing == "long":
        return body, [(b"Content-Length", str(len(body) + 10).encode())]
    chunked = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    if framing == "chunked":
        return chunked, [(b"Transfer-Encoding", b"chunked")]
    if framing == "bad-chunked":
        return b"zz\r\n" + body, [(b"Transfer-Encoding", b"chunked")]
    if framing == "both":
        return chunked, [(b"Transfer-Encoding", b"chunked"), (b"Content-Length", length)]
    return body, []


@functools.cache
def bomb() -> bytes:
    """256 MiB of JSON whitespace, gzip-compressed to about 256 KB."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [packer.compress(b'{"model": "main", "messages": [] ')]
    parts += [packer.compress(b" " * (1 << 20)) for _ in range(256)]
    return b"".join([*parts, packer.compress(b"}"), packer.flush()])


# Header bytes: anything but CR and LF (which would end the header rather than fill it).
_header_bytes = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_token = st.text(
    alphabet=st.characters(codec="ascii", exclude_characters=" \r\n:"), min_size=1, max_size=12
).map(str.encode)
_path = st.one_of(
    st.sampled_from(PATHS).map(str.encode),
    st.tuples(st.sampled_from(PATHS), _header_bytes).map(lambda p: p[0].encode() + p[1]),
    st.tuples(
        st.sampled_from(PATHS), st.sampled_from(["?", "/", "%", "%ff", "/..", "//", "?a=%00"])
    ).map(lambda p: (p[0] + p[1]).encode()),
    _header_bytes.map(lambda b: b"/" + b.replace(b" ", b"")),
)
_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(["100000", "main", "", "\x00", "\u202e"]),
)
_json_value = st.recursive(
    _scalar,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_messages = st.one_of(
    st.just([{"role": "user", "content": "hello"}]),
    st.just([]),
    st.lists(_json_value, max_size=3),
    _scalar,
)
_openai_body = st.fixed_dictionaries(
    {"model": st.one_of(st.sampled_from(["main", "down", "lonely", "nope", ""]), _scalar)},
    optional={
        "messages": _messages,
        "prompt": st.one_of(st.just("hello"), _json_value),
        "input": st.one_of(st.just("hello"), _json_value),
        "stream": st.one_of(st.booleans(), _scalar),
        "stream_options": st.one_of(st.just({"include_usage": True}), _json_value),
        "max_tokens": _scalar,
        "max_completion_tokens": _scalar,
        "n": _scalar,
        "best_of": _scalar,
        "temperature": _scalar,
        "team": _scalar,
        "budget_usd": _scalar,
        "rpm": _scalar,
        "budget_days": _scalar,
    },
)
_body = st.one_of(
    _openai_body.map(lambda b: json.dumps(b).encode()),
    _json_value.map(lambda b: json.dumps(b).encode()),
    st.binary(max_size=64),
    st.just(b""),
)


@st.composite
def raw_requests(draw: st.DrawFn) -> RawRequest:
    method = draw(st.one_of(st.sampled_from(METHODS), _token.map(bytes.decode)))
    headers = list(draw(st.sampled_from(AUTH)))
    headers += draw(
        st.lists(
            st.tuples(st.one_of(st.sampled_from(HEADER_NAMES), _token), _header_bytes),
            max_size=4,
        )
    )
    if draw(st.booleans()):
        headers.append((b"Content-Type", b"application/json"))
    return RawRequest(
        method=method,
        path=draw(_path),
        headers=headers,
        body=draw(_body),
        encoding=draw(st.sampled_from(ENCODINGS)),
        framing=draw(st.sampled_from(FRAMINGS)),
    )


@dataclass
class Answer:
    status: int | None  # None: the connection closed without a response
    body: bytes
    problem: str | None = None  # a transport-level problem (no answer within the bound)


def send(gateway: LiveGateway, request: RawRequest) -> Answer:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=ANSWER_WAIT_S) as sock:
        try:
            sock.sendall(request.wire(gateway))
            if request.half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the gateway may close while we still send (a request it refused early)
        response = http.client.HTTPResponse(sock, method=request.method)
        try:
            response.begin()
            body = response.read()
        except (http.client.RemoteDisconnected, http.client.BadStatusLine, ConnectionError):
            return Answer(None, b"")
        except http.client.IncompleteRead as exc:
            return Answer(response.status, exc.partial, "the body was cut short")
        except TimeoutError:
            return Answer(None, b"", f"no answer within {ANSWER_WAIT_S:.0f} s")
        return Answer(response.status, body)


def problems_of(request: RawRequest, answer: Answer) -> list[tuple[str, str]]:
    """What is wrong with ``answer`` to ``request``: (kind, detail) pairs, none when all is well.

    The kind is coarse (so that one fault is reported once), the detail shows this instance.
    """
    found = [(answer.problem, answer.problem)] if answer.problem else []
    status = answer.status
    if status is None:
        return found
    path = request.path.split(b"?", 1)[0]
    error = openai_error(answer.body)
    detail = f"{status} on {path[:60]!r}: {answer.body[:200]!r}"
    if not_its_own_5xx(status, answer.body, path.decode("latin-1")):
        found.append((f"{status} from tiergate itself", detail))
    if path.startswith(b"/v1/") and status >= 400 and request.method != "HEAD" and error is None:
        found.append((f"{status} on /v1/ not in OpenAI's error shape", detail))
    return found


def _chat(body: dict[str, Any], *headers: tuple[bytes, bytes], **fields: Any) -> RawRequest:
    auth = [(b"Authorization", b"Bearer " + KEY), *headers]
    return RawRequest("POST", b"/v1/chat/completions", auth, json.dumps(body).encode(), **fields)


HELLO = {"model": "main", "messages": [{"role": "user", "content": "hello"}]}
# The hostile inputs that earlier found failures (issue #14); each is tried on every run.
KNOWN = [
    RawRequest("POST", b"/v1/chat/completions", [], b"", encoding="gzip-bomb"),
    RawRequest("POST", b"/v1/chat/completions", [(b"Authorization", b"Bearer \xff\xfe")], b"{}"),
    RawRequest("GET", b"/v1/models", [(b"x-api-key", b"\xe9t\xe9")], b""),
    RawRequest("GET", b"/v1/models", [(b"Authorization", b"Bearer " + KEY + b"\x01")], b""),
    _chat(HELLO, (b"x-request-id", b"\xff\xfe\x01")),
    _chat(HELLO, (b"x-tiergate-stage", b"\xc3\x28")),
    _chat(HELLO, (b"traceparent", b"\x00\x7f\xff")),
    _chat({**HELLO, "max_tokens": "100000"}),
    _chat({**HELLO, "max_tokens": 100000.0}),
    _chat({**HELLO, "n": 10**30}),
    RawRequest("GET", b"/v1/nope", [], b""),
    RawRequest("DELETE", b"/v1/chat/completions", [], b""),
    RawRequest("POST", b"/v1/chat/completions", [], b"\x00\xff", encoding="x-bogus"),
]


def shown(wire: bytes, gateway: LiveGateway) -> bytes:
    """``wire`` with the secrets put back as placeholders, for the failure report."""
    return wire.replace(gateway.key.encode(), KEY).replace(gateway.master.encode(), MASTER)


def test_hostile_requests_get_no_5xx_no_traceback_and_no_secret_in_logs(
    live_gateway: LiveGateway,
) -> None:
    failures: dict[str, tuple[str, RawRequest]] = {}
    peak_before = live_gateway.peak_rss_kib()

    def check(request: RawRequest) -> None:
        answer = send(live_gateway, request)
        for kind, detail in problems_of(request, answer):
            failures.setdefault(kind, (detail, request))
        if live_gateway.proc.poll() is not None:
            exited = f"the gateway exited {live_gateway.proc.returncode}"
            failures.setdefault("exited", (exited, request))

    @campaign_settings(MAX_EXAMPLES)
    @given(raw_requests())
    def campaign(request: RawRequest) -> None:
        check(request)

    for known in KNOWN:
        campaign = example(known)(campaign)
    campaign()

    report = [
        f"{kind}: {detail}\n  first seen with: {shown(request.wire(live_gateway), live_gateway)[:400]!r}"
        for kind, (detail, request) in failures.items()
    ]
    report += live_gateway.log_problems()
    growth = live_gateway.peak_rss_kib() - peak_before
    if growth > RSS_GROWTH_LIMIT_KIB:
        report.append(f"the gateway's peak RSS grew by {growth // 1024} MiB during the campaign")
    assert not report, f"{len(report)} distinct failures:\n\n" + "\n\n".join(report)
