"""Threshold expressions such as ``"> 30000"`` used by the seed's fallback conditions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Operator = Literal[">", ">="]
_EXPRESSION = re.compile(r"\s*(>=|>)\s*([0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)\s*")


@dataclass(frozen=True, slots=True)
class Threshold:
    """``value > limit`` (or ``>=``): a condition that fires when an observation exceeds a limit."""

    operator: Operator
    limit: float

    def exceeded_by(self, value: float) -> bool:
        """True when ``value`` meets the condition."""
        return value > self.limit if self.operator == ">" else value >= self.limit

    def __str__(self) -> str:
        limit = int(self.limit) if self.limit.is_integer() else self.limit
        return f"{self.operator} {limit}"


def parse_threshold(expression: object) -> Threshold:
    """Parse ``"> 30000"`` or ``">= 0.1"``; a bare number means ``>``.

    Raises ``ValueError`` with the accepted forms when the expression is not understood.
    """
    if isinstance(expression, bool):
        raise ValueError(_expected(expression))
    if isinstance(expression, int | float):
        return Threshold(">", float(expression))
    if isinstance(expression, str):
        match = _EXPRESSION.fullmatch(expression)
        if match:
            operator: Operator = ">=" if match.group(1) == ">=" else ">"
            return Threshold(operator, float(match.group(2)))
    raise ValueError(_expected(expression))


def _expected(expression: object) -> str:
    return (
        f'expected a comparator expression such as "> 30000" (operator > or >=, then a '
        f"non-negative number), got {expression!r}"
    )
