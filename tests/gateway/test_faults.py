"""Faults of upstream providers, over real HTTP: what the client sees, how many
attempts were made, and the one usage event each request leaves.

The rules (DESIGN.md "Routing and reliability"): the caller's own mistakes are
never retried; a refused credential moves to the next deployment and never
retries the same one; transient errors (429, 5xx, timeouts, resets, malformed
bodies) are retried with backoff, honoring Retry-After, at most
``UPSTREAM_MAX_ATTEMPTS`` attempts per request across the model's deployments
in priority order. A stream fails over invisibly until its first content
token; after it, it ends with an explicit error event, never a clean finish.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from pytest_django import Settings

from billing.models import LedgerEntry, UsageEvent
from providers.models import Deployment, Provider
from tests import http
from tests.conftest import UPSTREAM_KEY
from tests.fakes import DEFAULT_REPLY, Behave, FakeUpstream, split_reply
from tests.gateway.conftest import Gateway
from tests.gateway.test_adapters import KINDS, route

MESSAGES: Any = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello to the gateway"}]
CHAT: dict[str, Any] = {"model": "smart", "messages": MESSAGES}
ANTHROPIC_MESSAGES: dict[str, Any] = {
    "model": "smart",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Say hello to the gateway"}],
}
# Short enough that a timed-out attempt costs little, long enough that loopback never trips it.
READ_TIMEOUT = 0.3
SLOW = 1.0  # seconds of upstream silence: past READ_TIMEOUT


@pytest.fixture(autouse=True)
def _quick_retries(settings: Settings) -> None:
    """The production rules with backoff in milliseconds, so the suite stays fast."""
    settings.UPSTREAM_MAX_ATTEMPTS = 3
    settings.UPSTREAM_RETRY_BASE_SECONDS = 0.01
    settings.UPSTREAM_RETRY_MAX_SECONDS = 0.05
    settings.UPSTREAM_DEADLINE_SECONDS = 30
    # Breakers have their own tests; here no failure may open one, whatever deployment ids repeat.
    settings.BREAKER_CONSECUTIVE_FAILURES = 10_000
    settings.BREAKER_MIN_SAMPLE = 10_000


@pytest.fixture
def upstreams() -> Iterator[list[FakeUpstream]]:
    """Three more fake upstreams, one per extra deployment, so hits are counted per deployment."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(FakeUpstream(api_key=UPSTREAM_KEY)) for _ in range(3)]


def deploy(
    upstream: FakeUpstream,
    *,
    provider: str = "primary",
    kind: str = Provider.Kind.OPENAI,
    priority: int = 1,
    read_timeout: float = READ_TIMEOUT,
) -> Deployment:
    """A deployment of the public model "smart" on its own provider, pointing at ``upstream``."""
    return route(
        upstream,
        kind,
        priority=priority,
        provider_name=provider,
        connect_timeout=READ_TIMEOUT,
        read_timeout=read_timeout,
    )


def sdk(gateway: Gateway) -> openai.OpenAI:
    # No SDK retries: every attempt counted here is the gateway's own.
    return openai.OpenAI(base_url=gateway.url, api_key=gateway.key.raw, max_retries=0)


def post(gateway: Gateway, body: dict[str, Any], *, path: str = "/v1/chat/completions") -> http.Reply:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {gateway.key.raw}"}
    if path == "/v1/messages":
        headers["anthropic-version"] = "2023-06-01"
    return http.call(gateway.server.url, "POST", path, body=json.dumps(body).encode(), headers=headers)


