"""Prices of tiers and the cost of a request: the same arithmetic for budgets and reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the spec builds prices; keep this module free of the provider imports
    from tiergate.providers.base import Usage


@dataclass(frozen=True, slots=True)
class Price:
    """USD per token, by kind of token."""

    input: float
    output: float
    cached_input: float
    cache_write: float

    @classmethod
    def flat(cls, per_1k_tokens: float) -> Price:
        """The seed's ``costPer1kTokens``: one price for every token."""
        per_token = per_1k_tokens / 1000
        return cls(per_token, per_token, per_token, per_token)

    def cost(self, usage: Usage) -> float:
        """What ``usage`` costs: uncached input, cache reads, cache writes and output."""
        cached = min(usage.cache_read, usage.prompt)
        written = min(usage.cache_write, usage.prompt - cached)
        plain = usage.prompt - cached - written
        return (
            plain * self.input
            + cached * self.cached_input
            + written * self.cache_write
            + usage.completion * self.output
        )

    def ceiling(self, prompt_tokens: int, max_output_tokens: int) -> float:
        """The most a request can cost: every prompt token at its dearest input price."""
        dearest = max(self.input, self.cached_input, self.cache_write)
        return prompt_tokens * dearest + max_output_tokens * self.output


FREE = Price(0.0, 0.0, 0.0, 0.0)
