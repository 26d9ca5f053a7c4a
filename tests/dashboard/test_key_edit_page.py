"""Editing an API key in the dashboard (name, expiry, models, limits, rotation policy),
and revealing the secret a scheduled rotation issued.

What the page saves is checked where the gateway reads it: the key's credentials.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts import selectors, services
from accounts.models import ApiKey, ApiKeySecret, Organization, User
from oneflow.lib import config_version, redis

RAW_SECRET = re.compile(r"of_live_[A-Za-z0-9]{12}_[A-Za-z0-9]{32}")


def edit_url(key: ApiKey) -> str:
    return f"/dashboard/keys/{key.public_id}/edit"


def reveal_url(key: ApiKey) -> str:
    return f"/dashboard/keys/{key.public_id}/reveal"


class _Form(HTMLParser):
    """The named controls of the form posting to ``action``, with the values a browser sends."""

    def __init__(self, action: str) -> None:
        super().__init__(convert_charrefs=True)
        self.action = action
        self.inside = False
        self.textarea: str | None = None
        self.values: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "form":
            self.inside = named.get("action") == self.action
        elif self.inside and tag == "input" and named.get("name"):
            self.values[str(named["name"])] = named.get("value") or ""
        elif self.inside and tag == "textarea":
            self.textarea = str(named["name"])
            self.values[self.textarea] = ""

    def handle_data(self, data: str) -> None:
        if self.textarea:
            self.values[self.textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self.textarea = None
        elif tag == "form":
            self.inside = False


def form_values(html: str, action: str) -> dict[str, str]:
    parser = _Form(action)
    parser.feed(html)
    assert parser.values, f"no form posts to {action}"
    return parser.values


def submit(browser: Client, key: ApiKey, **changes: str) -> Any:
    """Opens the edit page, changes some fields as a person would, and saves."""
    page = browser.get(edit_url(key))
    assert page.status_code == 200
    values = form_values(page.content.decode(), edit_url(key))
    values.update(changes)
    return browser.post(edit_url(key), values)


def credentials(issued: services.IssuedSecret) -> selectors.KeyCredentials:
    found = selectors.api_key_credentials(prefix=issued.secret.prefix)
    assert found is not None
    return found


def stored(key: ApiKey) -> dict[str, Any]:
    """Every field a person can edit, as stored."""
    row = ApiKey.objects.get(pk=key.pk)
    fields = ["name", "expires_at", "allowed_models", "grace_period", "rotation_interval_days", "next_rotation_at"]
    fields += KEY_LIMITS
    return {name: getattr(row, name) for name in fields}


KEY_LIMITS = ["limit_rpm", "limit_rph", "limit_input_tpm", "limit_output_tpm", "limit_concurrency"]
# What the ``ci`` key stores when created with only a name.
DEFAULTS: dict[str, Any] = {
    "name": "ci",
    "expires_at": None,
    "allowed_models": [],
    "grace_period": None,
    "rotation_interval_days": None,
    "next_rotation_at": None,
    **dict.fromkeys(KEY_LIMITS),
}


# --- Each field reaches the gateway -------------------------------------------------------

EDITS: list[tuple[str, str, Callable[[selectors.KeyCredentials], Any], Any]] = [
    ("name", "backend-prod", lambda c: c.key_name, "backend-prod"),
    (
        "allowed_models",
        "gpt-4o-mini\r\ntext-embedding-3-small, gpt-4o-mini\r\n",
        lambda c: c.allowed_models,
        ("gpt-4o-mini", "text-embedding-3-small"),
    ),
    ("limit_rpm", "60", lambda c: c.key_limits.rpm, 60),
    ("limit_rph", "1000", lambda c: c.key_limits.rph, 1000),
    ("limit_input_tpm", "50000", lambda c: c.key_limits.input_tpm, 50_000),
    ("limit_output_tpm", "20000", lambda c: c.key_limits.output_tpm, 20_000),
    ("limit_concurrency", "4", lambda c: c.key_limits.concurrency, 4),
]


@pytest.mark.parametrize("edit", EDITS, ids=[e[0] for e in EDITS])
def test_editing_a_field_changes_what_the_gateway_sees(
    alice_browser: Client,
    acme_key: services.IssuedSecret,
    django_capture_on_commit_callbacks: Any,
    edit: tuple[str, str, Callable[[selectors.KeyCredentials], Any], Any],
) -> None:
    field, submitted, seen, expected = edit
    assert seen(credentials(acme_key)) != expected
    before = redis.sync_client().get(config_version.KEY)

    with django_capture_on_commit_callbacks(execute=True):
        response = submit(alice_browser, acme_key.key, **{field: submitted})

    assert response.status_code == 302
    assert response["Location"] == edit_url(acme_key.key)
    assert seen(credentials(acme_key)) == expected
    # Gateways hold credentials in process: the version bump makes them re-read.
    assert redis.sync_client().get(config_version.KEY) != before
    assert {**stored(acme_key.key), field: None} == {**DEFAULTS, field: None}, "only that field changed"


def test_editing_the_expiry_stops_the_key_then(alice_browser: Client, acme_key: services.IssuedSecret) -> None:
    expires = (timezone.now() + timedelta(days=3)).replace(second=0, microsecond=0)

    response = submit(alice_browser, acme_key.key, expires_at=expires.strftime("%Y-%m-%dT%H:%M"))

    assert response.status_code == 302
    seen = credentials(acme_key)
    assert seen.expires_at == expires
    assert seen.usable_at(expires - timedelta(seconds=1))
    assert not seen.usable_at(expires)


def test_emptying_fields_clears_them(alice_browser: Client, acme_key: services.IssuedSecret) -> None:
    services.api_key_update(
        key=acme_key.key,
        expires_at=timezone.now() + timedelta(days=1),
        allowed_models=["gpt-4o-mini"],
        rotation_interval_days=7,
        grace_period=timedelta(hours=1),
        **dict.fromkeys(KEY_LIMITS, 5),
    )
    blank = dict.fromkeys(
        ["expires_at", "allowed_models", "rotation_interval_days", "grace_period_hours", *KEY_LIMITS], ""
    )

    assert submit(alice_browser, acme_key.key, **blank).status_code == 302

    seen = credentials(acme_key)
    assert (seen.expires_at, seen.allowed_models) == (None, ())
    assert seen.key_limits == selectors.RateLimits()
    assert stored(acme_key.key) == DEFAULTS


def test_the_rotation_policy_schedules_rotations_and_sets_the_grace(
    alice_browser: Client, acme_key: services.IssuedSecret
) -> None:
    response = submit(alice_browser, acme_key.key, rotation_interval_days="30", grace_period_hours="2.5")
    assert response.status_code == 302

    key = ApiKey.objects.select_related("organization").get(pk=acme_key.key.pk)
    assert key.next_rotation_at == acme_key.secret.created_at + timedelta(days=30)
    assert key.effective_grace_period() == timedelta(hours=2, minutes=30)
    page = alice_browser.get(edit_url(key)).content.decode()
    assert key.next_rotation_at.strftime("%Y-%m-%d %H:%M") in page

    # The scheduled job honours both: it rotates when due, and the old secret lives 2.5 hours.
    due = key.next_rotation_at
    assert services.api_keys_rotate_due(now=due) == 1
    old = credentials(acme_key)
    assert old.valid_until == due + timedelta(hours=2, minutes=30)


def test_saving_the_form_unchanged_keeps_values_the_form_rounds(
    alice_browser: Client, acme_key: services.IssuedSecret
) -> None:
    # Set over the REST API to the second: the form shows minutes and hundredths of hours.
    services.api_key_update(
        key=acme_key.key,
        expires_at=timezone.now() + timedelta(days=2, seconds=17),
        grace_period=timedelta(seconds=100),
    )
    before = stored(acme_key.key)

    assert submit(alice_browser, acme_key.key).status_code == 302

    assert stored(acme_key.key) == before


# --- Bad input is refused, field by field ----------------------------------------------------

BAD_INPUT = [
    ("name", "", "This field is required."),
    ("name", "x" * 101, "at most 100 characters"),
    ("expires_at", "2001-01-01T00:00", "must be in the future"),
    ("expires_at", "next tuesday", "Enter a valid date/time."),
    ("allowed_models", "\n".join(f"model-{n}" for n in range(501)), "at most 500 models"),
    ("allowed_models", "gpt-4o\n" + "m" * 201, "at most 200 characters"),
    ("limit_rpm", "0", "A limit is at least 1"),
    ("limit_rph", "-3", "A limit is at least 1"),
    ("limit_input_tpm", "lots", "Enter a whole number."),
    ("limit_output_tpm", "3000000000", "less than or equal to 2147483647"),
    ("limit_concurrency", "1.5", "Enter a whole number."),
    ("rotation_interval_days", "0", "greater than or equal to 1"),
    ("rotation_interval_days", "3651", "less than or equal to 3650"),
    ("grace_period_hours", "-1", "greater than or equal to 0"),
    ("grace_period_hours", "soon", "Enter a number."),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD_INPUT)
def test_bad_input_is_refused_with_the_field_named_and_nothing_changes(
    alice_browser: Client, acme_key: services.IssuedSecret, field: str, value: str, message: str
) -> None:
    before = stored(acme_key.key)
    other = "limit_concurrency" if field != "limit_concurrency" else "limit_rpm"

    # Alongside a valid change, which must not be saved either.
    response = submit(alice_browser, acme_key.key, **{field: value, other: "9"})

    assert response.status_code == 400
    page = response.content.decode()
    error = re.search(rf'<p class="error" id="id_{field}_error">([^<]*)</p>', page)
    assert error is not None, page
    assert message in error.group(1).replace("&#x27;", "'")
    control = re.search(rf'<(?:input|textarea)[^>]*name="{field}"[^>]*>', page)
    assert control is not None
    assert 'aria-invalid="true"' in control.group(0)
    assert f"id_{field}_error" in control.group(0)  # aria-describedby: read with the field
    summary = re.search(r'<div class="alert error" role="alert" id="form-problems">(.*?)</div>', page, re.S)
    assert summary is not None
    assert f'href="#id_{field}"' in summary.group(1)
    assert stored(acme_key.key) == before


REST_REFUSES = [
    ({"limits": {"rpm": 0}}, {"limit_rpm": "0"}),
    ({"rotation_interval_days": 3651}, {"rotation_interval_days": "3651"}),
    ({"grace_period_seconds": -1}, {"grace_period_hours": "-1"}),
    ({"expires_at": "2001-01-01T00:00:00Z"}, {"expires_at": "2001-01-01T00:00"}),
    ({"allowed_models": ["m" * 201]}, {"allowed_models": "m" * 201}),
    ({"allowed_models": [f"m{n}" for n in range(501)]}, {"allowed_models": ",".join(f"m{n}" for n in range(501))}),
    ({"name": ""}, {"name": ""}),
]


@pytest.mark.parametrize("refused", REST_REFUSES)
def test_the_dashboard_refuses_what_the_rest_api_refuses(
    as_alice: Any,
    alice_browser: Client,
    acme: Organization,
    acme_key: services.IssuedSecret,
    refused: tuple[dict[str, Any], dict[str, str]],
) -> None:
    rest, dashboard = refused
    rest_url = f"/api/organizations/{acme.pk}/keys/{acme_key.key.public_id}"
    assert as_alice.patch(rest_url, rest, format="json").status_code == 400
    assert submit(alice_browser, acme_key.key, **dashboard).status_code == 400


# --- Who may edit and reveal ---------------------------------------------------------------


def test_a_member_may_not_edit_or_reveal(
    bob_browser: Client, alice_browser: Client, acme_key: services.IssuedSecret
) -> None:
    scheduled = services.api_key_rotate(key=acme_key.key, sealed=True)
    before = stored(acme_key.key)
    values = form_values(alice_browser.get(edit_url(acme_key.key)).content.decode(), edit_url(acme_key.key))

    assert bob_browser.get(edit_url(acme_key.key)).status_code == 403
    assert bob_browser.post(edit_url(acme_key.key), {**values, "name": "bobs"}).status_code == 403
    assert bob_browser.post(reveal_url(acme_key.key)).status_code == 403

    assert stored(acme_key.key) == before
    assert ApiKeySecret.objects.get(pk=scheduled.secret.pk).sealed_secret != "", "still waiting for its owner"
    listed = bob_browser.get("/dashboard/keys").content.decode()
    assert "not revealed yet" in listed
    assert edit_url(acme_key.key) not in listed, "neither an edit link nor a reveal link"


def test_another_organizations_key_is_not_found(alice_browser: Client, acme: Organization, carol: User) -> None:
    initech = services.organization_create(name="Initech", owner=carol)
    theirs = services.api_key_create(organization=initech, name="theirs", created_by=carol)
    services.api_key_rotate(key=theirs.key, sealed=True)

    assert alice_browser.get(edit_url(theirs.key)).status_code == 404
    assert alice_browser.post(edit_url(theirs.key), {"name": "mine now"}).status_code == 404
    assert alice_browser.post(reveal_url(theirs.key)).status_code == 404
    assert ApiKey.objects.get(pk=theirs.key.pk).name == "theirs"
    assert services.api_key_reveal(key=theirs.key) is not None, "the sealed secret was not given away"


def test_signed_out_people_are_sent_to_sign_in(client: Client, acme_key: services.IssuedSecret) -> None:
    for response in (client.get(edit_url(acme_key.key)), client.post(reveal_url(acme_key.key))):
        assert response.status_code == 302
        assert response["Location"].startswith("/signin")


# --- Revealing a scheduled rotation's secret --------------------------------------------------


def test_the_secret_of_a_scheduled_rotation_is_revealed_once(
    alice_browser: Client, acme: Organization, alice: User
) -> None:
    issued = services.api_key_create(organization=acme, name="rotating", created_by=alice, rotation_interval_days=1)
    assert services.api_keys_rotate_due(now=timezone.now() + timedelta(days=1)) == 1
    listed = alice_browser.get("/dashboard/keys").content.decode()
    assert "not revealed yet" in listed
    assert f'href="{edit_url(issued.key)}#reveal"' in listed
    assert f'action="{reveal_url(issued.key)}"' in alice_browser.get(edit_url(issued.key)).content.decode()

    response = alice_browser.post(reveal_url(issued.key))

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    shown = RAW_SECRET.findall(response.content.decode())
    assert len(shown) == 1
    current = ApiKeySecret.objects.get(key=issued.key, valid_until__isnull=True)
    assert current.rotation == 1
    authenticated = selectors.api_key_authenticate(raw=shown[0], now=current.created_at)
    assert authenticated is not None
    assert authenticated.secret_id == current.pk

    again = alice_browser.post(reveal_url(issued.key))
    assert again.status_code == 404
    assert again["Cache-Control"] == "no-store"
    assert RAW_SECRET.search(again.content.decode()) is None
    assert "No secret to reveal" in again.content.decode()
    assert "not revealed yet" not in alice_browser.get("/dashboard/keys").content.decode()
    assert reveal_url(issued.key) not in alice_browser.get(edit_url(issued.key)).content.decode()


def test_a_manual_rotation_has_nothing_to_reveal(alice_browser: Client, acme_key: services.IssuedSecret) -> None:
    services.api_key_rotate(key=acme_key.key)
    assert reveal_url(acme_key.key) not in alice_browser.get(edit_url(acme_key.key)).content.decode()

    response = alice_browser.post(reveal_url(acme_key.key))

    assert response.status_code == 404
    assert RAW_SECRET.search(response.content.decode()) is None
    assert "No secret to reveal" in response.content.decode()


def test_a_playground_key_does_not_offer_its_sealed_secret(
    alice_browser: Client, acme: Organization, alice: User
) -> None:
    services.playground_key_for(organization=acme, user=alice)
    key = ApiKey.objects.get(organization=acme, purpose=ApiKey.Purpose.PLAYGROUND)

    assert "not revealed yet" not in alice_browser.get("/dashboard/keys").content.decode()
    assert reveal_url(key) not in alice_browser.get(edit_url(key)).content.decode()


def test_reveal_only_answers_a_post(alice_browser: Client, acme_key: services.IssuedSecret) -> None:
    services.api_key_rotate(key=acme_key.key, sealed=True)
    assert alice_browser.get(reveal_url(acme_key.key)).status_code == 405
    assert services.api_key_reveal(key=acme_key.key) is not None


# --- The page itself --------------------------------------------------------------------------


def test_the_page_shows_last_use_and_secrets_and_the_list_links_to_it(
    alice_browser: Client, acme: Organization, acme_key: services.IssuedSecret, alice: User
) -> None:
    ApiKey.objects.filter(pk=acme_key.key.pk).update(last_used_at=timezone.now() - timedelta(hours=5))
    services.api_key_rotate(key=acme_key.key)
    revoked = services.api_key_create(organization=acme, name="old", created_by=alice).key
    services.api_key_revoke(key=revoked)

    listed = alice_browser.get("/dashboard/keys").content.decode()
    assert f'href="{edit_url(acme_key.key)}"' in listed
    assert f'href="{edit_url(revoked)}"' not in listed, "a revoked key has nothing left to edit"

    page = alice_browser.get(edit_url(acme_key.key)).content.decode()
    assert re.search(r'id="key-last-used"><time [^>]*>5\xa0hours ago</time>', page)
    old = ApiKeySecret.objects.get(key=acme_key.key, rotation=0)
    assert f"{old.display_prefix}…</span> works until" in page


def test_every_control_has_a_label_and_its_help_is_tied_to_it(
    alice_browser: Client, acme_key: services.IssuedSecret
) -> None:
    page = alice_browser.get(edit_url(acme_key.key)).content.decode()
    form = page[page.index(f'action="{edit_url(acme_key.key)}"') :]
    form = form[: form.index("</form>")]
    controls = re.findall(r"<(?:input|textarea|select)\b[^>]*>", form)
    visible = [c for c in controls if 'type="hidden"' not in c]
    assert len(visible) == 10
    for control in visible:
        control_id = re.search(r'id="([^"]+)"', control)
        assert control_id is not None, control
        assert f'<label for="{control_id.group(1)}">' in form, control
        described = re.search(r'aria-describedby="([^"]+)"', control)
        for target in described.group(1).split() if described else []:
            assert f'id="{target}"' in form, (control, target)
    described_ids = set(re.findall(r'aria-describedby="[^"]*_helptext"[^>]*\bid="([^"]+)"', form))
    assert {"id_expires_at", "id_allowed_models", "id_rotation_interval_days", "id_grace_period_hours"} <= described_ids
    assert '<fieldset aria-describedby="limits-help">' in form
    assert "<legend>Limits of this key</legend>" in form


def test_the_page_reads_a_bounded_number_of_rows(
    alice_browser: Client, acme_key: services.IssuedSecret, django_assert_max_num_queries: Any
) -> None:
    for _ in range(20):  # secrets in their grace: prefetched, not read one by one
        services.api_key_rotate(key=acme_key.key)
    services.api_key_rotate(key=acme_key.key, sealed=True)
    alice_browser.get(edit_url(acme_key.key))  # the session's first use

    with django_assert_max_num_queries(6):
        page = alice_browser.get(edit_url(acme_key.key))
    assert page.status_code == 200
    assert page.content.decode().count("works until") == 21
