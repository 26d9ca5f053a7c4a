"""The customer dashboard's frame and its pages for people: sign up/in/out, the
organization switcher, and members. Session auth; each view parses, calls one
service, renders. The API keys pages are in ``accounts.views_keys``.

Every dashboard page (keys, billing's overview...) builds on ``dashboard_view`` and
``Dashboard`` from here, so every page gets the same navigation and org switcher.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, Concatenate, ParamSpec

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts import selectors, services
from accounts.forms import (
    MemberInviteForm,
    MemberRoleForm,
    OrganizationSwitchForm,
    SignInForm,
    SignUpForm,
)
from accounts.models import Membership, User
from accounts.throttle import login_attempt_limited, sign_in_failed, sign_in_refused
from oneflow.lib.errors import NotAllowed, NotFound, ServiceError

P = ParamSpec("P")

SESSION_ORGANIZATION = "dashboard_organization_id"
# The switcher lists this many organizations; the current one is always reachable.
SWITCHER_LIMIT = 50


# --- The dashboard frame ------------------------------------------------------------


@dataclass(frozen=True)
class Dashboard:
    """Who is looking, at which organization, and what the switcher offers."""

    user: User
    membership: Membership
    memberships: list[Membership] = field(default_factory=list)

    @property
    def organization_id(self) -> int:
        return self.membership.organization_id

    def require_manager(self, what: str) -> None:
        """The REST API's rule on every page: owners and admins change ``what``, members read."""
        if not self.membership.can_manage:
            raise NotAllowed(f"Only owners and admins may manage {what}.")

    def render(
        self, request: HttpRequest, template: str, context: dict[str, Any] | None = None, *, status: int = 200
    ) -> HttpResponse:
        frame = {"dashboard": self, "organization": self.membership.organization}
        return render(request, template, {**frame, **(context or {})}, status=status)


def dashboard_for(request: HttpRequest) -> Dashboard | None:
    """The signed-in user's current organization (session), else their first; None without any."""
    user = request.user
    assert isinstance(user, User)  # noqa: S101 - login_required guarantees it
    memberships = list(selectors.memberships_of(user=user)[:SWITCHER_LIMIT])
    wanted = request.session.get(SESSION_ORGANIZATION)
    current = next((m for m in memberships if m.organization_id == wanted), None)
    if current is None and isinstance(wanted, int):
        try:
            current = selectors.membership_get(user=user, organization_id=wanted)
        except NotFound:  # removed from it since: fall back to the first
            current = None
    current = current or (memberships[0] if memberships else None)
    return None if current is None else Dashboard(user=user, membership=current, memberships=memberships)


