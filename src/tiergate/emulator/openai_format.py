"""The OpenAI API as vLLM speaks it: request bodies, token counts, answers and SSE chunks.

Token counts are estimates, since the emulator has no tokenizer: a text is one token per four
characters (rounded up, at least one), a chat adds four tokens per message for the template.
Replaying a trace, the exact counts can be given instead (vLLM ignores these fields):

- ``prompt_tokens`` in the body (or the ``x-emulator-prompt-tokens`` header, which wins): the
  prompt's token count; a ``/v1/completions`` prompt given as token ids is counted exactly;
- ``output_tokens`` in the body (or the ``x-emulator-output-tokens`` header): the tokens to
  generate, at most ``max_tokens``; fewer end with finish reason ``stop``.

Body fields travel through gateways that do not forward unknown headers (tiergate's does not).

The generated text is synthetic: a fixed cycle of words, one word per token.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

WORDS = tuple(
    f"{word} "
    for word in (
        "the", "engine", "emulates", "a", "large", "language", "model", "serving", "tokens",
        "from", "continuous", "batches", "on", "virtual", "GPUs", "quickly",
    )
)  # fmt: skip
CHARS_PER_TOKEN = 4
TEMPLATE_TOKENS_PER_MESSAGE = 4


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class _Body(BaseModel):
    """What the emulator reads of a request; other fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str
    max_tokens: int | None = Field(None, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool | None = None
    # Emulator hints for trace replay; see the module docstring.
    prompt_tokens: int | None = Field(None, ge=1)
    output_tokens: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1, le=1)  # one choice per request

    @property
    def include_usage(self) -> bool:
        return self.stream and self.stream_options is not None and self.stream_options.include_usage


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatBody(_Body):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def estimated_prompt_tokens(self) -> int:
        total = 0
        for message in self.messages:
            content = message.content
            if isinstance(content, list):
                chars = sum(len(str(part.get("text", ""))) for part in content)
            else:
                chars = len(content or "")
            total += math.ceil(chars / CHARS_PER_TOKEN) + TEMPLATE_TOKENS_PER_MESSAGE
        return max(1, total)


class CompletionBody(_Body):
    prompt: str | list[int] | list[str] = Field(min_length=1)

    def requested_max_tokens(self) -> int | None:
        return self.max_tokens

    def estimated_prompt_tokens(self) -> int:
        prompt = self.prompt
        if isinstance(prompt, str):
            return max(1, math.ceil(len(prompt) / CHARS_PER_TOKEN))
        if all(isinstance(item, int) for item in prompt):
            return len(prompt)  # token ids: an exact count
        if len(prompt) != 1:
            raise ValueError("the emulator takes one prompt per request")
        return max(1, math.ceil(len(str(prompt[0])) / CHARS_PER_TOKEN))


def synthetic_text(tokens: int) -> str:
    """``tokens`` words of the fixed cycle."""
    whole, rest = divmod(tokens, len(WORDS))
    return "".join(WORDS) * whole + "".join(WORDS[:rest])


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
    }


class Answer:
    """The answer to one request, in the chat or the text-completion shape.

    Streaming chunks are built once per word from a prefix and a suffix, so that a token costs
    one slice of pre-built bytes, not a JSON encoding.
    """

    def __init__(self, request_id: str, model: str, created: int, *, chat: bool) -> None:
        self.request_id = request_id
        self.model = model
        self.created = created
        self.chat = chat
        head = {
            "id": request_id,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": created,
            "model": model,
        }
        # {"id":...,"model":"M","choices":[  -- the head of every chunk, without its closing brace
        self._head = b"data: " + orjson.dumps(head)[:-1] + b',"choices":['
        if chat:
            self._words = [
                self._head
                + b'{"index":0,"delta":{"content":'
                + orjson.dumps(word)
                + b'},"logprobs":null,"finish_reason":null}]}\n\n'
                for word in WORDS
            ]
        else:
            self._words = [
                self._head
                + b'{"index":0,"text":'
                + orjson.dumps(word)
                + b',"logprobs":null,"finish_reason":null}]}\n\n'
                for word in WORDS
            ]

    def role_chunk(self) -> bytes:
        """The first event of a chat stream; a text completion has none."""
        if not self.chat:
            return b""
        delta = {"role": "assistant", "content": ""}
        return self._chunk({"index": 0, "delta": delta, "logprobs": None, "finish_reason": None})

    def token_chunks(self, start: int, end: int) -> bytes:
        """The events of tokens ``start`` to ``end - 1``."""
        words = self._words
        count = len(words)
        return b"".join(words[i % count] for i in range(start, end))

    def finish_chunk(self, reason: str) -> bytes:
        choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": reason}
        if self.chat:
            choice["delta"] = {}
        else:
            choice["text"] = ""
        return self._chunk(choice)

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        return (
            self._head
            + b"],"
            + orjson.dumps({"usage": usage(prompt_tokens, completion_tokens)})[1:]
            + b"\n\n"
        )

    def body(self, completion_tokens: int, reason: str, prompt_tokens: int) -> bytes:
        """The whole non-streaming answer."""
        text = synthetic_text(completion_tokens)
        choice: dict[str, Any] = {"index": 0}
        if self.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        choice.update(logprobs=None, finish_reason=reason, stop_reason=None)
        return orjson.dumps(
            {
                "id": self.request_id,
                "object": "chat.completion" if self.chat else "text_completion",
                "created": self.created,
                "model": self.model,
                "choices": [choice],
                "usage": usage(prompt_tokens, completion_tokens),
            }
        )

    def _chunk(self, choice: dict[str, Any]) -> bytes:
        return self._head + orjson.dumps(choice) + b"]}\n\n"


DONE = b"data: [DONE]\n\n"
