"""Who may use OneFlow: users, organizations (the tenants), and API keys.

An API key is a stable identity (name, limits, allowed models) whose secret
rotates. Each secret is an ``ApiKeySecret`` row: rotating issues a new one and
lets the old one keep working until its grace period ends, so clients can
switch over without an outage.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, ClassVar

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from accounts import keys
from oneflow.lib.config_version import GatewayConfig
from oneflow.lib.crypto import random_token


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def get_by_natural_key(self, username: str | None) -> User:
        # Emails are stored lower-cased; sign-in accepts any case.
        return self.get(email__iexact=username)

    def create_user(self, email: str, password: str | None = None, **fields: Any) -> User:
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **fields: Any) -> User:
        fields.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    email = models.EmailField(unique=True)
    full_name = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="May sign in to the operator admin.")
    date_joined = models.DateTimeField(default=timezone.now)
    # Part of every JWT's stamp (accounts.tokens): advancing it ends every token
    # issued before, e.g. on deactivation. Password changes end them through the
    # password hash, which the stamp covers too.
    token_generation = models.PositiveIntegerField(default=0, editable=False)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_unique"),
        ]

    def __str__(self) -> str:
        return self.email


# Rate limits: empty inherits (or means none); 0 would refuse every request.
_AT_LEAST_ONE = [MinValueValidator(1)]


def _limit(help_text: str) -> models.PositiveIntegerField[int | None, int | None]:
    """An optional limit: empty inherits (or means none); zero would refuse everything."""
    return models.PositiveIntegerField(null=True, blank=True, validators=_AT_LEAST_ONE, help_text=help_text)


def validate_timezone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"{value!r} is not an IANA time zone (e.g. Europe/Paris).") from None


class Plan(GatewayConfig):
    """Rate limits that organizations subscribe to.

    An empty request limit (rpm, rph) means the platform default
    (RATE_LIMIT_DEFAULT_RPM/RPH); an empty token or concurrency limit means
    none. An organization's own limits override its plan's, field by field.
    """

    name = models.CharField(max_length=60, unique=True)
    rpm = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=_AT_LEAST_ONE,
        help_text="Requests per minute; empty means the platform default.",
    )
    rph = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=_AT_LEAST_ONE,
        help_text="Requests per hour; empty means the platform default.",
    )
    input_tpm = _limit("Input tokens per minute; empty means no limit.")
    output_tpm = _limit("Output tokens per minute; empty means no limit.")
    concurrency = _limit("Requests in flight; empty means no limit.")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


class Organization(GatewayConfig):
    """A tenant: it owns API keys and credits, and people belong to it."""

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60, unique=True)
    # Deleting a plan must not silently move its organizations to the defaults.
    plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.PROTECT, related_name="organizations")
    # Organization-wide limits, shared by all its keys; empty means the plan's.
    limit_rpm = _limit("Requests per minute.")
    limit_rph = _limit("Requests per hour.")
    limit_input_tpm = _limit("Input tokens per minute.")
    limit_output_tpm = _limit("Output tokens per minute.")
    limit_concurrency = _limit("Requests in flight.")
    api_key_grace_period = models.DurationField(
        null=True,
        blank=True,
        help_text="How long a rotated key keeps working; empty means the platform default (7 days).",
    )
    # Budgets reset at midnight, on Mondays and on the 1st in this time zone.
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["organization", "user"], name="accounts_membership_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"

    @property
    def can_manage(self) -> bool:
        return self.role in (self.Role.OWNER, self.Role.ADMIN)


def new_api_key_public_id() -> str:
    return f"key_{random_token(16)}"


class ApiKey(GatewayConfig):
    """A customer's credential for the gateway, stable across rotations."""

    # Written as traffic flows, and never read by the gateway.
    config_ignored_fields = frozenset({"last_used_at"})

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        REVOKED = "revoked", "Revoked"

    class Purpose(models.TextChoices):
        API = "api", "API"
        # The dashboard playground's key of one person (created_by): the
        # dashboard calls the gateway with it, so its secret stays sealed.
        PLAYGROUND = "playground", "Playground"

    public_id = models.CharField(max_length=24, unique=True, default=new_api_key_public_id, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # Public model names this key may call; empty means every model the
    # organization can see.
    allowed_models = models.JSONField(default=list, blank=True)
    # Per-key limits, counted for the key alone and checked besides the
    # organization's (so a key can only narrow them); empty means none.
    limit_rpm = _limit("Requests per minute.")
    limit_rph = _limit("Requests per hour.")
    limit_input_tpm = _limit("Input tokens per minute.")
    limit_output_tpm = _limit("Output tokens per minute.")
    limit_concurrency = _limit("Requests in flight.")
    grace_period = models.DurationField(
        null=True,
        blank=True,
        help_text="How long a rotated secret keeps working; empty means the organization's setting.",
    )
    rotation_interval_days = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Rotate automatically every N days; empty means never.",
    )
    next_rotation_at = models.DateTimeField(null=True, blank=True, editable=False)
    purpose = models.CharField(max_length=10, choices=Purpose.choices, default=Purpose.API, editable=False)

    class Meta:
        constraints: ClassVar = [
            # One live playground key per person and organization, however many
            # first uses race; also the index of playground_key_for's lookup.
            models.UniqueConstraint(
                fields=["organization", "created_by"],
                name="accounts_apikey_one_playground_key",
                condition=Q(purpose="playground", status="active"),
            ),
        ]
        indexes: ClassVar = [
            # The rotation job: active keys whose policy is due.
            models.Index(
                fields=["next_rotation_at"],
                name="accounts_apikey_rotation_due",
                condition=Q(status="active", next_rotation_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"

    def reveal_pending(self, secrets: Iterable[ApiKeySecret]) -> bool:
        """A scheduled rotation issued one of ``secrets`` and nobody has seen it yet. A
        playground key's secret is sealed for the playground's own use, not for a person."""
        return self.purpose != ApiKey.Purpose.PLAYGROUND and any(s.sealed_secret for s in secrets)

    def effective_grace_period(self) -> timedelta:
        if self.grace_period is not None:
            return self.grace_period
        if self.organization.api_key_grace_period is not None:
            return self.organization.api_key_grace_period
        return settings.API_KEY_GRACE_PERIOD

    def is_usable_at(self, moment: datetime) -> bool:
        return self.status == self.Status.ACTIVE and (self.expires_at is None or moment < self.expires_at)


class ApiKeySecret(GatewayConfig):
    """One secret of an API key: the newest is current, older ones live out their grace."""

    # Written as traffic flows, and never read by the gateway.
    config_ignored_fields = frozenset({"last_used_at"})

    PREFIX = keys.PREFIX

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="secrets")
    rotation = models.PositiveIntegerField(help_text="0 for the first secret, +1 per rotation.")
    # The random part after "of_live_", shown to people and used to find the row.
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64, help_text="SHA-256 of the whole secret, hex.")
    created_at = models.DateTimeField(default=timezone.now)
    # Set when a successor is issued: the secret works until then.
    valid_until = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # A secret issued by scheduled rotation, sealed until its owner reveals it once.
    sealed_secret = models.TextField(blank=True, editable=False)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["key", "rotation"], name="accounts_apikeysecret_rotation_unique"),
        ]
        indexes: ClassVar = [
            # The expiry job: superseded secrets whose grace has run out.
            models.Index(
                fields=["valid_until"],
                name="accounts_secret_grace_open",
                condition=Q(revoked_at__isnull=True, valid_until__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.display_prefix

    @property
    def display_prefix(self) -> str:
        return f"{self.PREFIX}{self.prefix}"

    def is_valid_at(self, moment: datetime) -> bool:
        if self.revoked_at is not None and self.revoked_at <= moment:
            return False
        return self.valid_until is None or moment < self.valid_until
