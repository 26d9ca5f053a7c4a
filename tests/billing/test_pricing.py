"""Cost properties: never negative, monotonic in every count, the sum of its parts, and
each token class (uncached input, cache reads, 5-minute and 1-hour cache writes,
output with its reasoning) billed at its own rate."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.pricing import Terms, Tokens, cost_credits, cost_parts, cost_usd, dearest_split
from oneflow.lib import money

rates = st.decimals(min_value=0, max_value=200, places=6, allow_nan=False, allow_infinity=False)
fees = st.decimals(min_value=0, max_value=1, places=6)
terms = st.builds(
    Terms,
    input_per_1m=rates,
    cached_input_per_1m=rates,
    output_per_1m=rates,
    cache_write_5m_per_1m=rates,
    cache_write_1h_per_1m=rates,
    request_fee=fees,
)
counts = st.integers(min_value=0, max_value=5_000_000)
# Each class alone, with the rate that bills it: (Tokens field, cost_parts key, Terms field).
CLASSES = [
    ("cached", "cache_read", "cached_input_per_1m"),
    ("cache_write_5m", "cache_write_5m", "cache_write_5m_per_1m"),
    ("cache_write_1h", "cache_write_1h", "cache_write_1h_per_1m"),
]
ZERO_TERMS = Terms(
    input_per_1m=money.ZERO,
    cached_input_per_1m=money.ZERO,
    output_per_1m=money.ZERO,
    cache_write_5m_per_1m=money.ZERO,
    cache_write_1h_per_1m=money.ZERO,
)


@st.composite
def token_counts(draw: st.DrawFn) -> Tokens:
    """Any consistent counts: reads and writes share the prompt, reasoning is part of the completion."""
    prompt = draw(counts)
    cached = draw(st.integers(0, prompt))
    write_5m = draw(st.integers(0, prompt - cached))
    write_1h = draw(st.integers(0, prompt - cached - write_5m))
    completion = draw(counts)
    return Tokens(
        prompt=prompt,
        cached=cached,
        completion=completion,
        cache_write_5m=write_5m,
        cache_write_1h=write_1h,
        reasoning=draw(st.integers(0, completion)),
    )


def per_1m(count: int, rate: str) -> Decimal:
    return Decimal(count) * Decimal(rate) / Decimal(1_000_000)


# --- Known prices, by hand ----------------------------------------------------------------------


def test_a_known_price() -> None:
    gpt_4o_mini = Terms(
        input_per_1m=Decimal("0.15"),
        cached_input_per_1m=Decimal("0.075"),
        output_per_1m=Decimal("0.60"),
        cache_write_5m_per_1m=Decimal("0.1875"),
        cache_write_1h_per_1m=Decimal("0.30"),
    )
    tokens = Tokens(prompt=1_000_000, cached=200_000, completion=500_000)
    # 800k at 0.15 + 200k at 0.075 + 500k at 0.60, per 1M
    assert cost_usd(gpt_4o_mini, tokens) == Decimal("0.12") + Decimal("0.015") + Decimal("0.30")
    assert cost_credits(gpt_4o_mini, tokens, markup=Decimal("1.2"), credits_per_usd=Decimal(100)) == Decimal("52.2")


def test_each_anthropic_token_class_is_billed_at_its_own_rate() -> None:
    sonnet = Terms(
        input_per_1m=Decimal(3),
        cached_input_per_1m=Decimal("0.30"),
        output_per_1m=Decimal(15),
        cache_write_5m_per_1m=Decimal("3.75"),
        cache_write_1h_per_1m=Decimal(6),
        request_fee=Decimal("0.001"),
    )
    tokens = Tokens(
        prompt=10_007, cached=4_001, cache_write_5m=2_003, cache_write_1h=1_009, completion=523, reasoning=200
    )
    assert cost_parts(sonnet, tokens) == {
        "input": per_1m(10_007 - 4_001 - 2_003 - 1_009, "3"),  # 2,994 uncached
        "cache_read": per_1m(4_001, "0.30"),
        "cache_write_5m": per_1m(2_003, "3.75"),
        "cache_write_1h": per_1m(1_009, "6"),
        "output": per_1m(523, "15"),  # reasoning included, at the output rate
        "request_fee": Decimal("0.001"),
    }
    # 0.008982 + 0.0012003 + 0.00751125 + 0.006054 + 0.007845 + 0.001
    assert cost_usd(sonnet, tokens) == Decimal("0.03259255")


def test_impossible_counts_are_refused() -> None:
    for impossible in (
        {"prompt": 5, "cached": 6, "completion": 0},
        {"prompt": 5, "cached": 2, "cache_write_5m": 2, "cache_write_1h": 2, "completion": 0},
        {"prompt": 5, "cached": 0, "cache_write_1h": 6, "completion": 0},
        {"prompt": 5, "cached": 0, "completion": 3, "reasoning": 4},
        {"prompt": 5, "cached": 0, "cache_write_5m": -1, "completion": 0},
    ):
        with pytest.raises(ValueError, match="impossible"):
            Tokens(**impossible)


def test_reported_counts_are_made_consistent_cheapest_class_first() -> None:
    """A malformed report bills no more tokens than its prompt: reads, then 5-minute
    writes, then 1-hour writes are cut to what is left of it; negatives are none."""
    assert Tokens.reported(
        prompt=100, cached=60, cache_write_5m=30, cache_write_1h=30, completion=5, reasoning=9
    ) == Tokens(prompt=100, cached=60, cache_write_5m=30, cache_write_1h=10, completion=5, reasoning=5)
    assert Tokens.reported(prompt=10, cached=50, cache_write_5m=5, completion=-3) == Tokens(
        prompt=10, cached=10, completion=0
    )
    assert Tokens.reported(prompt=-1, cached=-1, cache_write_1h=-1, completion=4, reasoning=-2) == Tokens(
        prompt=0, cached=0, completion=4
    )


@given(token_counts())
def test_consistent_counts_are_reported_as_they_are(tokens: Tokens) -> None:
    assert (
        Tokens.reported(
            prompt=tokens.prompt,
            cached=tokens.cached,
            completion=tokens.completion,
            cache_write_5m=tokens.cache_write_5m,
            cache_write_1h=tokens.cache_write_1h,
            reasoning=tokens.reasoning,
        )
        == tokens
    )


@given(st.lists(st.integers(-10, 10**7), min_size=6, max_size=6))
def test_any_report_makes_possible_counts(values: list[int]) -> None:
    prompt, cached, write_5m, write_1h, completion, reasoning = values
    tokens = Tokens.reported(
        prompt=prompt,
        cached=cached,
        completion=completion,
        cache_write_5m=write_5m,
        cache_write_1h=write_1h,
        reasoning=reasoning,
    )
    assert tokens.uncached >= 0 and tokens.reasoning <= tokens.completion
    assert tokens.prompt == max(prompt, 0) and tokens.completion == max(completion, 0)


# --- Properties ---------------------------------------------------------------------------------


@given(terms, token_counts())
def test_cost_is_never_negative(price: Terms, tokens: Tokens) -> None:
    assert cost_usd(price, tokens) >= 0


@given(terms, token_counts(), st.sampled_from(["prompt", "completion"]), st.integers(1, 10_000))
def test_cost_grows_with_each_token_count(price: Terms, tokens: Tokens, field: str, more: int) -> None:
    bigger = replace(tokens, **{field: getattr(tokens, field) + more})
    assert cost_usd(price, bigger) >= cost_usd(price, tokens)


@given(terms, token_counts())
def test_cost_is_the_sum_of_its_parts(price: Terms, tokens: Tokens) -> None:
    """Each rate alone bills its own class alone, and the whole is their exact sum."""
    parts = [
        cost_usd(replace(ZERO_TERMS, input_per_1m=price.input_per_1m), tokens),
        cost_usd(replace(ZERO_TERMS, cached_input_per_1m=price.cached_input_per_1m), tokens),
        cost_usd(replace(ZERO_TERMS, cache_write_5m_per_1m=price.cache_write_5m_per_1m), tokens),
        cost_usd(replace(ZERO_TERMS, cache_write_1h_per_1m=price.cache_write_1h_per_1m), tokens),
        cost_usd(replace(ZERO_TERMS, output_per_1m=price.output_per_1m), tokens),
        cost_usd(replace(ZERO_TERMS, request_fee=price.request_fee), tokens),
    ]
    assert cost_usd(price, tokens) == sum(parts, money.ZERO) == sum(cost_parts(price, tokens).values(), money.ZERO)
    assert cost_usd(ZERO_TERMS, tokens) == 0


@given(terms, token_counts(), st.sampled_from(CLASSES), st.integers(0, 5_000_000), st.integers(0, 5_000_000))
def test_each_class_costs_its_count_times_its_rate(
    price: Terms, tokens: Tokens, token_class: tuple[str, str, str], first: int, second: int
) -> None:
    """Linear in its count, exactly: a+b tokens of a class cost what a and b tokens cost apart."""
    field, part, rate = token_class

    def cost_of(count: int) -> Decimal:
        with_count = replace(tokens, prompt=tokens.prompt + count - getattr(tokens, field), **{field: count})
        return cost_parts(price, with_count)[part]

    assert cost_of(first + second) == cost_of(first) + cost_of(second)
    assert cost_of(first) == Decimal(first) * getattr(price, rate) / money.TOKENS_PER_PRICE_UNIT


@given(terms, token_counts(), st.sampled_from(CLASSES), st.integers(1, 10_000))
def test_moving_input_into_a_cache_class_changes_the_cost_by_the_rate_difference(
    price: Terms, tokens: Tokens, token_class: tuple[str, str, str], moved: int
) -> None:
    """The same prompt with ``moved`` uncached tokens read from, or written to, a cache instead:
    cheaper by exactly the difference of the rates (never dearer when the class's rate is not)."""
    field, _, rate = token_class
    bigger_prompt = replace(tokens, prompt=tokens.prompt + moved)
    cached = replace(bigger_prompt, **{field: getattr(tokens, field) + moved})
    difference = Decimal(moved) * (getattr(price, rate) - price.input_per_1m) / money.TOKENS_PER_PRICE_UNIT
    assert cost_usd(price, cached) == cost_usd(price, bigger_prompt) + difference
    if getattr(price, rate) <= price.input_per_1m:
        assert cost_usd(price, cached) <= cost_usd(price, bigger_prompt)


@given(terms, token_counts())
def test_reasoning_never_changes_the_cost_given_the_completion(price: Terms, tokens: Tokens) -> None:
    """Reasoning tokens are output tokens: shown apart, billed as output."""
    for reasoning in (0, tokens.completion // 2, tokens.completion):
        assert cost_usd(price, replace(tokens, reasoning=reasoning)) == cost_usd(price, tokens)


@given(terms, token_counts())
def test_the_dearest_split_costs_at_least_any_split_of_the_same_prompt(price: Terms, tokens: Tokens) -> None:
    worst = dearest_split(price, prompt=tokens.prompt, completion=tokens.completion)
    assert (worst.prompt, worst.completion) == (tokens.prompt, tokens.completion)
    assert cost_usd(price, worst) >= cost_usd(price, tokens)


@given(terms, token_counts(), st.decimals(min_value=0, max_value=5, places=4))
def test_credits_round_once_to_the_internal_precision(price: Terms, tokens: Tokens, markup: Decimal) -> None:
    charged = cost_credits(price, tokens, markup=markup, credits_per_usd=Decimal(100))
    exact = cost_usd(price, tokens) * markup * 100
    assert abs(charged - exact) <= Decimal("0.5e-10")
