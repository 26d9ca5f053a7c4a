"""REST API for people (JWT): tokens, the signed-in user, organizations, members, keys."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from accounts import selectors, services, tokens
from accounts.keys import (
    ALLOWED_MODELS_MAX,
    GRACE_MAX_SECONDS,
    LIMIT_MAX,
    MODEL_NAME_MAX_LENGTH,
    ROTATION_INTERVAL_MAX_DAYS,
)
from accounts.models import ApiKey, Membership, Organization, User
from accounts.throttle import login_attempt_limited, sign_in_failed, sign_in_refused
from oneflow.lib.errors import NotAllowed
from oneflow.lib.serializers import StrictCharField, StrictEmailField

# --- Tokens ---------------------------------------------------------------------


def _too_many_attempts() -> exceptions.Throttled:
    return exceptions.Throttled(wait=60, detail="Too many attempts; try again in a minute.")


class TokenObtainApi(TokenObtainPairView):
    """Exchanges email and password for an access token (30 min) and a refresh token
    (JWT_REFRESH_LIFETIME_SECONDS from now, not extended by rotation); see accounts.tokens.
    Brute-force limits as on the dashboard (accounts.throttle)."""

    serializer_class = tokens.TokenObtainPairSerializer

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        email = request.data.get("email") if isinstance(request.data, dict) else None
        account = email if isinstance(email, str) else None
        if sign_in_refused(request, account=account):
            raise _too_many_attempts()
        try:
            return super().post(request, *args, **kwargs)
        except exceptions.AuthenticationFailed:
            sign_in_failed(request, account=account)
            raise


class TokenRefreshApi(TokenRefreshView):
    """Trades a refresh token for a new pair; the old refresh token is blacklisted. Refused
    once the user changed their password, was deactivated or the session is too old."""

    serializer_class = tokens.TokenRefreshSerializer

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if login_attempt_limited(request, group="auth.refresh"):
            raise _too_many_attempts()
        return super().post(request, *args, **kwargs)


class LogoutApi(APIView):
    """Blacklists a refresh token, so it can never be used again."""

    permission_classes = [AllowAny]
    authentication_classes = []

    def get_authenticate_header(self, request: Request) -> str:
        # Without an authenticator DRF turns a refused token into a 403; it is a 401.
        return 'Bearer realm="api"'

    class LogoutInput(serializers.Serializer):
        refresh = StrictCharField()

    @extend_schema(request=LogoutInput, responses={204: None})
    def post(self, request: Request) -> Response:
        data = _valid(self.LogoutInput, request.data)
        try:
            RefreshToken(data["refresh"]).blacklist()
        except TokenError as exc:
            raise exceptions.AuthenticationFailed(str(exc), code="token_not_valid") from None
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Shared helpers -----------------------------------------------------------------


def _valid(serializer_class: type[serializers.Serializer], data: Any, **kwargs: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _user(request: Request) -> User:
    user = request.user
    assert isinstance(user, User)  # noqa: S101 - IsAuthenticated guarantees it
    return user


def _membership(request: Request, org_id: int) -> Membership:
    return selectors.membership_get(user=_user(request), organization_id=org_id)


def _managing_membership(request: Request, org_id: int) -> Membership:
    membership = _membership(request, org_id)
    if not membership.can_manage:
        raise NotAllowed("Only owners and admins may do this.")
    return membership


# --- Me -----------------------------------------------------------------------------


class MembershipOutput(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    organization_id = serializers.IntegerField()
    organization_name = serializers.CharField(source="organization.name")
    role = serializers.CharField()


class MeApi(APIView):
    class MeInput(serializers.Serializer):
        full_name = StrictCharField(max_length=150, allow_blank=True, required=False)

    class MeOutput(serializers.Serializer):
        id = serializers.IntegerField(source="pk")
        email = serializers.EmailField()
        full_name = serializers.CharField()
        date_joined = serializers.DateTimeField()
        memberships = serializers.SerializerMethodField()

        @extend_schema_field(MembershipOutput(many=True))
        def get_memberships(self, user: User) -> list[dict[str, Any]]:
            return list(MembershipOutput(selectors.memberships_of(user=user), many=True).data)

    @extend_schema(responses=MeOutput)
    def get(self, request: Request) -> Response:
        return Response(self.MeOutput(_user(request)).data)

    @extend_schema(request=MeInput, responses=MeOutput)
    def patch(self, request: Request) -> Response:
        data = _valid(self.MeInput, request.data)
        user = _user(request)
        if "full_name" in data:  # a PATCH changes what it names, nothing else
            user.full_name = data["full_name"]
            user.save(update_fields=["full_name"])
        return Response(self.MeOutput(user).data)


class PasswordChangeApi(APIView):
    class PasswordChangeInput(serializers.Serializer):
        current_password = StrictCharField(trim_whitespace=False)
        new_password = StrictCharField(trim_whitespace=False)

    @extend_schema(request=PasswordChangeInput, responses={204: None})
    def post(self, request: Request) -> Response:
        data = _valid(self.PasswordChangeInput, request.data)
        services.user_password_change(user=_user(request), **data)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Organizations ------------------------------------------------------------------


class OrganizationOutput(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    name = serializers.CharField()
    slug = serializers.CharField()
    api_key_grace_period_seconds = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    def get_api_key_grace_period_seconds(self, organization: Organization) -> int | None:
        period = organization.api_key_grace_period
        return None if period is None else int(period.total_seconds())


class OrganizationListApi(APIView):
    class OrganizationListInput(serializers.Serializer):
        name = StrictCharField(max_length=120)

    @extend_schema(responses=OrganizationOutput(many=True))
    def get(self, request: Request) -> Response:
        organizations = [m.organization for m in selectors.memberships_of(user=_user(request))]
        return Response(OrganizationOutput(organizations, many=True).data)

    @extend_schema(request=OrganizationListInput, responses={201: OrganizationOutput})
    def post(self, request: Request) -> Response:
        data = _valid(self.OrganizationListInput, request.data)
        organization = services.organization_create(name=data["name"], owner=_user(request))
        return Response(OrganizationOutput(organization).data, status=status.HTTP_201_CREATED)


class OrganizationDetailApi(APIView):
    class OrganizationDetailInput(serializers.Serializer):
        name = StrictCharField(max_length=120, required=False)
        api_key_grace_period_seconds = serializers.IntegerField(
            min_value=0, max_value=GRACE_MAX_SECONDS, allow_null=True, required=False
        )

    @extend_schema(responses=OrganizationOutput)
    def get(self, request: Request, org_id: int) -> Response:
        return Response(OrganizationOutput(_membership(request, org_id).organization).data)

    @extend_schema(request=OrganizationDetailInput, responses=OrganizationOutput)
    def patch(self, request: Request, org_id: int) -> Response:
        data = _valid(self.OrganizationDetailInput, request.data)
        if "api_key_grace_period_seconds" in data:
            seconds = data.pop("api_key_grace_period_seconds")
            data["api_key_grace_period"] = None if seconds is None else timedelta(seconds=seconds)
        membership = _membership(request, org_id)
        organization = services.organization_update(organization=membership.organization, actor=membership, **data)
        return Response(OrganizationOutput(organization).data)


# --- Members ------------------------------------------------------------------------


class MemberOutput(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    user_id = serializers.IntegerField()
    email = serializers.EmailField(source="user.email")
    full_name = serializers.CharField(source="user.full_name")
    role = serializers.ChoiceField(choices=Membership.Role.choices)
    created_at = serializers.DateTimeField()


class MemberListApi(APIView):
    class MemberListInput(serializers.Serializer):
        email = StrictEmailField()
        role = serializers.ChoiceField(choices=Membership.Role.choices, default=Membership.Role.MEMBER)

    @extend_schema(responses=MemberOutput(many=True))
    def get(self, request: Request, org_id: int) -> Response:
        organization = _membership(request, org_id).organization
        return Response(MemberOutput(selectors.members_of(organization=organization), many=True).data)

    @extend_schema(request=MemberListInput, responses={201: MemberOutput})
    def post(self, request: Request, org_id: int) -> Response:
        data = _valid(self.MemberListInput, request.data)
        actor = _membership(request, org_id)
        membership = services.membership_add(organization=actor.organization, actor=actor, **data)
        return Response(MemberOutput(membership).data, status=status.HTTP_201_CREATED)


class MemberDetailApi(APIView):
    class MemberDetailInput(serializers.Serializer):
        role = serializers.ChoiceField(choices=Membership.Role.choices, required=False)

    @extend_schema(request=MemberDetailInput, responses=MemberOutput)
    def patch(self, request: Request, org_id: int, member_id: int) -> Response:
        data = _valid(self.MemberDetailInput, request.data)
        actor = _membership(request, org_id)
        target = selectors.member_get(organization=actor.organization, membership_id=member_id)
        if "role" in data:  # a PATCH changes what it names, nothing else
            target = services.membership_update(membership=target, actor=actor, role=data["role"])
        return Response(MemberOutput(target).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, org_id: int, member_id: int) -> Response:
        actor = _membership(request, org_id)
        target = selectors.member_get(organization=actor.organization, membership_id=member_id)
        services.membership_remove(membership=target, actor=actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- API keys -----------------------------------------------------------------------


def _limit(source: str) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=1, max_value=LIMIT_MAX, allow_null=True, required=False, source=source)


class KeyLimitsSerializer(serializers.Serializer):
    rpm = _limit("limit_rpm")
    rph = _limit("limit_rph")
    input_tpm = _limit("limit_input_tpm")
    output_tpm = _limit("limit_output_tpm")
    concurrency = _limit("limit_concurrency")


class KeySecretOutput(serializers.Serializer):
    rotation = serializers.IntegerField()
    prefix = serializers.CharField(source="display_prefix")
    created_at = serializers.DateTimeField()
    valid_until = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)


class KeyOutput(serializers.Serializer):
    id = serializers.CharField(source="public_id")
    name = serializers.CharField()
    status = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)
    allowed_models = serializers.ListField(child=serializers.CharField())
    limits = KeyLimitsSerializer(source="*")
    grace_period_seconds = serializers.SerializerMethodField()
    rotation_interval_days = serializers.IntegerField(allow_null=True)
    next_rotation_at = serializers.DateTimeField(allow_null=True)
    secrets = serializers.SerializerMethodField()
    reveal_pending = serializers.SerializerMethodField()

    @extend_schema_field(serializers.ChoiceField(choices=["active", "expired", "revoked"]))
    def get_status(self, key: ApiKey) -> str:
        if key.status == ApiKey.Status.ACTIVE and not key.is_usable_at(timezone.now()):
            return "expired"
        return key.status

    def get_grace_period_seconds(self, key: ApiKey) -> int:
        return int(key.effective_grace_period().total_seconds())

    @extend_schema_field(KeySecretOutput(many=True))
    def get_secrets(self, key: ApiKey) -> list[dict[str, Any]]:
        """The secrets that still work: the current one first, then those in grace."""
        now = timezone.now()
        live = [s for s in getattr(key, "live_secrets", key.secrets.all()) if s.is_valid_at(now)]
        return list(KeySecretOutput(live, many=True).data)

    def get_reveal_pending(self, key: ApiKey) -> bool:
        return key.reveal_pending(getattr(key, "live_secrets", key.secrets.all()))


# An answer carrying a secret: no cache (browser, proxy) may keep a copy.
SECRET_HEADERS = {"Cache-Control": "no-store"}


class IssuedKeyOutput(KeyOutput):
    secret = serializers.CharField(help_text="The new secret. Shown once: store it now.")


def _issued(issued: services.IssuedSecret, org: Organization) -> dict[str, Any]:
    key = selectors.api_key_get(organization=org, public_id=issued.key.public_id)
    return {**KeyOutput(key).data, "secret": issued.raw}


class KeyInput(serializers.Serializer):
    name = StrictCharField(max_length=100)
    expires_at = serializers.DateTimeField(allow_null=True, required=False)
    allowed_models = serializers.ListField(
        child=StrictCharField(max_length=MODEL_NAME_MAX_LENGTH), max_length=ALLOWED_MODELS_MAX, required=False
    )
    limits = KeyLimitsSerializer(required=False)
    grace_period_seconds = serializers.IntegerField(
        min_value=0, max_value=GRACE_MAX_SECONDS, allow_null=True, required=False
    )
    rotation_interval_days = serializers.IntegerField(
        min_value=1, max_value=ROTATION_INTERVAL_MAX_DAYS, allow_null=True, required=False
    )

    def to_fields(self) -> dict[str, Any]:
        """The validated input as ApiKey field values."""
        data = dict(self.validated_data)
        data.update(data.pop("limits", {}))
        if "grace_period_seconds" in data:
            seconds = data.pop("grace_period_seconds")
            data["grace_period"] = None if seconds is None else timedelta(seconds=seconds)
        return data


class KeyListApi(APIView):
    @extend_schema(responses=KeyOutput(many=True))
    def get(self, request: Request, org_id: int) -> Response:
        organization = _membership(request, org_id).organization
        return Response(KeyOutput(selectors.api_keys_of(organization=organization), many=True).data)

    @extend_schema(request=KeyInput, responses={201: IssuedKeyOutput})
    def post(self, request: Request, org_id: int) -> Response:
        serializer = KeyInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        organization = _managing_membership(request, org_id).organization
        issued = services.api_key_create(organization=organization, created_by=_user(request), **serializer.to_fields())
        return Response(_issued(issued, organization), status=status.HTTP_201_CREATED, headers=SECRET_HEADERS)


class KeyDetailApi(APIView):
    @extend_schema(responses=KeyOutput)
    def get(self, request: Request, org_id: int, key_id: str) -> Response:
        organization = _membership(request, org_id).organization
        return Response(KeyOutput(selectors.api_key_get(organization=organization, public_id=key_id)).data)

    @extend_schema(request=KeyInput(partial=True), responses=KeyOutput)
    def patch(self, request: Request, org_id: int, key_id: str) -> Response:
        serializer = KeyInput(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        organization = _managing_membership(request, org_id).organization
        key = selectors.api_key_get(organization=organization, public_id=key_id)
        services.api_key_update(key=key, **serializer.to_fields())
        return Response(KeyOutput(selectors.api_key_get(organization=organization, public_id=key_id)).data)


class KeyRotateApi(APIView):
    class KeyRotateInput(serializers.Serializer):
        grace_period_seconds = serializers.IntegerField(min_value=0, max_value=GRACE_MAX_SECONDS, required=False)

    @extend_schema(request=KeyRotateInput, responses={201: IssuedKeyOutput})
    def post(self, request: Request, org_id: int, key_id: str) -> Response:
        data = _valid(self.KeyRotateInput, request.data)
        organization = _managing_membership(request, org_id).organization
        key = selectors.api_key_get(organization=organization, public_id=key_id)
        seconds = data.get("grace_period_seconds")
        grace = None if seconds is None else timedelta(seconds=seconds)
        issued = services.api_key_rotate(key=key, grace_period=grace)
        return Response(_issued(issued, organization), status=status.HTTP_201_CREATED, headers=SECRET_HEADERS)


class KeyRevokeApi(APIView):
    @extend_schema(request=None, responses=KeyOutput)
    def post(self, request: Request, org_id: int, key_id: str) -> Response:
        organization = _managing_membership(request, org_id).organization
        key = selectors.api_key_get(organization=organization, public_id=key_id)
        services.api_key_revoke(key=key)
        return Response(KeyOutput(selectors.api_key_get(organization=organization, public_id=key_id)).data)


class KeyRevealApi(APIView):
    """Shows, once, the secret that a scheduled rotation issued."""

    class KeyRevealOutput(serializers.Serializer):
        secret = serializers.CharField()

    @extend_schema(request=None, responses=KeyRevealOutput)
    def post(self, request: Request, org_id: int, key_id: str) -> Response:
        organization = _managing_membership(request, org_id).organization
        key = selectors.api_key_get(organization=organization, public_id=key_id)
        raw = services.api_key_reveal(key=key)
        if raw is None:
            raise exceptions.NotFound("No secret is waiting to be revealed for this key.", code="nothing_to_reveal")
        return Response({"secret": raw}, headers=SECRET_HEADERS)
