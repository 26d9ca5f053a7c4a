"""HTML forms of the customer dashboard: they parse input; services decide."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm

from accounts.models import ApiKey, Membership, Organization
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
    organization = forms.IntegerField(min_value=1)
    next = forms.CharField(required=False, max_length=2000)


class KeyCreateForm(ServiceErrorsMixin, forms.Form):
    name = forms.CharField(max_length=ApiKey._meta.get_field("name").max_length)
    expires_at = forms.DateTimeField(
        label="Expires (UTC)",
        required=False,
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )


class MemberInviteForm(ServiceErrorsMixin, forms.Form):
    email = forms.EmailField(max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "off"}))
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.MEMBER)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)
