"""The playground: a person picks a model, sends a prompt and sees the answer stream in,
through the real gateway with their own sealed playground key, billed like any API call.

Calls that reach the gateway run against OneFlow's live ASGI app (uvicorn) and a fake
OpenAI upstream over HTTP, signed in with a real session cookie and CSRF token.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts import services
from accounts.keys import hash_raw_key
from accounts.models import ApiKey, Organization, User
from billing.models import UsageEvent
from billing.selectors import credits_balance
from billing.services import usage_drain
from oneflow.lib import money
from providers.models import Credential, Provider, PublicModel
from providers.services import credential_set_secret
from tests.conftest import UPSTREAM_KEY, LiveAsgiServer
from tests.dashboard.conftest import asset_urls, is_same_origin
from tests.factories import (
    CreditGrantFactory,
    DeploymentFactory,
    ModelAccessFactory,
    OrganizationFactory,
    PriceFactory,
    PublicModelFactory,
)
from tests.fakes import DEFAULT_REPLY, Behave, FakeUpstream

PAGE = "/dashboard/playground"
CHAT = "/dashboard/playground/chat"


# --- The catalog -------------------------------------------------------------------------


def add_model(name: str, **fields: Any) -> PublicModel:
    PriceFactory.create(public_model=name, effective_from=datetime(2020, 1, 1, tzinfo=UTC))
    return PublicModelFactory.create(name=name, **fields)


def route_to(upstream: FakeUpstream, model: PublicModel) -> None:
    """Serves ``model`` from the fake OpenAI upstream, as an operator sets it up in the admin."""
    provider, _ = Provider.objects.get_or_create(
        name="fake-openai", defaults={"kind": Provider.Kind.OPENAI, "base_url": upstream.url + "/v1"}
    )
    credential, created = Credential.objects.get_or_create(provider=provider, name="main")
    if created:
        credential_set_secret(credential=credential, secret=UPSTREAM_KEY)
    DeploymentFactory.create(public_model=model, provider=provider, credential=credential, upstream_model="gpt-4o-mini")


@pytest.fixture
def catalog(acme: Organization) -> dict[str, PublicModel]:
    """A public chat model, a hidden one granted to Acme, one granted elsewhere, one granted
    to nobody, and a public embedding model."""
    other = OrganizationFactory.create()
    models = {
        "smart": add_model("smart"),
        "acme-only": add_model("acme-only", is_public=False),
        "other-only": add_model("other-only", is_public=False),
        "hidden": add_model("hidden", is_public=False),
        "embedder": add_model("embedder", kind=PublicModel.Kind.EMBEDDING),
    }
    ModelAccessFactory.create(public_model=models["acme-only"], organization=acme)
    ModelAccessFactory.create(public_model=models["other-only"], organization=other)
    return models


def options(html: str) -> list[str]:
    select = re.search(r'<select name="model"[^>]*>(.*?)</select>', html, re.S)
    assert select is not None, "the page has no model picker"
    return re.findall(r'<option value="([^"]*)"', select.group(1))


# --- The page ------------------------------------------------------------------------------


def test_the_page_lists_only_the_chat_models_the_organization_may_use(
    bob_browser: Client, catalog: dict[str, PublicModel]
) -> None:
    response = bob_browser.get(PAGE)  # bob is a plain member: members may use it

    assert response.status_code == 200
    html = response.content.decode()
    listed = options(html)
    assert {"smart", "acme-only"} <= set(listed)
    assert not {"other-only", "hidden", "embedder"} & set(listed)
    assert f'<a href="{PAGE}" aria-current="page">Playground</a>' in html
    assert "spends its credits" in html
    assert "Playground · bob@example.com" in html
    assert '<script src="/static/dashboard/playground.js" defer></script>' in html
    assert "<script>" not in html  # the CSP allows no inline script
    assert [url for url in asset_urls(html) if not is_same_origin(url)] == []
    assert 'aria-live="polite"' in html
    assert re.search(r'id="playground-error" class="alert error" role="alert" hidden', html)


def test_a_page_view_issues_no_key(alice_browser: Client, catalog: dict[str, PublicModel]) -> None:
    alice_browser.get(PAGE)
    assert not ApiKey.objects.filter(purpose=ApiKey.Purpose.PLAYGROUND).exists()


def test_a_signed_out_visitor_is_sent_to_sign_in_or_refused(client: Client, catalog: dict[str, PublicModel]) -> None:
    page = client.get(PAGE)
    assert (page.status_code, page["Location"]) == (302, f"/signin?next={PAGE}")

    refused = client.post(CHAT, {"model": "smart", "prompt": "Hi"}, content_type="application/json")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "not_signed_in"

    form_post = client.post(CHAT, {"model": "smart", "prompt": "Hi"}, headers={"Accept": "text/html"})
    assert (form_post.status_code, form_post["Location"]) == (302, f"/signin?next={PAGE}")
    assert not ApiKey.objects.exists()


def test_a_chat_without_the_csrf_token_is_refused(alice: User, catalog: dict[str, PublicModel]) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    assert 'name="csrfmiddlewaretoken"' in browser.get(PAGE).content.decode()

    refused = browser.post(CHAT, {"model": "smart", "prompt": "Hi"}, content_type="application/json")

    assert refused.status_code == 403
    assert not ApiKey.objects.exists()


def test_bad_input_is_refused_in_the_gateways_error_shape(
    alice_browser: Client, catalog: dict[str, PublicModel]
) -> None:
    missing = alice_browser.post(CHAT, {"model": "smart", "prompt": ""}, content_type="application/json")
    assert missing.status_code == 400
    assert missing.json()["error"] == {
        "message": "Prompt: This field is required.",
        "type": "invalid_request_error",
        "param": "prompt",
        "code": "invalid_input",
    }
    too_hot = alice_browser.post(
        CHAT, {"model": "smart", "prompt": "Hi", "temperature": "3"}, content_type="application/json"
    )
    assert too_hot.json()["error"]["param"] == "temperature"
    not_an_object = alice_browser.post(CHAT, "[1, 2]", content_type="application/json")
    assert not_an_object.json()["error"]["code"] == "invalid_json"
    assert not ApiKey.objects.exists()


# --- The playground key ------------------------------------------------------------------------


def secret_of(raw: str) -> Any:
    return ApiKey.objects.get(secrets__secret_hash=hash_raw_key(raw)).secrets.get(secret_hash=hash_raw_key(raw))


def test_the_key_is_issued_once_per_person_sealed_and_named_for_them(acme: Organization, bob: User) -> None:
    raw = services.playground_key_for(organization=acme, user=bob)

    assert services.playground_key_for(organization=acme, user=bob) == raw
    [key] = ApiKey.objects.filter(organization=acme)
    assert (key.name, key.purpose, key.created_by) == ("Playground · bob@example.com", "playground", bob)
    secret = secret_of(raw)
    assert secret.key == key
    assert secret.sealed_secret and raw not in secret.sealed_secret


def test_a_revoked_or_expired_key_is_replaced(acme: Organization, bob: User) -> None:
    first = services.playground_key_for(organization=acme, user=bob)
    services.api_key_revoke(key=secret_of(first).key)

    second = services.playground_key_for(organization=acme, user=bob)

    assert second != first
    assert secret_of(second).key != secret_of(first).key
    replaced = secret_of(second).key
    services.api_key_update(key=replaced, expires_at=timezone.now() + timedelta(seconds=1))
    ApiKey.objects.filter(pk=replaced.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    third = services.playground_key_for(organization=acme, user=bob)

    assert secret_of(third).key not in (secret_of(first).key, replaced)
    replaced.refresh_from_db()
    assert replaced.status == ApiKey.Status.REVOKED
    assert ApiKey.objects.filter(purpose="playground", status="active").count() == 1


def test_a_key_whose_sealed_secret_is_gone_gets_a_new_secret(acme: Organization, bob: User) -> None:
    raw = services.playground_key_for(organization=acme, user=bob)
    key = secret_of(raw).key
    # A manager rotates it from the keys page: the new secret is shown to them, not sealed.
    services.api_key_rotate(key=key)

    again = services.playground_key_for(organization=acme, user=bob)

    assert again != raw
    assert secret_of(again).key == key
    assert secret_of(again).valid_until is None  # the current secret, sealed for the next use
    assert secret_of(again).sealed_secret


def test_each_person_has_their_own_key(acme: Organization, alice: User, bob: User) -> None:
    assert services.playground_key_for(organization=acme, user=alice) != services.playground_key_for(
        organization=acme, user=bob
    )
    assert ApiKey.objects.filter(purpose="playground").count() == 2


# --- Through the live gateway ---------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    arrivals: list[tuple[float, bytes]]  # each piece of the body and when it came

    def frames(self) -> list[Any]:
        data = [line.removeprefix("data: ") for line in self.body.decode().split("\n") if line.startswith("data: ")]
        return [item if item == "[DONE]" else json.loads(item) for item in data]

    def text(self) -> str:
        chunks = [f for f in self.frames() if isinstance(f, dict)]
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))


class SignedIn:
    """One person's browser session against the live server, over plain HTTP."""

    def __init__(self, server: LiveAsgiServer, user: User) -> None:
        django_client = Client()
        django_client.force_login(user)
        self.host, port = server.url.removeprefix("http://").split(":")
        self.port = int(port)
        self.cookies = {"sessionid": django_client.cookies["sessionid"].value}
        page = self.request("GET", PAGE)
        assert page.status == 200
        self.page_html = page.body.decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', self.page_html)
        assert token is not None
        self.csrf_token = token.group(1)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        connection.request(method, path, body=body, headers={"Cookie": cookie, **(headers or {})})
        response = connection.getresponse()
        arrivals = []
        while piece := response.read1(65536):
            arrivals.append((time.monotonic(), piece))
        connection.close()
        for value in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = value.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        body = b"".join(piece for _, piece in arrivals)
        return Reply(response.status, {k.lower(): v for k, v in response.headers.items()}, body, arrivals)

    def headers(self, accept: str = "text/event-stream") -> dict[str, str]:
        return {"Content-Type": "application/json", "Accept": accept, "X-CSRFToken": self.csrf_token}

    def chat(self, **fields: Any) -> Reply:
        return self.request("POST", CHAT, json.dumps({"model": "smart", **fields}).encode(), self.headers())


