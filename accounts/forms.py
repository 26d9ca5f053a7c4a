"""HTML forms of the customer dashboard: they parse input; services decide."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.utils.timesince import timeuntil

from accounts.keys import (
    ALLOWED_MODELS_MAX,
    GRACE_MAX_SECONDS,
    LIMIT_MAX,
    MODEL_NAME_MAX_LENGTH,
    ROTATION_INTERVAL_MAX_DAYS,
)
from accounts.models import ApiKey, Membership, Organization
from oneflow.lib.converters import ID_MAX
from oneflow.lib.errors import ServiceError


class ServiceErrorsMixin:
    """Puts a refused service call on the field it names, or on the whole form."""

    def add_service_error(self, exc: ServiceError) -> None:
        field = exc.param if exc.param in self.fields else None  # type: ignore[attr-defined]
        self.add_error(field, exc.message)  # type: ignore[attr-defined]


class SignUpForm(ServiceErrorsMixin, forms.Form):
    email = forms.EmailField(max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    full_name = forms.CharField(
        label="Your name", max_length=150, required=False, widget=forms.TextInput(attrs={"autocomplete": "name"})
    )
    organization = forms.CharField(
        label="Organization name",
        max_length=Organization._meta.get_field("name").max_length,
        widget=forms.TextInput(attrs={"autocomplete": "organization"}),
    )
    password = forms.CharField(
        strip=False,
        help_text="At least 12 characters.",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )


class SignInForm(AuthenticationForm):
    """Django's sign-in form, labelled for an email address."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].label = "Email"
        self.fields["username"].widget = forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True})


class OrganizationSwitchForm(forms.Form):
    # Bounded by the largest id a path takes: a bigger one fails in the database.
    organization = forms.IntegerField(min_value=1, max_value=ID_MAX)
    next = forms.CharField(required=False, max_length=2000)


def _expiry_field(**kwargs: Any) -> forms.DateTimeField:
    return forms.DateTimeField(
        label="Expires (UTC)",
        required=False,
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        **kwargs,
    )


class KeyCreateForm(ServiceErrorsMixin, forms.Form):
    name = forms.CharField(max_length=ApiKey._meta.get_field("name").max_length)
    expires_at = _expiry_field()


SECONDS_PER_HOUR = 3600
GRACE_MAX_HOURS = GRACE_MAX_SECONDS // SECONDS_PER_HOUR


class ModelNamesField(forms.Field):
    """Public model names, one per line (commas work too), as a list without repeats."""

    widget = forms.Textarea(attrs={"rows": 4, "cols": 30, "spellcheck": "false", "autocomplete": "off"})

    def to_python(self, value: Any) -> list[str]:
        if isinstance(value, list | tuple):
            value = "\n".join(str(name) for name in value)
        names = (name.strip() for name in re.split(r"[\n,]", value or ""))
        return list(dict.fromkeys(name for name in names if name))

    def validate(self, value: list[str]) -> None:
        super().validate(value)
        if len(value) > ALLOWED_MODELS_MAX:
            raise forms.ValidationError(f"List at most {ALLOWED_MODELS_MAX} models (this lists {len(value)}).")
        too_long = [name for name in value if len(name) > MODEL_NAME_MAX_LENGTH]
        if too_long:
            raise forms.ValidationError(
                f"A model name has at most {MODEL_NAME_MAX_LENGTH} characters; “{too_long[0][:40]}…” is longer."
            )

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(value) if isinstance(value, list | tuple) else value


def _limit_field(label: str) -> forms.IntegerField:
    # No help text of its own: the page words it once for the group of limits.
    return forms.IntegerField(
        label=label,
        required=False,
        min_value=1,
        max_value=LIMIT_MAX,
        error_messages={"min_value": "A limit is at least 1; leave it empty for no limit of this key's own."},
    )


def _spelled(period: timedelta) -> str:
    """“1 week”, “36 hours”: a duration as the pages word it."""
    start = datetime(2000, 1, 1, tzinfo=UTC)
    return timeuntil(start + period, start) if period > timedelta(0) else "0 hours"


def _hours(period: timedelta) -> Decimal:
    return (Decimal(int(period.total_seconds())) / SECONDS_PER_HOUR).quantize(Decimal("0.01"))


class KeyEditForm(ServiceErrorsMixin, forms.Form):
    """A key's name, expiry, allowed models, limits and rotation policy.

    Build it with ``for_key``: only the fields a person changed reach the service
    (``to_fields``), so a value the form shows rounded (an expiry's seconds, a grace
    period set to the second over the REST API) is kept as it is unless edited.
    """

    name = forms.CharField(max_length=ApiKey._meta.get_field("name").max_length)
    expires_at = _expiry_field(help_text="After this moment every secret of the key is refused. Empty: never.")
    allowed_models = ModelNamesField(
        label="Allowed models",
        required=False,
        help_text="One model name per line, as sent in “model”. Empty: every model the organization may use.",
    )
    limit_rpm = _limit_field("Requests per minute")
    limit_rph = _limit_field("Requests per hour")
    limit_input_tpm = _limit_field("Input tokens per minute")
    limit_output_tpm = _limit_field("Output tokens per minute")
    limit_concurrency = _limit_field("Requests in flight")
    rotation_interval_days = forms.IntegerField(
        label="Rotate every (days)",
        required=False,
        min_value=1,
        max_value=ROTATION_INTERVAL_MAX_DAYS,
        help_text="A new secret is issued on this schedule, to reveal here once. Empty: only when you rotate.",
    )
    grace_period_hours = forms.DecimalField(
        label="Grace period (hours)",
        required=False,
        min_value=0,
        max_value=GRACE_MAX_HOURS,
        decimal_places=2,
    )

    LIMITS = ("limit_rpm", "limit_rph", "limit_input_tpm", "limit_output_tpm", "limit_concurrency")

    @classmethod
    def for_key(cls, key: ApiKey, data: Any = None) -> KeyEditForm:
        expires_at = key.expires_at.replace(second=0, microsecond=0) if key.expires_at else None
        initial = {
            "name": key.name,
            "expires_at": expires_at,
            "allowed_models": list(key.allowed_models or []),
            "rotation_interval_days": key.rotation_interval_days,
            "grace_period_hours": None if key.grace_period is None else _hours(key.grace_period),
            **{name: getattr(key, name) for name in cls.LIMITS},
        }
        form = cls(data, initial=initial)
        inherited = ApiKey(organization=key.organization).effective_grace_period()
        form.fields["grace_period_hours"].help_text = (
            "How long the previous secret keeps working after a rotation. "
            f"Empty: the organization's setting (now {_spelled(inherited)})."
        )
        return form

    def limits(self) -> list[forms.BoundField]:
        return [self[name] for name in self.LIMITS]

    def to_fields(self) -> dict[str, Any]:
        """What changed, as ApiKey field values for ``services.api_key_update``."""
        fields = {name: self.cleaned_data[name] for name in self.changed_data}
        if "grace_period_hours" in fields:
            hours = fields.pop("grace_period_hours")
            fields["grace_period"] = None if hours is None else timedelta(seconds=int(hours * SECONDS_PER_HOUR))
        return fields


class MemberInviteForm(ServiceErrorsMixin, forms.Form):
    email = forms.EmailField(max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "off"}))
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.MEMBER)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)
