"""JWTs for people, and how a password change or a deactivation ends them.

Every token carries a *stamp*: an HMAC of its user's password hash and token
generation. The stamp is checked on each use, of an access token (``JWTAuthentication``)
and of a refresh token (``TokenRefreshSerializer``), against the user row that is read
anyway. So a password change by any path (REST, the reset link, the admin,
``manage.py changepassword``) and a deactivation (``services.user_deactivate`` advances
the generation) refuse every token issued before, at its next use. A bcrypt rehash
(a hasher upgrade at sign-in) changes the hash too and ends older tokens: rare, and
the same trade Django makes for sessions.

Refresh rotation keeps the sign-in time (``auth_time``) and never lets a rotated token
outlive sign-in + REFRESH_TOKEN_LIFETIME: rotating a stolen token does not extend it.
"""

from __future__ import annotations

import hmac
from typing import Any, cast

from django.conf import settings
from django.utils.crypto import salted_hmac
from drf_spectacular.contrib.rest_framework_simplejwt import (
    SimpleJWTScheme,
    TokenObtainPairSerializerExtension,
    TokenRefreshSerializerExtension,
)
from rest_framework import exceptions
from rest_framework_simplejwt import authentication, serializers, tokens
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.settings import api_settings

from accounts.models import User

STAMP_CLAIM = "stamp"
# When the user signed in (epoch seconds), as in OpenID Connect; rotation keeps it.
AUTH_TIME_CLAIM = "auth_time"


def user_token_stamp(user: User) -> str:
    """Changes whenever the user's password or token generation changes; reveals neither."""
    value = f"{user.pk}:{user.token_generation}:{user.password}"
    return salted_hmac("accounts.tokens.stamp", value, secret=settings.JWT_SIGNING_KEY, algorithm="sha256").hexdigest()


def token_check_current(token: tokens.Token, user: User) -> None:
    """Refuses a token issued before the user's last password change or deactivation."""
    stamp = token.get(STAMP_CLAIM)
    if not isinstance(stamp, str) or not hmac.compare_digest(stamp, user_token_stamp(user)):
        raise InvalidToken("Token has been revoked: sign in again.")


class RefreshToken(tokens.RefreshToken):
    """simplejwt's refresh token, stamped; its access tokens copy the stamp."""

    @classmethod
    def for_user(cls, user: Any) -> RefreshToken:
        token = cast(RefreshToken, super().for_user(user))
        token[STAMP_CLAIM] = user_token_stamp(user)
        token[AUTH_TIME_CLAIM] = token["iat"]
        return token


class JWTAuthentication(authentication.JWTAuthentication):
    """simplejwt's authentication, plus the stamp check (no extra query: the user is read anyway)."""

    def get_user(self, validated_token: tokens.Token) -> Any:
        user = super().get_user(validated_token)
        if not isinstance(user, User):  # USER_ID_FIELD is our User's pk: cannot happen
            raise InvalidToken("Token names no user.")
        token_check_current(validated_token, user)
        return user


class TokenObtainPairSerializer(serializers.TokenObtainPairSerializer):
    token_class = RefreshToken


class TokenRefreshSerializer(serializers.TokenRefreshSerializer):
    """Checks the user is active and the stamp current, then rotates: the presented token is
    blacklisted and the new one expires at the latest at sign-in + REFRESH_TOKEN_LIFETIME."""

    token_class = RefreshToken

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        refresh = self.token_class(attrs["refresh"])  # signature, expiry, blacklist
        user = User.objects.filter(pk=refresh.get(api_settings.USER_ID_CLAIM), is_active=True).first()
        if user is None:
            raise exceptions.AuthenticationFailed(self.error_messages["no_active_account"], "no_active_account")
        token_check_current(refresh, user)
        data = {"access": str(refresh.access_token)}
        signed_in_at = int(refresh.get(AUTH_TIME_CLAIM, refresh["iat"]))
        refresh.blacklist()
        refresh.set_jti()
        refresh.set_exp()
        refresh.set_iat()
        # simplejwt extends exp from now; a session must not outlive its sign-in.
        absolute_end = signed_in_at + int(api_settings.REFRESH_TOKEN_LIFETIME.total_seconds())
        refresh["exp"] = min(int(refresh["exp"]), absolute_end)
        refresh.outstand()
        data["refresh"] = str(refresh)
        return data


# The OpenAPI schema describes these subclasses as drf-spectacular describes simplejwt's
# own (its extensions match exact classes only).


class JWTAuthenticationScheme(SimpleJWTScheme):
    target_class = "accounts.tokens.JWTAuthentication"


class TokenObtainPairSchema(TokenObtainPairSerializerExtension):
    target_class = "accounts.tokens.TokenObtainPairSerializer"


class TokenRefreshSchema(TokenRefreshSerializerExtension):
    target_class = "accounts.tokens.TokenRefreshSerializer"
