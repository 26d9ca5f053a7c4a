"""Every token class providers bill, through a live OneFlow and fake upstreams over HTTP:
OpenAI's cached input and reasoning, Anthropic's cache reads and its 5-minute and 1-hour
cache writes. Each is charged at its own rate, exactly, and the charge the ledger takes
is the cost the client was told (``x-oneflow-cost``, or ``usage.cost`` ending a stream).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import anthropic
import openai
import pytest
from django.conf import settings

from billing.models import LedgerEntry, UsageEvent
from oneflow.lib import money
from providers.models import Provider
from tests.fakes import DEFAULT_REPLY, Behave, FakeUpstream, anthropic_api, openai_api
from tests.gateway import test_adapters as adapters
from tests.gateway.conftest import Gateway

# Rates (USD per 1M tokens) none of which is another's multiple, so a class billed at
# the wrong rate (or a write at the default rule) shows in the total.
INPUT, CACHE_READ, OUTPUT = Decimal("2.1"), Decimal("0.37"), Decimal("8.3")
WRITE_5M, WRITE_1H = Decimal("2.9"), Decimal("4.7")
# Long enough that the prompt holds every cache read and write the fake is told to report.
PROMPT = " ".join(["cacheable"] * 1500)
MESSAGES: Any = [{"role": "user", "content": PROMPT}]


@dataclass(frozen=True)
class Counts:
    """What the fake upstream reports, as the internal usage counts it."""

    prompt: int  # every input token
    cached: int = 0
    write_5m: int = 0
    write_1h: int = 0
    completion: int = 0  # every output token
    reasoning: int = 0

    def cost(self) -> Decimal:
        """Credits, by hand: each class times its own rate, rounded once."""
        uncached = self.prompt - self.cached - self.write_5m - self.write_1h
        usd = (
            uncached * INPUT
            + self.cached * CACHE_READ
            + self.write_5m * WRITE_5M
            + self.write_1h * WRITE_1H
            + self.completion * OUTPUT
        ) / Decimal(1_000_000)
        return money.internal(usd * settings.CREDITS_PER_USD)


RATES = {
    "input_per_1m": INPUT,
    "cached_input_per_1m": CACHE_READ,
    "output_per_1m": OUTPUT,
    "cache_write_5m_per_1m": WRITE_5M,
    "cache_write_1h_per_1m": WRITE_1H,
}


def route(upstream: FakeUpstream, kind: str) -> None:
    """The public model "smart", priced at the rates above, served by the fake upstream."""
    adapters.route(upstream, kind, rates=RATES)


def sdk(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key=gateway.key.raw, max_retries=0)


def claude(gateway: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.server.url, api_key=gateway.key.raw, max_retries=0)


def billed(gateway: Gateway) -> UsageEvent:
    """The one request's usage event, once drained, after checking the ledger took its cost."""
    [event] = gateway.events()
    [charge] = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CHARGE, request_id=event.request_id)
    assert -charge.amount == event.charged == event.cost, "the ledger takes the whole cost: the hold covered it"
    return event


def assert_counts(event: UsageEvent, counts: Counts) -> None:
    assert (event.prompt_tokens, event.cached_tokens) == (counts.prompt, counts.cached)
    assert (event.cache_write_5m_tokens, event.cache_write_1h_tokens) == (counts.write_5m, counts.write_1h)
    assert (event.completion_tokens, event.reasoning_tokens) == (counts.completion, counts.reasoning)


# --- OpenAI: cached input and reasoning ---------------------------------------------------------

OPENAI_BEHAVE = Behave(cached_tokens=1024, reasoning_tokens=300)


def openai_counts(upstream: FakeUpstream) -> Counts:
    prompt = openai_api.expected_prompt_tokens(upstream.requests[0].json)
    completion = openai_api.expected_completion_tokens(DEFAULT_REPLY) + 300
    return Counts(prompt=prompt, cached=1024, completion=completion, reasoning=300)


def test_openai_cached_input_and_reasoning_are_billed_at_their_rates(gateway: Gateway, upstream: FakeUpstream) -> None:
    route(upstream, Provider.Kind.OPENAI)
    upstream.script(OPENAI_BEHAVE)

    raw = sdk(gateway).chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)

    counts = openai_counts(upstream)
    usage: Any = raw.parse().usage
    assert (usage.prompt_tokens_details.cached_tokens, usage.completion_tokens_details.reasoning_tokens) == (1024, 300)
    event = billed(gateway)
    assert_counts(event, counts)
    assert Decimal(raw.headers["x-oneflow-cost"]) == event.cost == counts.cost() > 0


