"""Faults an emulated replica injects, set at start (``--faults``) or at run time (``/admin``).

Times here are wall-clock, as a client sees them (unlike the engine's model time):

- ``error_rate`` (0-1) of requests answered at once with ``error_status`` and an OpenAI error
  body (drawn from the replica's seeded random generator);
- ``added_latency_ms`` slept before each request is handled;
- ``stall_after_tokens``: a stream stops after this many content tokens and then sends
  nothing until the client goes away; a non-streaming request longer than that never answers;
- ``reset_after_tokens``: the connection is dropped (TCP reset) after this many content tokens
  (0: right after the stream's headers and role chunk); a non-streaming request longer than
  that is dropped without an answer;
- ``health_status``: the status ``GET /health`` answers once the replica is ready.

The engine behind a stalled or reset request runs it to the end, as a real engine would when
the failure is in between.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Faults(BaseModel):
    """The faults of one replica; the defaults are a healthy replica."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    error_rate: float = Field(0.0, ge=0.0, le=1.0)
    error_status: int = Field(503, ge=400, le=599)
    added_latency_ms: float = Field(0.0, ge=0.0)
    stall_after_tokens: int | None = Field(None, ge=0)
    reset_after_tokens: int | None = Field(None, ge=0)
    health_status: int = Field(200, ge=100, le=599)

    def updated(self, changes: dict[str, Any]) -> Faults:
        """These faults with ``changes`` applied (validated; unknown names are errors)."""
        return Faults.model_validate({**self.model_dump(), **changes})


def parse_faults(text: str) -> Faults:
    """Faults from ``key=value`` pairs separated by commas, e.g.
    ``error_rate=0.2,error_status=503,added_latency_ms=50``; ``none`` clears a count.

    Raises ``ValueError`` (pydantic's ``ValidationError`` is one) on a bad pair or value.
    """
    changes: dict[str, Any] = {}
    for pair in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"fault '{pair}' is not key=value")
        changes[key.strip()] = None if value.strip().lower() == "none" else value.strip()
    return Faults().updated(changes)
