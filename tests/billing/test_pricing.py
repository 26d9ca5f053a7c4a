"""Cost properties: never negative, monotonic in every count, the sum of its parts."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.pricing import Terms, Tokens, cost_credits, cost_usd
from oneflow.lib import money

rates = st.decimals(min_value=0, max_value=200, places=6, allow_nan=False, allow_infinity=False)
terms = st.builds(Terms, rates, rates, rates, st.decimals(min_value=0, max_value=1, places=6))
counts = st.integers(min_value=0, max_value=5_000_000)


@st.composite
def token_counts(draw: st.DrawFn) -> Tokens:
    prompt = draw(counts)
    return Tokens(prompt=prompt, cached=draw(st.integers(0, prompt)), completion=draw(counts))


def test_a_known_price() -> None:
    gpt_4o_mini = Terms(Decimal("0.15"), Decimal("0.075"), Decimal("0.60"))
    tokens = Tokens(prompt=1_000_000, cached=200_000, completion=500_000)
    # 800k at 0.15 + 200k at 0.075 + 500k at 0.60, per 1M
    assert cost_usd(gpt_4o_mini, tokens) == Decimal("0.12") + Decimal("0.015") + Decimal("0.30")
    assert cost_credits(gpt_4o_mini, tokens, markup=Decimal("1.2"), credits_per_usd=Decimal(100)) == Decimal("52.2")


def test_impossible_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="impossible"):
        Tokens(prompt=5, cached=6, completion=0)


@given(terms, token_counts())
def test_cost_is_never_negative(price: Terms, tokens: Tokens) -> None:
    assert cost_usd(price, tokens) >= 0


@given(terms, token_counts(), st.sampled_from(["prompt", "completion"]), st.integers(1, 10_000))
def test_cost_grows_with_each_token_count(price: Terms, tokens: Tokens, field: str, more: int) -> None:
    bigger = Tokens(
        prompt=tokens.prompt + (more if field == "prompt" else 0),
        cached=tokens.cached,
        completion=tokens.completion + (more if field == "completion" else 0),
    )
    assert cost_usd(price, bigger) >= cost_usd(price, tokens)


@given(terms, token_counts())
def test_cost_is_the_sum_of_its_parts(price: Terms, tokens: Tokens) -> None:
    nothing = Terms(money.ZERO, money.ZERO, money.ZERO)
    parts = [
        cost_usd(Terms(price.input_per_1m, money.ZERO, money.ZERO), tokens),
        cost_usd(Terms(money.ZERO, price.cached_input_per_1m, money.ZERO), tokens),
        cost_usd(Terms(money.ZERO, money.ZERO, price.output_per_1m), tokens),
        cost_usd(Terms(money.ZERO, money.ZERO, money.ZERO, price.request_fee), tokens),
    ]
    assert cost_usd(price, tokens) == sum(parts, money.ZERO)
    assert cost_usd(nothing, tokens) == 0


@given(terms, token_counts(), st.decimals(min_value=0, max_value=5, places=4))
def test_credits_round_once_to_the_internal_precision(price: Terms, tokens: Tokens, markup: Decimal) -> None:
    charged = cost_credits(price, tokens, markup=markup, credits_per_usd=Decimal(100))
    exact = cost_usd(price, tokens) * markup * 100
    assert abs(charged - exact) <= Decimal("0.5e-10")
