"""Operator admin: every page opens; key actions go through the services; no hash is shown."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Model
from django.test import Client
from django.urls import reverse

from accounts import selectors, services
from accounts.models import ApiKey, ApiKeySecret, Organization, User
from providers.services import catalog_seed_demo


def registered_models() -> list[type[Model]]:
    return list(admin.site._registry)


def test_every_changelist_add_and_change_page_opens(
    as_operator: Client, acme: Organization, acme_key: services.IssuedSecret
) -> None:
    catalog_seed_demo()
    for model in registered_models():
        meta = model._meta
        changelist = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        assert as_operator.get(changelist).status_code == 200, changelist
        assert as_operator.get(changelist, {"q": "acme"}).status_code == 200, changelist
        model_admin = admin.site._registry[model]
        if model_admin.has_add_permission(as_operator.get(changelist).wsgi_request):
            add = reverse(f"admin:{meta.app_label}_{meta.model_name}_add")
            assert as_operator.get(add).status_code == 200, add
        instance = model._default_manager.first()
        if instance is not None:
            change = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[instance.pk])
            assert as_operator.get(change).status_code == 200, change


def test_the_key_pages_never_show_a_hash_or_secret(as_operator: Client, acme_key: services.IssuedSecret) -> None:
    secret = ApiKeySecret.objects.get(pk=acme_key.secret.pk)
    for url in (
        reverse("admin:accounts_apikey_changelist"),
        reverse("admin:accounts_apikey_change", args=[acme_key.key.pk]),
    ):
        page = as_operator.get(url).content.decode()
        assert secret.secret_hash not in page
        assert acme_key.raw not in page
    change_page = as_operator.get(reverse("admin:accounts_apikey_change", args=[acme_key.key.pk])).content.decode()
    assert secret.display_prefix in change_page


def test_admin_actions_rotate_and_revoke_through_the_services(
    as_operator: Client, acme_key: services.IssuedSecret
) -> None:
    changelist = reverse("admin:accounts_apikey_changelist")
    as_operator.post(changelist, {"action": "rotate_keys", "_selected_action": [acme_key.key.pk]})
    assert ApiKeySecret.objects.filter(key=acme_key.key).count() == 2
    assert selectors.api_key_authenticate(raw=acme_key.raw) is not None, "the old secret is in its grace period"
    assert services.api_key_reveal(key=acme_key.key) is not None

    as_operator.post(changelist, {"action": "revoke_keys", "_selected_action": [acme_key.key.pk]})
    assert ApiKey.objects.get(pk=acme_key.key.pk).status == ApiKey.Status.REVOKED
    assert selectors.api_key_authenticate(raw=acme_key.raw) is None


def test_non_staff_users_cannot_open_the_admin(client: Client, alice: User) -> None:
    client.force_login(alice)
    response = client.get(reverse("admin:accounts_apikey_changelist"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
