"""LiteLLM's side of ``bench/bedrock.py``: its Bedrock Converse translation, timed offline.

Runs in LiteLLM's own venv (``bash bench/setup_litellm.sh``), never the project's, started by
``bench/bedrock.py`` with the inputs (request bodies, Converse answers, stream bytes and chunk
sizes) in a JSON file. It loads LiteLLM and writes one JSON line to stdout: its version, the keys
it can time, notes, and its Converse body for the agent request (bench/bedrock.py checks that
both sides build the same one). Then it answers each ``{"key", "count", "max_seconds"}`` line
on stdin with one ``{"samples_ns": [...]}`` line, so that bench/bedrock.py can interleave its
batches with tiergate's. What each key times:

- requests: ``AmazonConverseConfig.map_openai_params`` + ``transform_request``, what
  ``litellm.completion`` runs for a Converse model (its generic parameter handling and routing
  are left out); preparation adds ``json.dumps``, ``resolve_credentials`` (static keys from the
  environment) and ``get_request_headers`` (SigV4), as ``BedrockConverseLLM.completion`` does;
- responses: ``AmazonConverseConfig._transform_response`` on an ``httpx.Response`` built once,
  then ``model_dump_json()``;
- streams: ``AWSEventStreamDecoder.iter_bytes`` over the same chunks, then the proxy's own chunk
  serializer (``_serialize_streaming_chunk``) and SSE framing. ``CustomStreamWrapper``, which
  sits between the two in the proxy, needs a logging object and is left out: a lower bound;
  ``stream_objects`` is the decoder alone.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import IO, Any

Json = dict[str, Any]


def time_calls(call: Callable[[], object], count: int, max_seconds: float) -> list[int]:
    """Nanoseconds of each of ``count`` calls, after a tenth as many unrecorded ones (the same
    method as bench/bedrock.py, which cannot be imported here: it needs the project venv)."""
    for _ in range(max(count // 10, 2)):
        call()
    samples: list[int] = []
    deadline = time.perf_counter_ns() + int(max_seconds * 1e9)
    clock = time.perf_counter_ns
    for _ in range(count):
        start = clock()
        call()
        end = clock()
        samples.append(end - start)
        if end > deadline:
            break
    return samples


def chunks_of(stream: bytes, sizes: list[int]) -> list[bytes]:
    """``stream`` cut at the sizes bench/bedrock.py used."""
    chunks, start = [], 0
    for size in sizes:
        chunks.append(stream[start : start + size])
        start += size
    return chunks


class LiteLLM:
    """The LiteLLM objects the benchmark calls, imported once."""

    def __init__(self, model: str, region: str, url: str) -> None:
        self.model, self.region, self.url = model, region, url
        self.converse = importlib.import_module(
            "litellm.llms.bedrock.chat.converse_transformation"
        ).AmazonConverseConfig()
        self.handler = importlib.import_module(
            "litellm.llms.bedrock.chat.converse_handler"
        ).BedrockConverseLLM()
        self.auth = importlib.import_module("litellm.llms.bedrock.base_aws_llm").AwsAuthParams
        self.decoder = importlib.import_module(
            "litellm.llms.bedrock.chat.invoke_handler"
        ).AWSEventStreamDecoder
        self.litellm = importlib.import_module("litellm")
        self.httpx = importlib.import_module("httpx")
        self.proxy: ModuleType | None = None

    def load_proxy(self) -> str | None:
        """Import the proxy's stream serializer; why not, if it cannot be."""
        try:
            self.proxy = importlib.import_module("litellm.proxy.proxy_server")
        except ImportError as exc:
            return f"proxy serializer unavailable ({exc}); model_dump_json used instead"
        return None

    def request(self, body: Json) -> Json:
        """The Converse request body for an OpenAI chat body."""
        params = {k: v for k, v in body.items() if k not in ("model", "messages")}
        optional = self.converse.map_openai_params(params, {}, self.model, drop_params=False)
        result: Json = self.converse.transform_request(
            self.model, body["messages"], optional, {}, {}
        )
        return result

    def sign(self, data: str) -> object:
        """Credentials and SigV4 headers, as ``BedrockConverseLLM.completion`` gets them."""
        credentials = self.handler.resolve_credentials(self.auth.model_validate({}), self.region)
        return self.handler.get_request_headers(
            credentials=credentials,
            aws_region_name=self.region,
            extra_headers=None,
            endpoint_url=self.url,
            data=data,
            headers={"Content-Type": "application/json"},
            api_key=None,
        ).headers

    def prepare(self, body: Json) -> object:
        """Translation, serialization and signing."""
        return self.sign(json.dumps(self.request(body)))

    def response_call(self, answer: Json) -> Callable[[], object]:
        """Translation of one Converse answer and its JSON encoding."""
        raw = json.dumps(answer, separators=(",", ":")).encode()
        request = self.httpx.Request("POST", self.url)
        response = self.httpx.Response(
            200, content=raw, request=request, headers={"content-type": "application/json"}
        )

        def respond() -> object:
            completion = self.converse._transform_response(
                model=self.model,
                response=response,
                model_response=self.litellm.ModelResponse(),
                stream=False,
                logging_obj=None,
                optional_params={},
                api_key="",
                data="",
                messages=[],
                encoding=None,
            )
            return completion.model_dump_json()

        return respond

    def decode(self, chunks: list[bytes]) -> Iterator[Any]:
        """The stream decoder's objects for ``chunks``."""
        decoded: Iterator[Any] = self.decoder(model=self.model).iter_bytes(iter(chunks))
        return decoded

    def sse(self, chunk: Any) -> object:
        """One decoded chunk as the proxy sends it."""
        if isinstance(chunk, dict):  # messageStart's plain GChunk: no pydantic model to dump
            return f"data: {json.dumps(chunk)}\n\n"
        if self.proxy is None:
            return f"data: {chunk.model_dump_json(exclude_none=True, exclude_unset=True)}\n\n"
        serialized = self.proxy._serialize_streaming_chunk(chunk)
        return self.proxy._format_streaming_sse_chunk(serialized)