def dashboard_view(
    view: Callable[Concatenate[HttpRequest, Dashboard, P], HttpResponseBase],
) -> Callable[Concatenate[HttpRequest, P], HttpResponseBase]:
    """A signed-in page of the current organization; service refusals become 403/404."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: P.args, **kwargs: P.kwargs) -> HttpResponseBase:
        dashboard = dashboard_for(request)
        if dashboard is None:
            return render(request, "dashboard/no_organization.html")
        try:
            return view(request, dashboard, *args, **kwargs)
        except NotFound as exc:
            raise Http404(exc.message) from None
        except NotAllowed as exc:
            raise PermissionDenied(exc.message) from None

    return wrapper


# --- Sign up, in, out, password reset ---------------------------------------------


TOO_MANY = "Too many attempts; try again in a minute."


def signup(request: HttpRequest) -> HttpResponseBase:
    if request.user.is_authenticated:
        return redirect(settings.LOGIN_REDIRECT_URL)
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and login_attempt_limited(request, group="dashboard.signup"):
        form.add_error(None, TOO_MANY)
        return render(request, "dashboard/auth/signup.html", {"form": form}, status=429)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            user, organization = services.signup(
                email=data["email"],
                password=data["password"],
                full_name=data["full_name"],
                organization_name=data["organization"],
            )
        except ServiceError as exc:
            form.add_service_error(exc)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            request.session[SESSION_ORGANIZATION] = organization.pk
            return redirect(settings.LOGIN_REDIRECT_URL)
    return render(request, "dashboard/auth/signup.html", {"form": form}, status=400 if form.errors else 200)


class SignInView(auth_views.LoginView):
    template_name = "dashboard/auth/signin.html"
    authentication_form = SignInForm
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # The JWT sign-in's limits (accounts.throttle): others' failures never refuse the owner.
        email = request.POST.get("username", "") or None
        if sign_in_refused(request, account=email):
            form = self.get_form()
            form.add_error(None, TOO_MANY)
            return self.render_to_response(self.get_context_data(form=form), status=429)
        response = super().post(request, *args, **kwargs)
        if not request.user.is_authenticated:
            sign_in_failed(request, account=email)
        return response


class SignOutView(auth_views.LogoutView):
    """POST only (Django's rule): a link cannot sign anyone out."""


class PasswordResetView(auth_views.PasswordResetView):
    template_name = "dashboard/auth/password_reset_form.html"
    email_template_name = "dashboard/auth/password_reset_email.txt"
    subject_template_name = "dashboard/auth/password_reset_subject.txt"
    success_url = reverse_lazy("password-reset-done")

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # Each attempt sends an email: cap them per client address and per address asked for.
        if login_attempt_limited(request, group="dashboard.password-reset", account=request.POST.get("email") or None):
            form = self.get_form()
            form.add_error(None, TOO_MANY)
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().post(request, *args, **kwargs)


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "dashboard/auth/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "dashboard/auth/password_reset_confirm.html"
    success_url = reverse_lazy("password-reset-complete")


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "dashboard/auth/password_reset_complete.html"


# --- Organization switcher ------------------------------------------------------------


@require_POST
@dashboard_view
def organization_switch(request: HttpRequest, dashboard: Dashboard) -> HttpResponseBase:
    form = OrganizationSwitchForm(request.POST)
    if not form.is_valid():
        raise Http404("No such organization.")
    # A membership or a 404: nobody can switch into someone else's organization.
    membership = selectors.membership_get(user=dashboard.user, organization_id=form.cleaned_data["organization"])
    request.session[SESSION_ORGANIZATION] = membership.organization_id
    target = form.cleaned_data["next"]
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=False):
        target = reverse(settings.LOGIN_REDIRECT_URL)
    return HttpResponseRedirect(target)


# --- Members ----------------------------------------------------------------------------

# The page lists this many members; bigger teams page through.
MEMBERS_PER_PAGE = 50


def _render_members(
    request: HttpRequest, dashboard: Dashboard, form: MemberInviteForm | None = None, status: int = 200
) -> HttpResponse:
    members = selectors.members_of(organization=dashboard.membership.organization)
    page = Paginator(members, MEMBERS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "form": form or MemberInviteForm(),
        "roles": Membership.Role.choices,
        "can_manage": dashboard.membership.can_manage,
    }
    return dashboard.render(request, "dashboard/members.html", context, status=status)


@dashboard_view
def members(request: HttpRequest, dashboard: Dashboard) -> HttpResponseBase:
    if request.method != "POST":
        return _render_members(request, dashboard)
    dashboard.require_manager("members")
    form = MemberInviteForm(request.POST)
    if form.is_valid():
        try:
            services.membership_invite(
                organization=dashboard.membership.organization,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                invited_by=dashboard.membership,
                site_url=request.build_absolute_uri("/").rstrip("/"),
            )
        except ServiceError as exc:
            if isinstance(exc, NotAllowed):
                raise
            form.add_service_error(exc)
        else:
            messages.success(request, f"{form.cleaned_data['email']} was invited.")
            return redirect("dashboard-members")
    return _render_members(request, dashboard, form, status=400)


@require_POST
@dashboard_view
def member_role(request: HttpRequest, dashboard: Dashboard, membership_id: int) -> HttpResponseBase:
    dashboard.require_manager("members")
    target = selectors.member_get(organization=dashboard.membership.organization, membership_id=membership_id)
    form = MemberRoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Pick a role.")
        return redirect("dashboard-members")
    try:
        services.membership_update(membership=target, actor=dashboard.membership, role=form.cleaned_data["role"])
    except NotAllowed:
        raise
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{target.user.email} is now {form.cleaned_data['role']}.")
    return redirect("dashboard-members")


@require_POST
@dashboard_view
def member_remove(request: HttpRequest, dashboard: Dashboard, membership_id: int) -> HttpResponseBase:
    dashboard.require_manager("members")
    target = selectors.member_get(organization=dashboard.membership.organization, membership_id=membership_id)
    try:
        services.membership_remove(membership=target, actor=dashboard.membership)
    except NotAllowed:
        raise
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{target.user.email} was removed.")
    return redirect("dashboard-members")
