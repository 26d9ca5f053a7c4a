"""Operator admin for people, tenants, plans and keys. Secrets are never shown:
keys list their prefixes, and rotate/revoke go through the services. Edits of
what gateways cache (limits, allowed models, plans) advance the configuration
version, so they take effect on the next request.

Users, organizations, memberships and keys grow with the customers (100 000
keys and more): their lists count a bounded number of rows, and other pages
filter by one organization, key or user through the ``*_filter`` classes here,
never by listing them all.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.validators import MaxValueValidator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from accounts import keys, services
from accounts.models import ApiKey, ApiKeySecret, Membership, Organization, Plan, User
from audit.admin import AuditedAdmin
from audit.models import AuditEntry
from audit.services import SECRET_MASK, audit_record
from oneflow.lib.admin import LargeTableAdmin, RecentFilter, RelatedIdFilter, related_id_filter


def organization_filter(path: str = "organization") -> type[RelatedIdFilter]:
    """Filters a list by one organization (``?organization=<id>``), e.g. from the organization's page."""
    return related_id_filter(Organization, path)


def api_key_filter(path: str = "api_key") -> type[RelatedIdFilter]:
    """Filters a list by one API key (``?apikey=<id>``), e.g. from a row's key link."""
    return related_id_filter(ApiKey, path)


def changelist_links(links: list[tuple[str, str, dict[str, Any]]]) -> str:
    """Links to admin lists narrowed to one row: (label, changelist URL name, query)."""
    return format_html_join(
        " · ", '<a href="{}?{}">{}</a>', ((reverse(name), urlencode(query), label) for label, name, query in links)
    )


def filter_link(label: object, **query: Any) -> str:
    """A link to the same list narrowed by ``query``: a row's organization or key becomes its filter."""
    return format_html('<a href="?{}">{}</a>', urlencode(query), label)


@admin.register(User)
class UserAdmin(LargeTableAdmin, AuditedAdmin, DjangoUserAdmin):
    ordering = ("email",)  # the unique index on email serves it
    list_display = ("email", "full_name", "is_staff", "is_active", "date_joined", "last_login")
    list_filter = ("is_staff", "is_superuser", "is_active")
    search_fields = ("email", "full_name")
    readonly_fields = ("date_joined", "last_login")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("full_name",)}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and "is_active" in form.changed_data and not obj.is_active:
            # Deactivating ends the person's tokens for good, also after a later reactivation.
            services.user_tokens_end(user=obj)

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:  # noqa: A002 - the URL's name
        response = super().user_change_password(request, id, form_url)
        if request.method == "POST" and response.status_code == 302:  # set, and sent back to the user's page
            user = self.get_object(request, unquote(id))
            changes = {"password": SECRET_MASK}
            audit_record(actor=request.user, action=AuditEntry.Action.PASSWORD_CHANGE, obj=user, changes=changes)
        return response


