"""Open-loop replay of a trace against an OpenAI-compatible endpoint (the gateway).

Each trace request is sent at its arrival time whether or not earlier ones have finished (an
open loop, as real users behave), as a streaming chat completion with about the trace's prompt
tokens and ``max_tokens`` set to its output tokens. What the client saw of each request is
kept as an :class:`Outcome`: the tier that served it (``x-tiergate-tier``), time to first
token, tokens and any error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from tiergate.sim.workloads import TraceRequest

CANCELLED = "cancelled"  # the error of a request still open when the replay was stopped


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request as the client saw it; ``error`` is None when its stream completed."""

    sent_at: float  # seconds after the replay started
    done_at: float
    tier: str | None
    status: int
    ttft_s: float | None
    prompt_tokens: int
    output_tokens: int
    error: str | None


@dataclass(slots=True)
class ReplayProgress:
    """Counters the live view reads while the replay runs."""

    total: int
    sent: int = 0
    done: int = 0
    failed: int = 0
    delayed: int = 0  # sent late because ``max_in_flight`` requests were already open

    @property
    def in_flight(self) -> int:
        return self.sent - self.done


class Replay:
    """Sends ``requests`` (arrivals in wall-clock seconds from the start) to ``base_url``.

    At most ``max_in_flight`` requests are open at once: beyond that a request waits for a
    slot and counts as delayed, so that an overloaded demo degrades visibly instead of opening
    sockets without bound.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        model: str,
        requests: Sequence[TraceRequest],
        prompt: Callable[[TraceRequest], str],
        *,
        max_in_flight: int = 256,
        max_output_tokens: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._model = model
        self._requests = requests
        self._prompt = prompt
        self._slots = asyncio.Semaphore(max_in_flight)
        self._max_output = max_output_tokens
        self._clock = clock
        self._start = clock()
        self.progress = ReplayProgress(total=len(requests))
        self.outcomes: list[Outcome] = []
        self._milestones: list[tuple[int, asyncio.Future[None]]] = []

    def elapsed(self) -> float:
        """Wall-clock seconds since the replay started."""
        return self._clock() - self._start

    async def wait_sent(self, count: int) -> None:
        """Until ``count`` requests have been sent."""
        if self.progress.sent >= count:
            return
        future = asyncio.get_running_loop().create_future()
        self._milestones.append((count, future))
        await future

    async def run(self, stop: asyncio.Event) -> None:
        """Send every request on time, then wait for the last ones; return early on ``stop``,
        cancelling what is still open."""
        tasks: set[asyncio.Task[None]] = set()
        stopped = asyncio.create_task(stop.wait())
        self._start = self._clock()
        try:
            for request in self._requests:
                delay = request.arrival_s - self.elapsed()
                if delay > 0:
                    await asyncio.wait([stopped], timeout=delay)
                if self._slots.locked():
                    self.progress.delayed += 1
                slot = asyncio.create_task(self._slots.acquire())
                await asyncio.wait([slot, stopped], return_when=asyncio.FIRST_COMPLETED)
                if stopped.done():
                    slot.cancel()
                    acquired = await asyncio.gather(slot, return_exceptions=True)
                    if acquired[0] is True:
                        self._slots.release()
                    return
                task = asyncio.create_task(self._send(request))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            while tasks and not stopped.done():
                await asyncio.wait([*tasks, stopped], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(stopped, *tasks, return_exceptions=True)

    async def _send(self, request: TraceRequest) -> None:
        sent_at = self.elapsed()
        self.progress.sent += 1
        if self._milestones:
            self._reached(self.progress.sent)
        body = {
            "model": self._model,
            "messages": [{"role": "user", "content": self._prompt(request)}],
            "max_tokens": max(1, min(request.output_tokens, self._max_output)),
            # vLLM's extension: generate all max_tokens, as many tokens as the trace recorded.
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        # Stays so only when the demo is cut short while the request is open.
        outcome = Outcome(sent_at, sent_at, None, 0, None, 0, 0, CANCELLED)
        try:
            outcome = await self._stream(body, sent_at)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            # ValueError: an event that is not JSON. Any of these is the request's failure,
            # to be counted and shown, not the demo's.
            outcome = Outcome(sent_at, self.elapsed(), None, 0, None, 0, 0, type(exc).__name__)
        finally:
            self.outcomes.append(outcome)
            self.progress.done += 1
            if outcome.error is not None:
                self.progress.failed += 1
            self._slots.release()

    def _reached(self, sent: int) -> None:
        waiting = []
        for count, future in self._milestones:
            if count > sent:
                waiting.append((count, future))
            elif not future.done():
                future.set_result(None)
        self._milestones = waiting

    async def _stream(self, body: dict[str, object], sent_at: float) -> Outcome:
        async with self._session.post(self._url, data=orjson.dumps(body)) as response:
            tier = response.headers.get("x-tiergate-tier")
            if response.status != 200:
                text = await response.text()
                code = _error_code(text)
                return Outcome(sent_at, self.elapsed(), tier, response.status, None, 0, 0, code)
            ttft: float | None = None
            usage: dict[str, int] = {}
            error: str | None = "stream ended without [DONE]"
            async for line in response.content:
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    error = None
                    break
                event = orjson.loads(data)
                if not isinstance(event, dict):
                    continue
                if "error" in event:
                    detail = event["error"]
                    reason = detail.get("code") if isinstance(detail, dict) else None
                    error = str(reason or "stream_error")
                    break
                if ttft is None and _has_content(event):
                    ttft = self.elapsed() - sent_at
                if event.get("usage"):
                    usage = event["usage"]
            return Outcome(
                sent_at,
                self.elapsed(),
                tier,
                200,
                ttft,
                int(usage.get("prompt_tokens", 0)),
                int(usage.get("completion_tokens", 0)),
                error,
            )


def _has_content(event: dict[str, Any]) -> bool:
    """Whether a chunk carries generated text: the time to the first token is taken there,
    not at the first event (a chat stream may open with an empty role chunk before prefill)."""
    for choice in event.get("choices") or ():
        delta = choice.get("delta")
        if (delta and delta.get("content")) or choice.get("text"):
            return True
    return False


def _error_code(text: str) -> str:
    try:
        error = orjson.loads(text).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return "http_error"
    return str(error.get("code") or error.get("type") or "http_error")
