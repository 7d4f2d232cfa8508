"""Prompts of a given length in tokens, for replaying traces that record only lengths.

Lengths follow the emulator's estimate (one token per four characters, plus four tokens of
chat template per message), so the engine sees the trace's prompt size. A request with prefix
block ids (Mooncake ``hash_ids``) is built from one fixed text per block, so requests that
share blocks share a prompt prefix, as in the trace; others start at a seeded random place in a
long text, so that no two prompts are the same.
"""

from __future__ import annotations

import random

from tiergate.sim.workloads import TraceRequest

CHARS_PER_TOKEN = 4
CHAT_TEMPLATE_TOKENS = 4
BLOCK_TOKENS = 512  # Mooncake's prefix block size
_WORDS = (
    "def", "return", "self", "value", "for", "item", "in", "range", "if", "else", "import",
    "class", "with", "open", "print", "list", "dict", "yield", "async", "await", "lambda",
)  # fmt: skip


class PromptMaker:
    """Makes each request's prompt text; ``max_tokens`` caps what one prompt may hold."""

    def __init__(self, seed: int, max_tokens: int) -> None:
        self._random = random.Random(seed)
        self._max_tokens = max_tokens
        words = [self._random.choice(_WORDS) for _ in range(max_tokens * CHARS_PER_TOKEN // 3)]
        self._text = " ".join(words)

    def tokens(self, request: TraceRequest) -> int:
        """How many prompt tokens the request will have (the trace's, capped)."""
        return max(1, min(request.prompt_tokens, self._max_tokens))

    def __call__(self, request: TraceRequest) -> str:
        chars = max(1, self.tokens(request) - CHAT_TEMPLATE_TOKENS) * CHARS_PER_TOKEN
        if request.prefix_ids:
            text = "".join(self._block(block) for block in request.prefix_ids)
            if len(text) >= chars:
                return text[:chars]
            return text + self._text[: chars - len(text)]
        start = self._random.randrange(max(1, len(self._text) - chars))
        return self._text[start : start + chars].ljust(chars, ".")

    def _block(self, block: int) -> str:
        # Derived from the id alone (not cached: a trace holds tens of thousands of blocks).
        size = BLOCK_TOKENS * CHARS_PER_TOKEN
        offset = random.Random(block).randrange(max(1, len(self._text) - size))
        return (f"[block {block}] " + self._text[offset : offset + size])[:size].ljust(size, ".")
