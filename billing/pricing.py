"""What a request costs: token counts times a price version times the organization's markup.

Pure arithmetic on Decimals, so the property tests can reach every corner.
A cost is exact until the final conversion to credits, which rounds once.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from oneflow.lib import money


@dataclass(frozen=True, slots=True)
class Tokens:
    prompt: int  # includes cached prompt tokens, as OpenAI reports them
    cached: int
    completion: int

    def __post_init__(self) -> None:
        if min(self.prompt, self.cached, self.completion) < 0 or self.cached > self.prompt:
            raise ValueError(f"impossible token counts: {self}")


@dataclass(frozen=True, slots=True)
class Terms:
    """A price version's rates, USD per 1M tokens, plus a per-request fee in USD."""

    input_per_1m: Decimal
    cached_input_per_1m: Decimal
    output_per_1m: Decimal
    request_fee: Decimal = money.ZERO


def cost_usd(terms: Terms, tokens: Tokens) -> Decimal:
    """Exact USD cost, unrounded: the sum of its parts."""
    per_token = money.TOKENS_PER_PRICE_UNIT
    with_context = money.CONTEXT
    uncached = Decimal(tokens.prompt - tokens.cached)
    parts = (
        with_context.divide(uncached * terms.input_per_1m, per_token),
        with_context.divide(Decimal(tokens.cached) * terms.cached_input_per_1m, per_token),
        with_context.divide(Decimal(tokens.completion) * terms.output_per_1m, per_token),
        terms.request_fee,
    )
    return sum(parts, money.ZERO)


def cost_credits(terms: Terms, tokens: Tokens, *, markup: Decimal, credits_per_usd: Decimal) -> Decimal:
    """Credits to charge, at the internal precision (the one rounding of a cost)."""
    return money.internal(cost_usd(terms, tokens) * markup * credits_per_usd)
