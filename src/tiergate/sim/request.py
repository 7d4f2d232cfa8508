"""One simulated client request, from its arrival at the gateway to its last token.

A slots class rather than a dataclass: the simulator makes one per trace request and touches
its fields on the hot path. Replicas of either fidelity set ``first_token_at``,
``finished_at`` and ``itl_s``; ``replica_state`` is theirs for bookkeeping.
"""

from __future__ import annotations

from typing import Any


class SimRequest:
    """A request: its trace figures, where the cascade sent it, and what the client saw."""

    __slots__ = (
        "arrival",
        "attempt_started",
        "attempts",
        "failures",
        "fallbacks",
        "finished_at",
        "first_token_at",
        "itl_s",
        "output_tokens",
        "prompt_tokens",
        "replica",
        "replica_state",
        "status",
        "tier",
        "timer",
        "walk",
    )

    def __init__(self, arrival: float, prompt_tokens: int, output_tokens: int) -> None:
        self.arrival = arrival
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self.itl_s: float | None = None  # mean inter-token latency of its output
        self.tier: str | None = None  # the tier attempted now, then the one that served
        self.status = 0  # the client's status once decided (200 once the stream started)
        self.attempts = 0
        self.fallbacks: list[tuple[str, str]] | None = None  # (tier, reason) left behind
        self.failures: list[Any] | None = None  # the cascade's Attempt of each failed try
        self.attempt_started = 0.0
        self.replica: Any = None  # the engine serving the current attempt (a SimEngine)
        self.replica_state: object | None = None
        self.timer: object | None = None  # the current attempt's first-byte deadline
        self.walk: object | None = None  # the cascade walk of this request

    @property
    def ttft_s(self) -> float | None:
        """Time to first token as the client saw it (every attempt included)."""
        return None if self.first_token_at is None else self.first_token_at - self.arrival

    @property
    def e2e_s(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.arrival
