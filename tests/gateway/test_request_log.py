"""What the request log keeps of a request that named no model the key may use."""

from __future__ import annotations

import openai
import pytest
from django.test import Client
from django.urls import reverse

from billing import usage
from tests.gateway.conftest import Gateway

NAME = "gpt-4o-mini-typo"


def test_a_request_for_an_unknown_model_shows_the_name_asked_for(gateway: Gateway) -> None:
    sdk = openai.OpenAI(base_url=gateway.url, api_key=gateway.key.raw, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}])

    [event] = gateway.events()
    assert (event.status_code, event.public_model, event.requested_model) == (404, "", NAME)
    owner, alice = Client(), gateway.key.key.created_by
    assert alice is not None
    owner.force_login(alice)
    page = owner.get(reverse("dashboard-requests")).content.decode()
    detail = owner.get(reverse("dashboard-request-detail", args=[event.request_id])).content.decode()
    assert NAME in page
    assert NAME in detail


def test_a_known_model_keeps_no_requested_name(gateway: Gateway) -> None:
    sdk = openai.OpenAI(base_url=gateway.url, api_key=gateway.key.raw, max_retries=0)
    sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])

    [event] = gateway.events()
    assert (event.public_model, event.requested_model) == ("gpt-4o-mini", "")


def test_a_drain_of_an_older_release_skips_fields_it_does_not_know() -> None:
    """A rolling deploy: a newer gateway's event still decodes into this release's fields."""
    payload = b'{"request_id": "req_1", "a_field_from_the_future": 1}'
    assert usage.decode({b"e": payload}) == {"request_id": "req_1"}