def sse_events(raw: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) of each server-sent event."""
    found = []
    for block in raw.decode().replace("\r\n", "\n").split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            found.append((name, "\n".join(data)))
    return found


def openai_chunks(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(data) for _, data in sse_events(raw) if data != "[DONE]"]


def streamed_text(raw: bytes) -> str:
    return "".join(
        (choice.get("delta") or {}).get("content") or ""
        for chunk in openai_chunks(raw)
        for choice in chunk.get("choices") or ()
    )


def the_event(gateway: Gateway) -> UsageEvent:
    [event] = gateway.events()
    return event


def charged(event: UsageEvent) -> bool:
    return LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CHARGE, request_id=event.request_id).exists()


def assert_openai_error(reply: http.Reply, status: int, attempts: int) -> None:
    assert reply.status == status
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.headers["x-oneflow-attempts"] == str(attempts)
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    assert UPSTREAM_KEY not in reply.body.decode()


# Transient failures of one attempt, and the status a request ending on them gets.
TRANSIENT = {
    "500": (Behave(status=500), 502),
    "503": (Behave(status=503), 502),
    "429": (Behave(status=429), 429),
    "reset": (Behave(reset=True), 502),
    "malformed json": (Behave(malformed=True), 502),
    "timeout": (Behave(delay=SLOW), 504),
}


# --- answers that are not streamed ----------------------------------------------------------


@pytest.mark.parametrize("failure", list(TRANSIENT))
def test_it_retries_a_transient_failure_and_answers_from_the_next_attempt(
    gateway: Gateway, upstream: FakeUpstream, failure: str
) -> None:
    deploy(upstream)
    upstream.script(TRANSIENT[failure][0])

    raw = sdk(gateway).chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)

    assert raw.parse().choices[0].message.content == DEFAULT_REPLY
    assert raw.headers["x-oneflow-attempts"] == "2"
    assert raw.headers["x-oneflow-provider"] == "primary"
    assert len(upstream.requests) == 2
    event = the_event(gateway)
    assert (event.status_code, event.attempts, event.usage_source, event.provider) == (200, 2, "reported", "primary")
    assert charged(event)


@pytest.mark.parametrize("failure", list(TRANSIENT))
def test_it_gives_up_after_three_attempts_with_the_last_error(
    gateway: Gateway, upstream: FakeUpstream, failure: str
) -> None:
    deploy(upstream)
    behave, status = TRANSIENT[failure]
    # A fourth attempt would succeed: only the attempt limit stops it.
    upstream.script(behave, behave, behave)

    reply = post(gateway, CHAT)

    assert_openai_error(reply, status, attempts=3)
    assert len(upstream.requests) == 3
    event = the_event(gateway)
    assert (event.status_code, event.attempts, event.usage_source, event.charged) == (status, 3, "void", 0)
    assert not charged(event)


def test_the_sdk_sees_exhausted_retries_as_the_right_exception(gateway: Gateway, upstream: FakeUpstream) -> None:
    deploy(upstream)
    upstream.script(*[Behave(status=500)] * 3)

    with pytest.raises(openai.InternalServerError) as caught:
        sdk(gateway).chat.completions.create(model="smart", messages=MESSAGES)

    assert caught.value.status_code == 502
    assert caught.value.response.headers["x-oneflow-attempts"] == "3"
    assert len(upstream.requests) == 3


# An upstream 404 names the deployment's model, not the caller's input: it fails over (test_adapters).
@pytest.mark.parametrize("status", [400, 422])
def test_the_callers_own_mistakes_are_never_retried(
    gateway: Gateway, upstream: FakeUpstream, upstreams: list[FakeUpstream], status: int
) -> None:
    deploy(upstream)
    deploy(upstreams[0], provider="secondary", priority=2)
    upstream.script(Behave(status=status, message="This model's maximum context length is 10 tokens."))

    with pytest.raises(openai.BadRequestError) as caught:
        sdk(gateway).chat.completions.create(model="smart", messages=MESSAGES)

    assert caught.value.status_code == 400
    assert "maximum context length" in caught.value.message
    assert caught.value.response.headers["x-oneflow-attempts"] == "1"
    assert (len(upstream.requests), len(upstreams[0].requests)) == (1, 0)
    event = the_event(gateway)
    assert (event.status_code, event.attempts) == (400, 1)
    assert not charged(event)


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_credential_moves_to_the_next_deployment_and_is_never_retried(
    gateway: Gateway, upstream: FakeUpstream, upstreams: list[FakeUpstream], status: int
) -> None:
    deploy(upstream)
    deploy(upstreams[0], provider="secondary", priority=2)
    upstream.script(Behave(status=status))
    upstreams[0].script(Behave(status=500))

    raw = sdk(gateway).chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)

    # The third attempt goes to the deployment that may recover, not to the refused one.
    assert raw.parse().choices[0].message.content == DEFAULT_REPLY
    assert (raw.headers["x-oneflow-attempts"], raw.headers["x-oneflow-provider"]) == ("3", "secondary")
    assert (len(upstream.requests), len(upstreams[0].requests)) == (1, 2)
    event = the_event(gateway)
    assert (event.status_code, event.attempts, event.provider) == (200, 3, "secondary")


def test_a_refused_credential_on_the_only_deployment_ends_after_one_attempt(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    deploy(upstream)
    upstream.script(Behave(status=401))

    reply = post(gateway, CHAT)

    assert_openai_error(reply, 502, attempts=1)
    assert len(upstream.requests) == 1
    event = the_event(gateway)
    assert (event.status_code, event.attempts) == (502, 1)
    assert not charged(event)


def test_attempts_follow_the_deployments_in_priority_order_up_to_the_limit(
    gateway: Gateway, upstream: FakeUpstream, upstreams: list[FakeUpstream]
) -> None:
    # Created out of order: only the priority decides.
    deploy(upstreams[2], provider="fourth", priority=4)
    deploy(upstreams[0], provider="second", priority=2)
    deploy(upstream, provider="first", priority=1)
    deploy(upstreams[1], provider="third", priority=3)
    for each in (upstream, *upstreams):
        each.script(Behave(status=503))

    reply = post(gateway, CHAT)

    assert_openai_error(reply, 502, attempts=3)
    first, second, third = (each.requests for each in (upstream, upstreams[0], upstreams[1]))
    assert (len(first), len(second), len(third), len(upstreams[2].requests)) == (1, 1, 1, 0)
    assert first[0].at < second[0].at < third[0].at
    event = the_event(gateway)
    assert (event.status_code, event.attempts) == (502, 3)


def test_a_later_deployment_answers_when_the_first_ones_fail(
    gateway: Gateway, upstream: FakeUpstream, upstreams: list[FakeUpstream]
) -> None:
    deploy(upstream, provider="first", priority=1)
    deploy(upstreams[0], provider="second", priority=2)
    deploy(upstreams[1], provider="third", priority=3)
    upstream.script(Behave(reset=True))
    upstreams[0].script(Behave(delay=SLOW))

    raw = sdk(gateway).chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)

    assert (raw.headers["x-oneflow-attempts"], raw.headers["x-oneflow-provider"]) == ("3", "third")
    event = the_event(gateway)
    assert (event.status_code, event.attempts, event.provider) == (200, 3, "third")
    assert charged(event)


def test_the_attempt_limit_follows_the_setting(gateway: Gateway, upstream: FakeUpstream, settings: Settings) -> None:
    settings.UPSTREAM_MAX_ATTEMPTS = 2
    deploy(upstream)
    upstream.script(Behave(status=500), Behave(status=500))

    reply = post(gateway, CHAT)

    assert_openai_error(reply, 502, attempts=2)
    assert len(upstream.requests) == 2
    assert the_event(gateway).attempts == 2


def test_backoff_never_waits_longer_than_the_cap(
    gateway: Gateway, upstream: FakeUpstream, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.UPSTREAM_RETRY_BASE_SECONDS = 30
    settings.UPSTREAM_RETRY_MAX_SECONDS = 0.05
    settings.UPSTREAM_DEADLINE_SECONDS = 10
    # The jitter always draws its ceiling: uncapped, the first wait would be 30 s,
    # past the deadline, and the gateway would give up after one attempt.
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    deploy(upstream)
    upstream.script(Behave(status=500), Behave(status=500))

    raw = sdk(gateway).chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)

    assert raw.headers["x-oneflow-attempts"] == "3"
    assert len(upstream.requests) == 3


def test_a_429_retry_after_is_waited_for_before_the_next_attempt(gateway: Gateway, upstream: FakeUpstream) -> None:
    deploy(upstream)
    upstream.script(Behave(status=429, headers={"retry-after": "1"}))

    raw = sdk(gateway).chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)

    assert raw.headers["x-oneflow-attempts"] == "2"
    first, second = upstream.requests
    # The backoff alone is at most 0.05 s here: only the Retry-After explains the wait.
    assert second.at - first.at >= 1.0
    assert the_event(gateway).attempts == 2


@pytest.mark.parametrize(("retry_after", "expected"), [("20", "20"), ("3600", "60")])
def test_a_retry_after_past_the_deadline_ends_the_request_at_once(
    gateway: Gateway, upstream: FakeUpstream, settings: Settings, retry_after: str, expected: str
) -> None:
    settings.UPSTREAM_DEADLINE_SECONDS = 15
    deploy(upstream)
    upstream.script(Behave(status=429, headers={"retry-after": retry_after}))

    # A client that gives up before the gateway's deadline: a gateway that waited
    # (for the Retry-After or for its deadline) would leave it with a timeout instead.
    impatient = openai.OpenAI(base_url=gateway.url, api_key=gateway.key.raw, max_retries=0, timeout=10)
    with pytest.raises(openai.RateLimitError) as caught:
        impatient.chat.completions.create(model="smart", messages=MESSAGES)

    headers = caught.value.response.headers
    assert (headers["retry-after"], headers["x-oneflow-attempts"]) == (expected, "1")
    assert len(upstream.requests) == 1
    event = the_event(gateway)
    assert (event.status_code, event.attempts) == (429, 1)
    assert not charged(event)


def test_a_failure_on_the_messages_endpoint_answers_in_anthropics_shape(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    deploy(upstream)
    upstream.script(*[Behave(status=502)] * 3)

    reply = post(gateway, ANTHROPIC_MESSAGES, path="/v1/messages")

    assert (reply.status, reply.headers["x-oneflow-attempts"]) == (502, "3")
    body = reply.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "api_error"
    assert body["request_id"] == reply.headers["request-id"]
    assert len(upstream.requests) == 3
    event = the_event(gateway)
    assert (event.status_code, event.attempts, event.endpoint) == (502, 3, "messages")


def test_the_anthropic_sdk_sees_a_timed_out_request_as_a_timeout(gateway: Gateway, upstream: FakeUpstream) -> None:
    deploy(upstream)
    upstream.script(*[Behave(delay=SLOW)] * 3)
    client = anthropic.Anthropic(base_url=gateway.server.url, api_key=gateway.key.raw, max_retries=0)

    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(**ANTHROPIC_MESSAGES)

    assert caught.value.status_code == 504
    assert caught.value.response.headers["x-oneflow-attempts"] == "3"
    assert caught.value.body["error"]["type"] == "timeout_error"  # type: ignore[index]
    event = the_event(gateway)
    assert (event.status_code, event.attempts, event.endpoint) == (504, 3, "messages")


# --- streams --------------------------------------------------------------------------------

# Failures before the first content token: the client must never see them.
BEFORE_FIRST_TOKEN = {
    "500": Behave(status=500),
    "429": Behave(status=429),
    "reset": Behave(reset=True),
    "malformed json": Behave(malformed=True),
    "timeout": Behave(delay=SLOW),
    "cut after the role chunk": Behave(cut_after=0),
    "silence after the role chunk": Behave(chunk_delay=SLOW),
}


@pytest.mark.parametrize("failure", list(BEFORE_FIRST_TOKEN))
def test_a_stream_failing_before_its_first_token_fails_over_invisibly(
    gateway: Gateway, upstream: FakeUpstream, failure: str
) -> None:
    deploy(upstream)
    upstream.script(BEFORE_FIRST_TOKEN[failure])

    reply = post(gateway, {**CHAT, "stream": True})

    assert reply.status == 200
    assert reply.headers["x-oneflow-attempts"] == "2"
    assert streamed_text(reply.body) == DEFAULT_REPLY
    chunks = openai_chunks(reply.body)
    assert [c for c in chunks if "error" in c] == []
    roles = [c for c in chunks for choice in c["choices"] if choice["delta"].get("role")]
    assert len(roles) == 1, "the failed attempt's held chunks leaked"
    assert reply.body.endswith(b"data: [DONE]\n\n")
    assert len(upstream.requests) == 2
    event = the_event(gateway)
    assert (event.stream, event.status_code, event.attempts, event.usage_source) == (True, 200, 2, "reported")


# Failures after the first content token: (behaviour, text the client got, status on record).
AFTER_FIRST_TOKEN = {
    "cut": (Behave(cut_after=2), "Hello from", 502),
    "upstream error event": (Behave(stream_error=True), "Hello", 502),
    "stall past the read timeout": (Behave(stall_after=2, stall=SLOW), "Hello from", 504),
}


@pytest.mark.parametrize("failure", list(AFTER_FIRST_TOKEN))
def test_a_stream_failing_after_its_first_token_ends_with_an_error_event(
    gateway: Gateway, upstream: FakeUpstream, failure: str
) -> None:
    deploy(upstream)
    behave, text, status = AFTER_FIRST_TOKEN[failure]
    upstream.script(behave)

    reply = post(gateway, {**CHAT, "stream": True})

    assert (reply.status, reply.headers["x-oneflow-attempts"]) == (200, "1")
    assert streamed_text(reply.body) == text
    last = openai_chunks(reply.body)[-1]
    assert set(last) == {"error"}
    assert last["error"]["message"]
    assert b"[DONE]" not in reply.body
    assert len(upstream.requests) == 1, "a stream the client has seen must not be retried"
    event = the_event(gateway)
    assert (event.status_code, event.attempts, event.usage_source) == (status, 1, "estimated")
    # The customer pays for the prompt and the tokens that were generated.
    assert event.prompt_tokens > 0
    assert event.completion_tokens == len(split_reply(text))
    assert event.charged > 0
    assert charged(event)


def test_the_openai_sdk_raises_on_a_stream_cut_mid_way(gateway: Gateway, upstream: FakeUpstream) -> None:
    deploy(upstream)
    upstream.script(Behave(cut_after=3))

    received = []
    with pytest.raises(openai.APIError):
        for chunk in sdk(gateway).chat.completions.create(model="smart", messages=MESSAGES, stream=True):
            received.append(chunk)

    assert "".join(c.choices[0].delta.content or "" for c in received if c.choices) == "Hello from the"
    assert the_event(gateway).attempts == 1


def test_a_slow_stream_within_the_read_timeout_completes(gateway: Gateway, upstream: FakeUpstream) -> None:
    deploy(upstream, read_timeout=0.5)
    # Eight gaps of 0.15 s between nine frames: ~1.2 s in all, more than twice the read timeout.
    upstream.script(Behave(chunk_delay=0.15))

    started = time.monotonic()
    reply = post(gateway, {**CHAT, "stream": True})

    assert time.monotonic() - started >= 1.0
    assert (reply.status, reply.headers["x-oneflow-attempts"]) == (200, "1")
    assert streamed_text(reply.body) == DEFAULT_REPLY
    assert reply.body.endswith(b"data: [DONE]\n\n")
    assert len(upstream.requests) == 1
    event = the_event(gateway)
    assert (event.status_code, event.attempts, event.usage_source) == (200, 1, "reported")


def test_a_stream_that_never_starts_ends_with_an_error_response(gateway: Gateway, upstream: FakeUpstream) -> None:
    deploy(upstream)
    upstream.script(Behave(status=500), Behave(cut_after=0), Behave(reset=True))

    reply = post(gateway, {**CHAT, "stream": True})

    assert_openai_error(reply, 502, attempts=3)
    assert len(upstream.requests) == 3
    event = the_event(gateway)
    assert (event.stream, event.status_code, event.attempts, event.usage_source) == (True, 502, 3, "void")
    assert not charged(event)


def test_a_messages_stream_failing_before_its_first_token_fails_over_invisibly(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    deploy(upstream)
    upstream.script(Behave(cut_after=0))

    reply = post(gateway, {**ANTHROPIC_MESSAGES, "stream": True}, path="/v1/messages")

    assert (reply.status, reply.headers["x-oneflow-attempts"]) == (200, "2")
    names = [name for name, _ in sse_events(reply.body)]
    assert names.count("message_start") == 1
    assert names[-1] == "message_stop"
    assert "error" not in names
    text = "".join(
        json.loads(data)["delta"].get("text", "")
        for name, data in sse_events(reply.body)
        if name == "content_block_delta"
    )
    assert text == DEFAULT_REPLY
    assert the_event(gateway).attempts == 2


def test_a_messages_stream_cut_after_its_first_token_ends_with_an_error_event(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    deploy(upstream)
    upstream.script(Behave(cut_after=2))

    reply = post(gateway, {**ANTHROPIC_MESSAGES, "stream": True}, path="/v1/messages")

    assert (reply.status, reply.headers["x-oneflow-attempts"]) == (200, "1")
    events = sse_events(reply.body)
    names = [name for name, _ in events]
    assert "content_block_delta" in names
    assert names[-1] == "error"
    assert "message_stop" not in names
    assert json.loads(events[-1][1])["type"] == "error"
    event = the_event(gateway)
    assert (event.status_code, event.attempts, event.usage_source) == (502, 1, "estimated")
    assert charged(event)


def test_the_anthropic_sdk_raises_on_a_stream_cut_mid_way(gateway: Gateway, upstream: FakeUpstream) -> None:
    deploy(upstream)
    upstream.script(Behave(cut_after=2))
    client = anthropic.Anthropic(base_url=gateway.server.url, api_key=gateway.key.raw, max_retries=0)

    received = []
    with pytest.raises(anthropic.APIStatusError), client.messages.stream(**ANTHROPIC_MESSAGES) as stream:
        for text in stream.text_stream:
            received.append(text)

    assert "".join(received) == "Hello from"
    assert the_event(gateway).attempts == 1


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_adapter_fails_over_before_the_first_token_but_not_after(
    gateway: Gateway, upstream: FakeUpstream, upstreams: list[FakeUpstream], kind: str
) -> None:
    """Whatever frames a provider sends before its first content token, they are held back."""
    deploy(upstream, provider="first", kind=kind)
    deploy(upstreams[0], provider="second", kind=kind, priority=2)
    upstream.script(Behave(cut_after=0), Behave(cut_after=1))

    whole = post(gateway, {**CHAT, "stream": True})
    cut = post(gateway, {**CHAT, "stream": True})

    assert (whole.headers["x-oneflow-attempts"], whole.headers["x-oneflow-provider"]) == ("2", "second")
    assert streamed_text(whole.body) == DEFAULT_REPLY
    assert whole.body.endswith(b"data: [DONE]\n\n")
    assert (cut.headers["x-oneflow-attempts"], cut.headers["x-oneflow-provider"]) == ("1", "first")
    assert streamed_text(cut.body) == "Hello"
    assert set(openai_chunks(cut.body)[-1]) == {"error"}
    assert b"[DONE]" not in cut.body
    assert (len(upstream.requests), len(upstreams[0].requests)) == (2, 1)
    assert [(e.status_code, e.attempts) for e in gateway.events()] == [(200, 2), (502, 1)]
