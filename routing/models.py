"""Routing's own configuration."""

from __future__ import annotations

from typing import ClassVar

from django.db import models
from django.utils import timezone


class ModelAccess(models.Model):
    """Makes a public model that is not public to all visible to one organization."""

    public_model = models.ForeignKey("providers.PublicModel", on_delete=models.CASCADE, related_name="+")
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "model access grants"
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["public_model", "organization"], name="routing_modelaccess_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.organization} may use {self.public_model}"
