"""The dashboard's API keys pages: list and create, edit, rotate, reveal, revoke.

Everyone in the organization reads the list; owners and admins change keys (the
REST API's rule). A secret is shown on one response only, marked ``no-store``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts import keys as key_format
from accounts import selectors, services
from accounts.forms import KeyCreateForm, KeyEditForm
from accounts.models import ApiKey, ApiKeySecret
from accounts.views import Dashboard, dashboard_view
from oneflow.lib.errors import ServiceError

SESSION_NEW_SECRET = "dashboard_new_secret"  # noqa: S105 - a session key, not a secret


@dataclass(frozen=True)
class KeyRow:
    """One key as the list (and its edit page) shows it."""

    key: ApiKey
    status: str  # active, expired or revoked
    current: ApiKeySecret | None  # the secret issued last
    in_grace: list[ApiKeySecret]  # older secrets that still work, until their valid_until
    reveal_pending: bool  # see ApiKey.reveal_pending


def _key_row(key: ApiKey, now: datetime) -> KeyRow:
    live = [s for s in getattr(key, "live_secrets", []) if s.is_valid_at(now)]
    status = key.status
    if status == ApiKey.Status.ACTIVE and not key.is_usable_at(now):
        status = "expired"
    return KeyRow(
        key=key,
        status=status,
        current=next((s for s in live if s.valid_until is None), None),
        in_grace=[s for s in live if s.valid_until is not None],
        reveal_pending=key.reveal_pending(live),
    )


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    return response


# --- The list, and creating a key -------------------------------------------------------


def _keys_page(request: HttpRequest, dashboard: Dashboard) -> Page[ApiKey]:
    keys = selectors.api_keys_of(organization=dashboard.membership.organization)
    paginator = Paginator(keys, settings.DASHBOARD_KEYS_PER_PAGE)
    return paginator.get_page(request.GET.get("page"))


def _render_keys(
    request: HttpRequest, dashboard: Dashboard, form: KeyCreateForm | None = None, status: int = 200
) -> HttpResponse:
    page = _keys_page(request, dashboard)
    now = timezone.now()
    context = {
        "page": page,
        "rows": [_key_row(key, now) for key in page.object_list],
        "form": form or KeyCreateForm(),
        "can_manage": dashboard.membership.can_manage,
        # Popped: the secret is shown on this one response and never again.
        "new_secret": request.session.pop(SESSION_NEW_SECRET, None),
    }
    return _no_store(dashboard.render(request, "dashboard/keys.html", context, status=status))


def _hold_secret_for_display(request: HttpRequest, issued: services.IssuedSecret, action: str) -> None:
    request.session[SESSION_NEW_SECRET] = {"name": issued.key.name, "raw": issued.raw, "action": action}


@dashboard_view
def keys(request: HttpRequest, dashboard: Dashboard) -> HttpResponseBase:
    if request.method != "POST":
        return _render_keys(request, dashboard)
    dashboard.require_manager("API keys")
    form = KeyCreateForm(request.POST)
    if form.is_valid():
        try:
            issued = services.api_key_create(
                organization=dashboard.membership.organization, created_by=dashboard.user, **form.cleaned_data
            )
        except ServiceError as exc:
            form.add_service_error(exc)
        else:
            _hold_secret_for_display(request, issued, "created")
            return redirect("dashboard-keys")
    return _render_keys(request, dashboard, form, status=400)


# --- Editing a key ------------------------------------------------------------------------


def _managed_key(dashboard: Dashboard, key_id: str) -> ApiKey:
    """A key of the current organization that this person may change: 403 for members,
    404 for a key elsewhere (checked in that order, as the REST API does)."""
    dashboard.require_manager("API keys")
    return selectors.api_key_get(organization=dashboard.membership.organization, public_id=key_id)


@dashboard_view
def key_edit(request: HttpRequest, dashboard: Dashboard, key_id: str) -> HttpResponseBase:
    key = _managed_key(dashboard, key_id)
    form = KeyEditForm.for_key(key, request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            services.api_key_update(key=key, **form.to_fields())
        except ServiceError as exc:
            form.add_service_error(exc)
        else:
            messages.success(request, f"Key “{form.cleaned_data['name']}” is saved.")
            return redirect("dashboard-key-edit", key_id=key.public_id)
    context = {"row": _key_row(key, timezone.now()), "form": form}
    return dashboard.render(request, "dashboard/key_edit.html", context, status=400 if form.errors else 200)


@require_POST
@dashboard_view
def key_reveal(request: HttpRequest, dashboard: Dashboard, key_id: str) -> HttpResponseBase:
    """The secret a scheduled rotation issued, on this response only (KeyRevealApi's rules)."""
    key = _managed_key(dashboard, key_id)
    raw = services.api_key_reveal(key=key)
    prefix = key_format.raw_key_prefix(raw) if raw else None
    secret = next((s for s in getattr(key, "live_secrets", []) if s.prefix == prefix), None)
    context = {"key": key, "raw": raw, "secret": secret, "now": timezone.now()}
    response = dashboard.render(request, "dashboard/key_reveal.html", context, status=200 if raw else 404)
    return _no_store(response)


# --- Rotating and revoking ----------------------------------------------------------------


def _confirm(request: HttpRequest, dashboard: Dashboard, key: ApiKey, action: str) -> HttpResponse:
    now = timezone.now()
    context = {"key": key, "action": action, "now": now, "grace_end": now + key.effective_grace_period()}
    return dashboard.render(request, "dashboard/key_confirm.html", context)


@dashboard_view
def key_rotate(request: HttpRequest, dashboard: Dashboard, key_id: str) -> HttpResponseBase:
    key = _managed_key(dashboard, key_id)
    if request.method != "POST":
        return _confirm(request, dashboard, key, "rotate")
    try:
        issued = services.api_key_rotate(key=key)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        _hold_secret_for_display(request, issued, "rotated")
    return redirect("dashboard-keys")


@dashboard_view
def key_revoke(request: HttpRequest, dashboard: Dashboard, key_id: str) -> HttpResponseBase:
    key = _managed_key(dashboard, key_id)
    if request.method != "POST":
        return _confirm(request, dashboard, key, "revoke")
    services.api_key_revoke(key=key)
    messages.success(request, f"Key “{key.name}” is revoked; its secrets no longer work.")
    return redirect("dashboard-keys")