def calls(lite: LiteLLM, fixtures: Json) -> dict[str, Callable[[], object]]:
    """What to time, under bench/bedrock.py's keys."""
    small, agent = fixtures["small"], fixtures["agent"]
    chunks = chunks_of(base64.b64decode(fixtures["stream"]), fixtures["chunk_sizes"])
    agent_data = json.dumps(lite.request(agent))
    return {
        "request_small": lambda: lite.request(small),
        "request_agent": lambda: lite.request(agent),
        "prepare_small": lambda: lite.prepare(small),
        "prepare_agent": lambda: lite.prepare(agent),
        "sign": lambda: lite.sign(agent_data),
        "response_text": lite.response_call(fixtures["text_answer"]),
        "response_tool": lite.response_call(fixtures["tool_answer"]),
        "stream_sse": lambda: sum(1 for chunk in lite.decode(chunks) if lite.sse(chunk)),
        "stream_objects": lambda: sum(1 for _ in lite.decode(chunks)),
    }


def usable(
    timed: dict[str, Callable[[], object]],
) -> tuple[dict[str, Callable[[], object]], list[str]]:
    """The calls that run offline, and a note for each that does not."""
    working, failures = {}, []
    for key, call in timed.items():
        try:
            call()
        # Any LiteLLM error: the row is reported as skipped (with why) instead of ending the run.
        except Exception as exc:  # noqa: BLE001
            failures.append(f"{key} skipped: {type(exc).__name__}: {str(exc)[:200]}")
        else:
            working[key] = call
    return working, failures


def serve(timed: dict[str, Callable[[], object]], answers: IO[str]) -> None:
    """Answer each ``{"key", "count", "max_seconds"}`` line on stdin with its samples."""
    for line in sys.stdin:
        ask = json.loads(line)
        samples = time_calls(timed[ask["key"]], ask["count"], ask["max_seconds"])
        answers.write(json.dumps({"samples_ns": samples}) + "\n")
        answers.flush()


def main(argv: list[str]) -> int:
    """Load LiteLLM and the fixtures in ``argv[1]``, say so on stdout, then serve."""
    fixtures = json.loads(Path(argv[1]).read_text())
    answers = sys.stdout
    notes = [
        "request: map_openai_params + transform_request; prepare adds json.dumps, "
        "resolve_credentials and get_request_headers (the async path also hops to a thread)",
        "response: _transform_response on a built httpx.Response + model_dump_json()",
        "stream: AWSEventStreamDecoder.iter_bytes + the proxy's _serialize_streaming_chunk; "
        "CustomStreamWrapper (between them in the proxy) not included: a lower bound",
    ]
    # LiteLLM may print while importing or running: stdout carries only the protocol.
    with contextlib.redirect_stdout(sys.stderr):
        lite = LiteLLM(fixtures["model"], fixtures["region"], fixtures["url"])
        problem = lite.load_proxy()
        notes += [problem] if problem else []
        timed, failures = usable(calls(lite, fixtures))
        notes += failures
        hello = {
            "litellm": version("litellm"),
            "keys": sorted(timed),
            "notes": notes,
            "agent_converse": lite.request(fixtures["agent"]),  # to check both sides agree
        }
        answers.write(json.dumps(hello) + "\n")
        answers.flush()
        serve(timed, answers)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
