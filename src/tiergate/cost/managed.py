"""What a managed API tier costs: its tokens at its per-token prices, dated and sourced.

The arithmetic is the ledger's (:meth:`tiergate.ledger.pricing.Price.cost`), so a simulated
Bedrock request costs what the gateway would have recorded for it. Prices change and sources
disagree (Qwen3-32B is quoted at $0.15/$0.60 per million on Bedrock and $0.50/$1.50
elsewhere), so each set of prices carries the date it was read and where from, for display.
"""

from __future__ import annotations

from dataclasses import dataclass

from tiergate.ledger.pricing import Price
from tiergate.providers.base import Usage

PER_MILLION = 1e-6


@dataclass(frozen=True, slots=True)
class TokenPrices:
    """Per-token prices of one managed tier (``price`` in USD per token), with the date they
    were quoted (``YYYY-MM-DD`` or ``YYYY-MM``) and their ``source``."""

    price: Price
    price_date: str = ""
    source: str = ""

    @classmethod
    def per_million(
        cls,
        input_usd: float,
        output_usd: float,
        cached_input_usd: float | None = None,
        cache_write_usd: float | None = None,
        *,
        price_date: str = "",
        source: str = "",
    ) -> TokenPrices:
        """Prices given per million tokens, as providers list them; cache reads and writes
        default to the input price (what a provider without a prompt cache charges)."""
        cached = input_usd if cached_input_usd is None else cached_input_usd
        written = input_usd if cache_write_usd is None else cache_write_usd
        scaled = (input_usd, output_usd, cached, written)
        if min(scaled) < 0:
            raise ValueError(f"token prices cannot be negative, got {scaled} per million")
        price = Price(*(usd * PER_MILLION for usd in scaled))
        return cls(price, price_date, source)

    def cost(
        self, input_tokens: int, output_tokens: int, cached_tokens: int = 0, cache_write: int = 0
    ) -> float:
        """USD for these tokens; ``input_tokens`` counts every input token, the cached ones
        (``cached_tokens``, read from the prompt cache) and written ones included."""
        return self.price.cost(Usage(input_tokens, output_tokens, cached_tokens, cache_write))

    @property
    def label(self) -> str:
        """``$3/$15 per M (AWS Bedrock pricing, 2026-05)``: what a run used, for display."""
        per_m = f"${self.price.input / PER_MILLION:g}/${self.price.output / PER_MILLION:g} per M"
        quoted = ", ".join(part for part in (self.source, self.price_date) if part)
        return f"{per_m} ({quoted})" if quoted else per_m
