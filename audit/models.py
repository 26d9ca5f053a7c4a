"""The audit log: one row per staff action, append-only and kept for good.

Usage retention prunes usage events only; nothing deletes these rows (the
admin cannot, and no service or job does), so the log outlives the usage it
may explain.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone


class AuditEncoder(DjangoJSONEncoder):
    """Stores form values as plain JSON: a related row as its id, money and
    times as text (Django's encoder), anything else as its text."""

    def default(self, o: Any) -> Any:
        if isinstance(o, models.Model):
            return o.pk
        if isinstance(o, models.QuerySet):  # the rows a many-to-many field was given
            return [row.pk for row in o]
        try:
            return super().default(o)
        except TypeError:
            return str(o)


class AuditEntry(models.Model):
    class Action(models.TextChoices):
        ADD = "add", "Add"
        CHANGE = "change", "Change"
        DELETE = "delete", "Delete"
        CREDITS_GRANT = "credits_grant", "Grant credits"
        REFUND = "refund", "Refund"
        PRICE_IMPORT = "price_import", "Import a price"
        DEPLOYMENT_ENABLE = "deployment_enable", "Enable a deployment"
        DEPLOYMENT_DISABLE = "deployment_disable", "Disable a deployment"
        BREAKER_FORCE_OPEN = "breaker_force_open", "Force a breaker open"
        BREAKER_FORCE_CLOSE = "breaker_force_close", "Force a breaker closed"
        CREDENTIAL_UNFLAG = "credential_unflag", "Clear a credential's flag"
        API_KEY_ROTATE = "api_key_rotate", "Rotate an API key"
        API_KEY_REVOKE = "api_key_revoke", "Revoke an API key"
        PASSWORD_CHANGE = "password_change", "Change a password"

    # Indexed with the time below, not alone (db_index=False): the actor filter reads that index.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, db_index=False, related_name="+"
    )
    # Who it was, copied at the time: it stays when the user is renamed or deleted.
    actor_email = models.CharField(max_length=254, blank=True)
    action = models.CharField(max_length=32, choices=Action.choices)
    # The concrete model of the row acted on ("providers", "deployment"), also for a proxy's page.
    app_label = models.CharField(max_length=100)
    model = models.CharField(max_length=100)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    # The changed fields only, {"field": {"before": ..., "after": ...}}; a secret's
    # entry is services.SECRET_MASK instead, never its value.
    changes = models.JSONField(default=dict, blank=True, encoder=AuditEncoder)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name = "audit entry"
        verbose_name_plural = "audit entries"
        indexes: ClassVar = [
            # The admin's list, newest first.
            models.Index(fields=["-created_at"], name="audit_entry_created"),
            # The admin's filters by action, by model and by actor, each newest first.
            models.Index(fields=["action", "-created_at"], name="audit_entry_action"),
            models.Index(fields=["app_label", "model", "-created_at"], name="audit_entry_model"),
            models.Index(fields=["actor", "-created_at"], name="audit_entry_actor"),
            # The admin's search: one row's history by its id.
            models.Index(fields=["object_id"], name="audit_entry_object"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_email or 'system'} {self.action} {self.app_label}.{self.model} #{self.object_id}"