def test_an_openai_stream_ends_with_the_cost_it_is_charged(gateway: Gateway, upstream: FakeUpstream) -> None:
    route(upstream, Provider.Kind.OPENAI)
    upstream.script(OPENAI_BEHAVE)

    chunks = list(
        sdk(gateway).chat.completions.create(
            model="smart", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )

    counts = openai_counts(upstream)
    usage: Any = chunks[-1].usage
    event = billed(gateway)
    assert_counts(event, counts)
    assert Decimal(usage.model_extra["cost"]) == event.cost == counts.cost() > 0


def test_reasoning_is_billed_as_output(gateway: Gateway, upstream: FakeUpstream) -> None:
    """The same answer with and without reasoning: the difference is its tokens at the output rate."""
    route(upstream, Provider.Kind.OPENAI)
    upstream.script(Behave(), Behave(reasoning_tokens=1000))
    client = sdk(gateway)

    plain, thought = (
        Decimal(
            client.chat.completions.with_raw_response.create(model="smart", messages=MESSAGES).headers["x-oneflow-cost"]
        )
        for _ in range(2)
    )

    assert thought - plain == money.internal(1000 * OUTPUT / Decimal(1_000_000) * settings.CREDITS_PER_USD)
    assert sorted(event.reasoning_tokens for event in gateway.events()) == [0, 1000]


# --- Anthropic: cache reads and writes of both lifetimes ----------------------------------------

ANTHROPIC_BEHAVE = Behave(cached_tokens=700, cache_write_5m_tokens=400, cache_write_1h_tokens=250)


def anthropic_counts(upstream: FakeUpstream) -> Counts:
    prompt = anthropic_api.expected_prompt_tokens(upstream.requests[0].json)
    assert prompt > 700 + 400 + 250, "the prompt must hold every read and write"
    completion = anthropic_api.expected_completion_tokens(DEFAULT_REPLY)
    return Counts(prompt=prompt, cached=700, write_5m=400, write_1h=250, completion=completion)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_anthropic_cache_reads_and_writes_through_chat_completions(
    gateway: Gateway, upstream: FakeUpstream, stream: bool
) -> None:
    route(upstream, Provider.Kind.ANTHROPIC)
    upstream.script(ANTHROPIC_BEHAVE)
    client = sdk(gateway)

    if stream:
        chunks = list(
            client.chat.completions.create(
                model="smart", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
        )
        usage: Any = chunks[-1].usage
        told = Decimal(usage.model_extra["cost"])
    else:
        raw = client.chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)
        usage = raw.parse().usage
        told = Decimal(raw.headers["x-oneflow-cost"])

    counts = anthropic_counts(upstream)
    assert usage.prompt_tokens == counts.prompt, "prompt_tokens counts cache reads and writes too"
    details = usage.prompt_tokens_details
    assert (details.cached_tokens, details.model_extra["cache_write_5m_tokens"]) == (700, 400)
    assert details.model_extra["cache_write_1h_tokens"] == 250
    event = billed(gateway)
    assert_counts(event, counts)
    assert told == event.cost == counts.cost() > 0


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_anthropic_cache_reads_and_writes_through_messages(
    gateway: Gateway, upstream: FakeUpstream, stream: bool
) -> None:
    route(upstream, Provider.Kind.ANTHROPIC)
    upstream.script(ANTHROPIC_BEHAVE)
    client = claude(gateway)

    if stream:
        with client.messages.stream(model="smart", max_tokens=64, messages=MESSAGES) as events:
            deltas = [event for event in events if event.type == "message_delta"]
            usage: Any = events.get_final_message().usage
        told = Decimal(deltas[-1].usage.model_extra["cost"])  # type: ignore[index]
    else:
        raw = client.messages.with_raw_response.create(model="smart", max_tokens=64, messages=MESSAGES)
        usage = raw.parse().usage
        told = Decimal(raw.headers["x-oneflow-cost"])

    counts = anthropic_counts(upstream)
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (700, 650)
    assert usage.input_tokens == counts.prompt - 700 - 650, "Anthropic's input_tokens leaves the cache out"
    assert usage.cache_creation.ephemeral_5m_input_tokens == 400
    assert usage.cache_creation.ephemeral_1h_input_tokens == 250
    event = billed(gateway)
    assert_counts(event, counts)
    assert told == event.cost == counts.cost() > 0


def test_an_anthropic_client_of_an_openai_model_sees_its_cache_reads(gateway: Gateway, upstream: FakeUpstream) -> None:
    """/v1/messages translated to an OpenAI deployment: cached input comes back as cache reads."""
    route(upstream, Provider.Kind.OPENAI)
    upstream.script(Behave(cached_tokens=1024))

    raw = claude(gateway).messages.with_raw_response.create(model="smart", max_tokens=64, messages=MESSAGES)

    usage = raw.parse().usage
    counts = Counts(
        prompt=openai_api.expected_prompt_tokens(upstream.requests[0].json),
        cached=1024,
        completion=openai_api.expected_completion_tokens(DEFAULT_REPLY),
    )
    assert (usage.input_tokens, usage.cache_read_input_tokens) == (counts.prompt - 1024, 1024)
    assert usage.cache_creation_input_tokens == 0
    event = billed(gateway)
    assert_counts(event, counts)
    assert Decimal(raw.headers["x-oneflow-cost"]) == event.cost == counts.cost() > 0