@pytest.fixture
def live(
    live_asgi: LiveAsgiServer, upstream: FakeUpstream, catalog: dict[str, PublicModel], acme: Organization
) -> LiveAsgiServer:
    route_to(upstream, catalog["smart"])
    CreditGrantFactory.create(organization=acme, amount=Decimal(1000))
    return live_asgi


@pytest.fixture
def bob_live(live: LiveAsgiServer, bob: User) -> SignedIn:
    return SignedIn(live, bob)


def drained(request_id: str) -> UsageEvent:
    deadline = time.monotonic() + 5
    while True:
        usage_drain()
        event = UsageEvent.objects.filter(request_id=request_id).first()
        if event is not None or time.monotonic() > deadline:
            assert event is not None, f"no usage event for {request_id}"
            return event
        time.sleep(0.05)


def test_a_prompt_streams_its_answer_and_is_charged_its_cost(
    bob_live: SignedIn, upstream: FakeUpstream, acme: Organization, bob: User
) -> None:
    before = credits_balance(organization_id=acme.pk)
    # One second of silence after the first word: a streamed answer shows it before then.
    upstream.script(Behave(stall_after=1, stall=1.0))

    reply = bob_live.chat(prompt="Say hello", system="Be brief.", max_tokens="50", temperature="0.3")

    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert reply.text() == DEFAULT_REPLY
    first_word = next(at for at, piece in reply.arrivals if b'"content":"Hello' in piece)
    assert reply.arrivals[-1][0] - first_word > 0.8, "the answer came in one piece, not as a stream"
    *_, usage_chunk, done = reply.frames()
    assert done == "[DONE]"
    assert usage_chunk["choices"] == []
    cost = Decimal(usage_chunk["usage"]["cost"])
    assert cost > 0
    # The upstream got what an API client would have sent.
    [sent] = upstream.requests
    assert sent.json["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello"},
    ]
    assert (sent.json["temperature"], sent.json["max_completion_tokens"]) == (0.3, 50)
    # Billed and logged like any API call, on bob's playground key.
    event = drained(reply.headers["x-oneflow-request-id"])
    assert (event.cost, event.stream, event.status_code, event.public_model) == (cost, True, 200, "smart")
    assert event.api_key is not None
    assert (event.api_key.purpose, event.api_key.created_by) == ("playground", bob)
    assert credits_balance(organization_id=acme.pk) == before - cost