class GatewayConfigForm(forms.ModelForm):
    """Limits, rotation intervals, grace periods and allowed models bounded as the
    REST API and the dashboard bound them (accounts.keys): the columns would take
    more, which the gateway's arithmetic or a rotation's deadline could not."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            if isinstance(field, forms.IntegerField):
                bound = keys.ROTATION_INTERVAL_MAX_DAYS if name == "rotation_interval_days" else keys.LIMIT_MAX
                field.max_value = bound
                field.validators.append(MaxValueValidator(bound))
                field.widget.attrs["max"] = bound
            elif isinstance(field, forms.DurationField):
                field.validators.append(keys.validate_grace_period)
            elif name == "allowed_models":
                field.validators.append(keys.validate_allowed_models)


class GatewayConfigAdmin(LargeTableAdmin, AuditedAdmin):
    """Plans, organizations and keys: bounded as the API bounds them. Gateways see a
    change at once (their models advance the config version on every write)."""

    form = GatewayConfigForm


_LIMITS_HELP = (
    "Empty fields take the plan's value; empty request limits on the plan take the platform default "
    "(RATE_LIMIT_DEFAULT_RPM / RATE_LIMIT_DEFAULT_RPH). Empty token and concurrency limits mean none."
)


@admin.register(Plan)
class PlanAdmin(GatewayConfigAdmin):
    list_display = ("name", "rpm", "rph", "input_tpm", "output_tpm", "concurrency", "created_at")
    search_fields = ("name",)
    readonly_fields = ("created_at",)
    fieldsets = (
        (None, {"fields": ("name", "created_at")}),
        (
            "Limits",
            {
                "fields": (("rpm", "rph"), ("input_tpm", "output_tpm"), "concurrency"),
                "description": "Empty request limits mean the platform default; empty token and concurrency "
                "limits mean none.",
            },
        ),
    )


@admin.register(Organization)
class OrganizationAdmin(GatewayConfigAdmin):
    list_display = ("name", "slug", "plan", "limit_rpm", "limit_rph", "api_key_grace_period", "created_at")
    list_filter = ("plan",)  # plans are few
    search_fields = ("name", "slug")
    list_select_related = ("plan",)
    autocomplete_fields = ("plan",)
    ordering = ("-pk",)
    prepopulated_fields: ClassVar = {"slug": ("name",)}
    readonly_fields = ("created_at", "related")
    fieldsets = (
        (None, {"fields": ("name", "slug", "time_zone", "api_key_grace_period", "created_at", "related")}),
        (
            "Rate limits",
            {
                "fields": (
                    "plan",
                    ("limit_rpm", "limit_rph"),
                    ("limit_input_tpm", "limit_output_tpm"),
                    "limit_concurrency",
                ),
                "description": _LIMITS_HELP,
            },
        ),
    )

    @admin.display(description="see also")
    def related(self, organization: Organization) -> str:
        # Links, not inlines: an organization may have thousands of keys or members.
        if organization.pk is None:
            return "-"
        query = {"organization": organization.pk}
        return changelist_links(
            [
                ("Members", "admin:accounts_membership_changelist", query),
                ("API keys", "admin:accounts_apikey_changelist", query),
            ]
        )


@admin.register(Membership)
class MembershipAdmin(LargeTableAdmin, AuditedAdmin):
    list_display = ("user", "organization", "role", "created_at")
    list_filter = ("role", organization_filter(), related_id_filter(User, "user"))
    search_fields = ("user__email", "organization__name", "organization__slug")
    list_select_related = ("user", "organization")
    autocomplete_fields = ("user", "organization")
    ordering = ("-pk",)


class ApiKeySecretInline(admin.TabularInline):
    """The secrets of a key: prefixes and dates only, never the hash."""

    model = ApiKeySecret
    fields = ("rotation", "display_prefix", "created_at", "valid_until", "revoked_at", "last_used_at")
    readonly_fields = fields
    ordering = ("-rotation",)
    extra = 0
    can_delete = False
    max_num = 0

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(GatewayConfigAdmin):
    list_display = ("name", "public_id", "organization_link", "status", "expires_at", "last_used_at", "created_at")
    list_filter = ("status", "purpose", RecentFilter, organization_filter())
    # Exact id or a name's start; a secret's prefix is looked up by get_search_results.
    search_fields = ("public_id__exact", "^name")
    search_help_text = "A key id (key_…), a secret's prefix (of_live_…), or the start of a key's name."
    list_select_related = ("organization",)
    autocomplete_fields = ("organization", "created_by")
    ordering = ("-pk",)  # newest first, from the primary key's index
    sortable_by = ("name", "public_id", "status")
    readonly_fields = (
        "public_id",
        "status",
        "purpose",
        "created_at",
        "revoked_at",
        "last_used_at",
        "next_rotation_at",
    )
    fields = (
        "public_id",
        "organization",
        "name",
        "status",
        "purpose",
        "created_by",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
        "allowed_models",
        ("limit_rpm", "limit_rph", "limit_input_tpm", "limit_output_tpm", "limit_concurrency"),
        "grace_period",
        ("rotation_interval_days", "next_rotation_at"),
    )
    inlines = (ApiKeySecretInline,)
    actions = ("rotate_keys", "revoke_keys")

    @admin.display(description="organization")
    def organization_link(self, key: ApiKey) -> str:
        return filter_link(key.organization, organization=key.organization_id)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[ApiKey], search_term: str
    ) -> tuple[QuerySet[ApiKey], bool]:
        term = search_term.strip()
        if term.startswith(keys.PREFIX):
            # A secret's visible prefix (or a whole secret): one probe of the unique prefix index.
            prefix = term.removeprefix(keys.PREFIX)[: keys.PREFIX_LENGTH]
            return queryset.filter(pk__in=ApiKeySecret.objects.filter(prefix=prefix).values("key_id")), False
        return super().get_search_results(request, queryset, search_term)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A key's secret is shown once, to the person who asked for it: keys
        # are created through the API or the dashboard, which can show it.
        return False

    @admin.action(description="Rotate: issue a new secret (sealed for the owner to reveal), old one in grace")
    def rotate_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        rotated = 0
        now = timezone.now()
        for key in queryset.select_related("organization"):
            if key.is_usable_at(now):
                issued = services.api_key_rotate(key=key, sealed=True)
                rotation = {"rotation": {"before": issued.secret.rotation - 1, "after": issued.secret.rotation}}
                audit_record(actor=request.user, action=AuditEntry.Action.API_KEY_ROTATE, obj=key, changes=rotation)
                rotated += 1
        self.message_user(request, f"Rotated {rotated} key(s); owners can reveal the new secret once.")

    @admin.action(description="Revoke now: every secret of the key stops working at once")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset:
            revoked = services.api_key_revoke(key=key)
            if key.status != revoked.status:  # revoking a revoked key changes nothing
                status = {"status": {"before": key.status, "after": revoked.status}}
                audit_record(actor=request.user, action=AuditEntry.Action.API_KEY_REVOKE, obj=revoked, changes=status)
        self.message_user(request, f"Revoked {queryset.count()} key(s).", level=messages.WARNING)
