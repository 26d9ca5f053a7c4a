"""Operators configure providers, credentials, public models and deployments here.

Every save goes through providers.services so gateways see the change at once.
Credentials are write-only: a stored secret is never shown again.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest

from audit.admin import AuditedAdmin
from audit.models import AuditEntry
from audit.services import audit_record
from providers import services
from providers.models import Credential, Deployment, Provider, PublicModel


class ConfigAdmin(AuditedAdmin):
    """Records every change made here in the audit log; gateways see it at once
    (provider models advance the config version on every write)."""

    show_full_result_count = False


@admin.register(Provider)
class ProviderAdmin(ConfigAdmin):
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ("name", "kind", "base_url", "enabled", "propagate_trace_context", "created_at")
    list_filter = ("kind", "enabled", "propagate_trace_context")
    search_fields = ("name", "base_url")


class CredentialForm(forms.ModelForm):
    secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only: stored encrypted, never shown again. Leave empty to keep the current one.",
    )

    class Meta:
        model = Credential
        fields = ("provider", "name", "secret", "reference", "status", "status_reason")
        help_texts = {
            "reference": "Instead of a stored secret: env:NAME, where NAME starts with PROVIDER_SECRET_ENV_PREFIX "
            "(ONEFLOW_PROVIDER_ by default) or is listed in PROVIDER_SECRET_ENV_ALLOWED, or file:PATH inside "
            "PROVIDER_SECRETS_DIR. Its value is sent to the provider's base URL.",
        }


class FlaggedFilter(admin.SimpleListFilter):
    title = "flagged"
    parameter_name = "flagged"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes (refused by its provider)"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Credential]) -> QuerySet[Credential]:
        if self.value() in ("yes", "no"):
            return queryset.filter(flagged_at__isnull=self.value() == "no")
        return queryset


@admin.register(Credential)
class CredentialAdmin(ConfigAdmin):
    form = CredentialForm
    list_display = ("name", "provider", "status", "flagged", "flag_reason", "stored", "reference", "created_at")
    list_filter = (FlaggedFilter, "status", "provider__kind")
    search_fields = ("name", "provider__name")
    list_select_related = ("provider",)
    autocomplete_fields = ("provider",)
    readonly_fields = ("flagged_at", "flag_reason")
    actions = ("clear_flag",)

    @admin.display(boolean=True, description="secret stored")
    def stored(self, credential: Credential) -> bool:
        return bool(credential.sealed_secret)

    @admin.display(boolean=True, description="flagged", ordering="flagged_at")
    def flagged(self, credential: Credential) -> bool:
        return credential.flagged_at is not None

    @admin.action(description="Clear flag (the credential was fixed)")
    def clear_flag(self, request: HttpRequest, queryset: QuerySet[Credential]) -> None:
        cleared = 0
        for credential in queryset.filter(flagged_at__isnull=False).select_related("provider"):
            if services.credential_unflag(credential_id=credential.pk):
                cleared += 1
                changes = {"flagged_at": {"before": credential.flagged_at, "after": None}}
                action = AuditEntry.Action.CREDENTIAL_UNFLAG
                audit_record(actor=request.user, action=action, obj=credential, changes=changes)
        self.message_user(request, f"Cleared the flag of {cleared} credential(s).", level=messages.SUCCESS)

    def save_model(self, request: HttpRequest, obj: Credential, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if form.cleaned_data.get("secret"):
            services.credential_set_secret(credential=obj, secret=form.cleaned_data["secret"])


class DeploymentInline(admin.TabularInline):
    model = Deployment
    extra = 0
    fields = (
        "provider",
        "upstream_model",
        "credential",
        "priority",
        "weight",
        "quality_score",
        "context_window",
        "max_output_tokens",
        "enabled",
    )
    autocomplete_fields = ("provider", "credential")


class ModelNamesField(forms.Field):
    """A list of model names, typed one per line or separated by commas."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 60})

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(value) if isinstance(value, list | tuple) else value

    def to_python(self, value: Any) -> list[str]:
        return [name.strip() for name in str(value or "").replace(",", "\n").splitlines() if name.strip()]


class PublicModelForm(forms.ModelForm):
    fallback_models = ModelNamesField(
        required=False,
        help_text="Public model names, one per line, tried in this order once this model's own deployments fail.",
    )

    class Meta:
        model = PublicModel
        fields = (
            "name",
            "aliases",
            "kind",
            "owned_by",
            "is_public",
            "strategy",
            "max_latency_ms",
            "fallback_models",
            "created_at",
        )


@admin.register(PublicModel)
class PublicModelAdmin(ConfigAdmin):
    form = PublicModelForm
    list_display = ("name", "kind", "strategy", "fallbacks", "owned_by", "is_public", "created_at")
    list_filter = ("kind", "strategy", "is_public")
    search_fields = ("name",)
    inlines = (DeploymentInline,)

    @admin.display(description="fallback models")
    def fallbacks(self, model: PublicModel) -> str:
        return ", ".join(model.fallback_models or ()) or "-"


@admin.register(Deployment)
class DeploymentAdmin(ConfigAdmin):
    list_display = (
        "public_model",
        "provider",
        "upstream_model",
        "priority",
        "weight",
        "quality_score",
        "context_window",
        "max_output_tokens",
        "enabled",
    )
    list_filter = ("enabled", "provider__kind", "provider")
    search_fields = ("public_model__name", "upstream_model", "provider__name")
    list_select_related = ("public_model", "provider")
    autocomplete_fields = ("public_model", "provider", "credential")
    actions = ("test_connection", "enable", "disable")

    @admin.action(description="Test connection (one tiny real request)")
    def test_connection(self, request: HttpRequest, queryset: QuerySet[Deployment]) -> None:
        for deployment in queryset.select_related("provider", "credential", "public_model")[:20]:
            ok, outcome = services.deployment_test_connection(deployment=deployment)
            self.message_user(request, f"{deployment}: {outcome}", level=messages.SUCCESS if ok else messages.ERROR)

    @admin.action(description="Enable")
    def enable(self, request: HttpRequest, queryset: QuerySet[Deployment]) -> None:
        self._set_enabled(request, queryset, enabled=True)

    @admin.action(description="Disable (never undone automatically)")
    def disable(self, request: HttpRequest, queryset: QuerySet[Deployment]) -> None:
        self._set_enabled(request, queryset, enabled=False)

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet[Deployment], *, enabled: bool) -> None:
        moving = list(queryset.exclude(enabled=enabled).select_related("public_model", "provider"))
        services.deployments_set_enabled(deployments=queryset, enabled=enabled)
        action = AuditEntry.Action.DEPLOYMENT_ENABLE if enabled else AuditEntry.Action.DEPLOYMENT_DISABLE
        for deployment in moving:
            changes = {"enabled": {"before": not enabled, "after": enabled}}
            audit_record(actor=request.user, action=action, obj=deployment, changes=changes)