def test_the_key_is_reused_and_replaced_after_revocation(bob_live: SignedIn, acme: Organization) -> None:
    first = drained(bob_live.chat(prompt="One").headers["x-oneflow-request-id"])
    second = drained(bob_live.chat(prompt="Two").headers["x-oneflow-request-id"])
    assert first.api_key == second.api_key
    assert ApiKey.objects.filter(purpose="playground").count() == 1
    assert first.api_key is not None
    services.api_key_revoke(key=first.api_key)

    third = bob_live.chat(prompt="Three")

    assert third.status == 200
    assert third.text() == DEFAULT_REPLY
    replacement = drained(third.headers["x-oneflow-request-id"]).api_key
    assert replacement is not None and replacement != first.api_key
    assert replacement.status == ApiKey.Status.ACTIVE


def test_an_unknown_model_gets_the_gateways_own_error(bob_live: SignedIn, upstream: FakeUpstream) -> None:
    for name in ("no-such-model", "other-only", "hidden"):
        reply = bob_live.chat(model=name, prompt="Hi")

        assert reply.status == 404
        assert reply.headers["content-type"] == "application/json"
        assert json.loads(reply.body)["error"] == {
            "message": f"The model `{name}` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    assert upstream.requests == []


def test_the_secret_never_reaches_the_browser(bob_live: SignedIn, acme: Organization, bob: User) -> None:
    reply = bob_live.chat(prompt="Hi")
    raw = services.playground_key_for(organization=acme, user=bob)
    page = bob_live.request("GET", PAGE)

    for seen in (reply.body, json.dumps(reply.headers).encode(), page.body, bob_live.page_html.encode()):
        assert raw.encode() not in seen
        assert raw.split("_")[2].encode() not in seen  # not even its prefix


def test_without_the_script_the_form_posts_and_the_answer_comes_as_a_page(bob_live: SignedIn) -> None:
    form = f"csrfmiddlewaretoken={bob_live.csrf_token}&model=smart&prompt=Say+hello".encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "text/html"}

    reply = bob_live.request("POST", CHAT, form, headers)

    assert reply.status == 200
    html = reply.body.decode()
    assert f'<div id="playground-answer" class="answer" aria-live="polite">{DEFAULT_REPLY}</div>' in html
    assert "Cost: <strong>" in html
    assert "Say hello</textarea>" in html  # the prompt stays, ready to edit
    request_id = re.search(r"Request (req_[0-9a-f]+)</a>", html)
    assert request_id is not None
    event = drained(request_id.group(1))
    assert (event.stream, event.status_code) == (False, 200)
    assert event.cost > 0
    assert f"Cost: <strong>{money.display_text(event.cost)} credits</strong>" in html
    assert "Cost: <strong>0.00 credits" not in html, "a charge is never shown as nothing"


