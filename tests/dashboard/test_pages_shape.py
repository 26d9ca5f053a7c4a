"""Every dashboard page: only same-origin assets, vendored libraries served, bounded queries."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.test import Client

from accounts import services
from accounts.models import Organization, User
from billing.models import UsageRollup
from tests.dashboard.conftest import asset_urls, is_same_origin
from tests.factories import ApiKeyFactory, MembershipFactory

PAGES = ["/dashboard/", "/dashboard/keys"]
ANONYMOUS_PAGES = ["/signin", "/signup", "/password-reset/", "/password-reset/sent"]


@pytest.fixture
def busy_acme(acme: Organization, alice: User) -> Organization:
    """Many keys, rotations, organizations and rollups: what a page must not load all of."""
    for n, issued in enumerate(ApiKeyFactory.create_batch(60, organization=acme)):
        if n % 3 == 0:
            services.api_key_rotate(key=issued.key)
    MembershipFactory.create_batch(5, user=alice)  # a member of five other organizations
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    UsageRollup.objects.bulk_create(
        UsageRollup(
            organization=acme,
            public_model=f"model-{m}",
            provider="OpenAI",
            period="day",
            bucket=day - timedelta(days=d),
            requests=10,
            errors=1,
            cost=Decimal("0.5"),
        )
        for d in range(40)
        for m in range(8)
    )
    return acme


@pytest.mark.parametrize("path", PAGES)
def test_signed_in_pages_load_only_same_origin_assets(alice_browser: Client, busy_acme: Organization, path: str):
    response = alice_browser.get(path)
    assert response.status_code == 200
    urls = asset_urls(response.content.decode())
    assert any(url.startswith("/static/") for url in urls)
    assert [url for url in urls if not is_same_origin(url)] == []


@pytest.mark.parametrize("path", ANONYMOUS_PAGES)
def test_anonymous_pages_load_only_same_origin_assets(client: Client, db: None, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    urls = asset_urls(response.content.decode())
    assert '<a class="skip-link" href="#main">' in response.content.decode()
    assert [url for url in urls if not is_same_origin(url)] == []


def test_the_same_origin_check_catches_external_urls() -> None:
    assert not is_same_origin("https://cdn.example/chart.js")
    assert not is_same_origin("//cdn.example/chart.js")
    assert is_same_origin("/static/vendor/chartjs/chart.umd.js")
    assert is_same_origin("?page=2")


def test_the_overview_page_uses_the_vendored_chart_library(alice_browser: Client, acme: Organization) -> None:
    html = alice_browser.get("/dashboard/").content.decode()
    assert '<script src="/static/vendor/chartjs/chart.umd.js" defer></script>' in html
    assert '<script src="/static/vendor/htmx/htmx.min.js" defer></script>' in html
    assert '<main id="main"' in html
    assert '<nav aria-label="Dashboard"' in html


@pytest.mark.parametrize(
    ("path", "marker"),
    [
        ("/static/vendor/chartjs/chart.umd.js", b"Chart.js v4.4.7"),
        ("/static/vendor/htmx/htmx.min.js", b"htmx"),
        ("/static/dashboard/dashboard.css", b":focus-visible"),
        ("/static/dashboard/dashboard.js", b"use strict"),
    ],
)
def test_static_files_are_served_by_whitenoise(client: Client, path: str, marker: bytes) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert marker in b"".join(response.streaming_content)  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", PAGES)
def test_pages_make_a_bounded_number_of_queries(
    alice_browser: Client, busy_acme: Organization, path: str, django_assert_max_num_queries
) -> None:
    alice_browser.get(path)  # warm: the session and content types
    # session, user, memberships (the switcher, LIMITed), then the page's own
    # three: balance + two grouped rollup reads, or key count + page + its secrets.
    with django_assert_max_num_queries(6):
        response = alice_browser.get(path)
    assert response.status_code == 200


def test_the_second_page_of_keys_makes_as_few_queries(
    alice_browser: Client, busy_acme: Organization, django_assert_max_num_queries
) -> None:
    with django_assert_max_num_queries(6):
        response = alice_browser.get("/dashboard/keys?page=3")
    assert response.content.decode().count('<tr id="key-') == 10


def test_collectstatic_writes_hashed_compressed_copies_for_production(tmp_path, settings) -> None:
    """What production serves: the manifest storage must accept the vendored files
    (Chart.js names its source map, which must exist) and whitenoise compresses them."""
    settings.STATIC_ROOT = tmp_path
    # Only our own files (oneflow/static): compressing every app's would take half a minute.
    settings.STATICFILES_FINDERS = ["django.contrib.staticfiles.finders.FileSystemFinder"]
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    call_command("collectstatic", interactive=False, verbosity=0)

    manifest = json.loads((tmp_path / "staticfiles.json").read_text())["paths"]
    for name in ("vendor/chartjs/chart.umd.js", "vendor/htmx/htmx.min.js", "dashboard/dashboard.css"):
        hashed = tmp_path / manifest[name]
        assert hashed.name != name.rsplit("/", 1)[-1]
        assert hashed.with_name(hashed.name + ".gz").exists()
        assert hashed.with_name(hashed.name + ".br").exists()
