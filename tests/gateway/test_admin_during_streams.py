"""An operator's "Test connection" must not touch the streams a worker is serving.

Issue 12: the action ran its probe through ``async_to_sync``, which under
uvicorn runs on the worker's own event loop, and then closed the HTTP session
that loop shares with every in-flight upstream call: a stream being served
stopped mid-way and hung, while the admin said "Answered in 8 ms".
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import openai
from django.test import Client
from django.urls import reverse

from accounts.models import User
from providers.models import Deployment, Provider
from tests.fakes import Behave, FakeUpstream
from tests.gateway.conftest import Gateway
from tests.gateway.test_adapters import route
from tests.http import call

WORDS = 30
TEXT = " ".join(f"word{i}" for i in range(WORDS))


def operator_session(gateway: Gateway) -> dict[str, str]:
    """Cookie headers of a signed-in operator on the live server (sessions live in the database)."""
    client = Client()
    client.force_login(User.objects.create_superuser("ops@oneflow.local", "operator password 123"))
    session = client.cookies["sessionid"].value
    page = call(
        gateway.server.url,
        "GET",
        reverse("admin:providers_deployment_changelist"),
        headers={"Cookie": f"sessionid={session}", "Host": "localhost"},
    )
    assert page.status == 200, page.status
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
    csrf = re.search(r"csrftoken=([^;]+)", page.headers.get("set-cookie", ""))
    assert token is not None and csrf is not None
    return {
        "Cookie": f"sessionid={session}; csrftoken={csrf.group(1)}",
        "X-CSRFToken": token.group(1).decode(),
        "Host": "localhost",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def test_test_connection_during_a_stream_leaves_the_stream_whole(gateway: Gateway, upstream: FakeUpstream) -> None:
    route(upstream, Provider.Kind.OPENAI)
    deployment = Deployment.objects.get(provider__kind=Provider.Kind.OPENAI)
    headers = operator_session(gateway)
    upstream.script(Behave(chunk_delay=0.1, text=TEXT))  # about 3 s of stream; the probe then gets a plain answer
    sdk = openai.OpenAI(base_url=gateway.url, api_key=gateway.key.raw, max_retries=0, timeout=20)
    received: list[str] = []
    outcome: dict[str, Any] = {}

    def stream() -> None:
        try:
            chunks = sdk.chat.completions.create(
                model="smart", messages=[{"role": "user", "content": "Count"}], stream=True
            )
            for chunk in chunks:
                if chunk.choices and chunk.choices[0].delta.content:
                    received.append(chunk.choices[0].delta.content)
                if chunk.choices and chunk.choices[0].finish_reason:
                    outcome["finish"] = chunk.choices[0].finish_reason
        except Exception as error:  # the assertion below names it
            outcome["error"] = repr(error)

    reader = threading.Thread(target=stream)
    reader.start()
    deadline = time.monotonic() + 10
    while len(received) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert received, "the stream started"
    body = f"action=test_connection&_selected_action={deployment.pk}".encode()
    tested = call(
        gateway.server.url, "POST", reverse("admin:providers_deployment_changelist"), body=body, headers=headers
    )
    reader.join(timeout=30)

    assert tested.status == 302, tested.status
    assert not reader.is_alive(), "the stream hung"
    assert "error" not in outcome, outcome
    assert "".join(received).split() == TEXT.split()
    assert outcome.get("finish") == "stop"
    assert len(upstream.requests) == 2, "the probe reached the provider too"


def test_a_stream_whose_upstream_connection_is_closed_under_it_ends_with_an_error(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    route(upstream, Provider.Kind.OPENAI)
    upstream.script(Behave(chunk_delay=0.1, text=TEXT))
    sdk = openai.OpenAI(base_url=gateway.url, api_key=gateway.key.raw, max_retries=0, timeout=20)
    received: list[str] = []
    outcome: dict[str, Any] = {}

    def stream() -> None:
        try:
            for chunk in sdk.chat.completions.create(
                model="smart", messages=[{"role": "user", "content": "Count"}], stream=True
            ):
                if chunk.choices and chunk.choices[0].delta.content:
                    received.append(chunk.choices[0].delta.content)
        except openai.APIError as error:
            outcome["error"] = error

    reader = threading.Thread(target=stream)
    reader.start()
    deadline = time.monotonic() + 10
    while len(received) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    gateway.server.on_loop(gateway.server.gateway.http.close())  # the worker's client, on its own loop
    reader.join(timeout=15)

    assert not reader.is_alive(), "the stream hung"
    assert isinstance(outcome.get("error"), openai.APIError), "ended with an error event, not a clean finish"
    # A hung stream would end only by the SDK's own 20 s read timeout (an APIError too).
    assert not isinstance(outcome["error"], openai.APITimeoutError), "the gateway ended it, not the client's timeout"
    assert len(received) < WORDS