def test_leaving_mid_stream_cancels_the_upstream_and_bills_what_was_written(
    bob_live: SignedIn, upstream: FakeUpstream
) -> None:
    upstream.script(Behave(chunk_delay=0.5))  # five words at 0.5 s each
    body = json.dumps({"model": "smart", "prompt": "Say hello"}).encode()
    cookie = "; ".join(f"{k}={v}" for k, v in bob_live.cookies.items())
    with socket.create_connection((bob_live.host, bob_live.port)) as sock:
        head = f"POST {CHAT} HTTP/1.1\r\nHost: {bob_live.host}\r\nCookie: {cookie}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in bob_live.headers().items())
        sock.sendall(head.encode() + b"\r\n" + body)
        received = b""
        while received.count(b"data: ") < 2:
            piece = sock.recv(4096)
            assert piece, f"the answer ended early: {received!r}"
            received += piece
    request_id = re.search(rb"x-oneflow-request-id: (\S+)", received, re.I)
    assert request_id is not None

    # A stream the gateway kept reading would end (2.5 s) and never count as
    # abandoned: waiting well past its end fails only if the gateway did not close it.
    deadline = time.monotonic() + 10
    while upstream.abandoned_streams == 0:
        assert time.monotonic() < deadline, "the upstream stream was not closed"
        time.sleep(0.02)
    event = drained(request_id.group(1).decode())
    assert (event.client_disconnected, event.status_code) == (True, 499)
    assert event.completion_tokens == 1  # "Hello": the one word that had been written
