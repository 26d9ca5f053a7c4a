"""Dashboard clients: a browser-like Django test client signed in as a persona."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.test import Client

from accounts.models import User


@pytest.fixture
def alice_browser(alice: User) -> Client:
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def bob_browser(bob: User) -> Client:
    client = Client()
    client.force_login(bob)
    return client


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in {"src", "href", "action", "hx-get"} and value]


def asset_urls(html: str) -> list[str]:
    """Every src, href, form action and hx-get of the page."""
    parser = _Links()
    parser.feed(html)
    return parser.urls


def is_same_origin(url: str) -> bool:
    """Relative or rooted at this server: no scheme, no //host."""
    return not url.startswith("//") and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", url) is None
