"""What a request costs: token counts times a price version times the organization's markup.

Pure arithmetic on Decimals, so the property tests can reach every corner.
A cost is exact until the final conversion to credits, which rounds once.

Every token class providers bill has its rate: uncached input, cache reads (OpenAI's
cached input is the same class), Anthropic's cache writes of 5 minutes and of 1 hour,
and output. Reasoning tokens are output tokens, billed at the output rate and counted
apart only to be shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from oneflow.lib import money

# Anthropic's published rule: a cache write costs 1.25x the input price for the
# 5-minute lifetime and 2x for the 1-hour one. A price version that names no write
# rates gets these (billing.models.Price), and so does a deployment's cost.
CACHE_WRITE_5M_MULTIPLE = Decimal("1.25")
CACHE_WRITE_1H_MULTIPLE = Decimal(2)


@dataclass(frozen=True, slots=True)
class Tokens:
    """A request's tokens by class, as the gateway's usage reports them.

    ``prompt`` is every input token, cache reads and writes included (OpenAI's
    ``prompt_tokens``); ``completion`` every output token, reasoning included.
    """

    prompt: int
    cached: int  # cache reads (OpenAI's cached input): part of prompt
    completion: int
    cache_write_5m: int = 0  # part of prompt
    cache_write_1h: int = 0  # part of prompt
    reasoning: int = 0  # part of completion

    def __post_init__(self) -> None:
        counts = (self.prompt, self.cached, self.completion, self.cache_write_5m, self.cache_write_1h, self.reasoning)
        if min(counts) < 0 or self.uncached < 0 or self.reasoning > self.completion:
            raise ValueError(f"impossible token counts: {self}")

    @property
    def uncached(self) -> int:
        """Input tokens billed at the plain input rate: neither read from nor written to a cache."""
        return self.prompt - self.cached - self.cache_write_5m - self.cache_write_1h

    @classmethod
    def reported(
        cls,
        *,
        prompt: int,
        cached: int,
        completion: int,
        cache_write_5m: int = 0,
        cache_write_1h: int = 0,
        reasoning: int = 0,
    ) -> Tokens:
        """Tokens from counts an upstream reported, made consistent rather than refused.

        A negative count is none. The prompt bounds its parts: cache reads, then
        5-minute writes, then 1-hour writes are cut to what is left of it, so a
        malformed report bills the cheaper classes first and never more tokens than
        the prompt. Reasoning is cut to the completion. Every price read goes
        through here (billing.selectors.PriceBook.cost), so the gateway's cost and
        the drain's are the same figure.
        """
        prompt, completion = max(prompt, 0), max(completion, 0)
        cached = min(max(cached, 0), prompt)
        cache_write_5m = min(max(cache_write_5m, 0), prompt - cached)
        cache_write_1h = min(max(cache_write_1h, 0), prompt - cached - cache_write_5m)
        return cls(
            prompt=prompt,
            cached=cached,
            completion=completion,
            cache_write_5m=cache_write_5m,
            cache_write_1h=cache_write_1h,
            reasoning=min(max(reasoning, 0), completion),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Terms:
    """A price version's rates, USD per 1M tokens, plus a per-request fee in USD.

    Keyword-only, and the write rates have no default: a caller that forgot one
    would bill cache writes at nothing.
    """

    input_per_1m: Decimal
    cached_input_per_1m: Decimal  # cache reads
    output_per_1m: Decimal  # reasoning included
    cache_write_5m_per_1m: Decimal
    cache_write_1h_per_1m: Decimal
    request_fee: Decimal = money.ZERO


def cost_parts(terms: Terms, tokens: Tokens) -> dict[str, Decimal]:
    """The exact USD cost of each token class, and the request fee, unrounded."""
    per_token = money.TOKENS_PER_PRICE_UNIT
    divide = money.CONTEXT.divide
    return {
        "input": divide(Decimal(tokens.uncached) * terms.input_per_1m, per_token),
        "cache_read": divide(Decimal(tokens.cached) * terms.cached_input_per_1m, per_token),
        "cache_write_5m": divide(Decimal(tokens.cache_write_5m) * terms.cache_write_5m_per_1m, per_token),
        "cache_write_1h": divide(Decimal(tokens.cache_write_1h) * terms.cache_write_1h_per_1m, per_token),
        "output": divide(Decimal(tokens.completion) * terms.output_per_1m, per_token),
        "request_fee": terms.request_fee,
    }


def cost_usd(terms: Terms, tokens: Tokens) -> Decimal:
    """Exact USD cost, unrounded: the sum of its parts."""
    return sum(cost_parts(terms, tokens).values(), money.ZERO)


def cost_credits(terms: Terms, tokens: Tokens, *, markup: Decimal, credits_per_usd: Decimal) -> Decimal:
    """Credits to charge, at the internal precision (the one rounding of a cost)."""
    return money.internal(cost_usd(terms, tokens) * markup * credits_per_usd)


def dearest_split(terms: Terms, *, prompt: int, completion: int) -> Tokens:
    """The costliest way ``prompt`` input tokens can be billed: all in the dearest class.

    Cost is linear in the class counts, whose sum is the prompt, so no split of
    the same prompt costs more. Holds price a request's worst case with it: a
    prompt written to a 1-hour cache costs twice its uncached price.
    """
    classes: tuple[tuple[Decimal, dict[str, int]], ...] = (
        (terms.input_per_1m, {}),
        (terms.cached_input_per_1m, {"cached": prompt}),
        (terms.cache_write_5m_per_1m, {"cache_write_5m": prompt}),
        (terms.cache_write_1h_per_1m, {"cache_write_1h": prompt}),
    )
    _, split = max(classes, key=lambda rate_and_split: rate_and_split[0])
    return Tokens(**{"prompt": prompt, "cached": 0, "completion": completion, **split})
