"""Writes for users, organizations, memberships and API keys.

Each public service owns its transaction and takes keyword arguments only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F, Max
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.text import slugify

from accounts import keys
from accounts.models import ApiKey, ApiKeySecret, Membership, Organization, User
from oneflow.lib.crypto import random_token, seal, unseal
from oneflow.lib.errors import Conflict, InvalidInput, NotAllowed

logger = logging.getLogger(__name__)


# --- Users ----------------------------------------------------------------------


def _validated_password(password: str, *, user: User | None = None) -> str:
    try:
        password_validation.validate_password(password, user=user)
    except ValidationError as exc:
        raise InvalidInput(" ".join(exc.messages), code="invalid_password", param="password") from None
    return password


def _email_taken() -> Conflict:
    return Conflict("A user with this email already exists.", code="email_taken", param="email")


def _user_insert(*, email: str, password: str, full_name: str, is_staff: bool = False) -> User:
    """Validates and inserts inside the caller's transaction."""
    email = User.objects.normalize_email(email).strip().lower()
    if User.objects.filter(email__iexact=email).exists():
        raise _email_taken()
    _validated_password(password, user=User(email=email, full_name=full_name))
    try:
        # A savepoint: a racing sign-up with the same address leaves the caller's transaction usable.
        with transaction.atomic():
            return User.objects.create_user(email, password, full_name=full_name, is_staff=is_staff)
    except IntegrityError:
        raise _email_taken() from None


def user_create(*, email: str, password: str, full_name: str = "", is_staff: bool = False) -> User:
    with transaction.atomic(durable=True):
        return _user_insert(email=email, password=password, full_name=full_name, is_staff=is_staff)


def signup(*, email: str, password: str, full_name: str, organization_name: str) -> tuple[User, Organization]:
    """A new user and their first organization, both or neither."""
    with transaction.atomic(durable=True):
        user = _user_insert(email=email, password=password, full_name=full_name)
        return user, _organization_insert(name=organization_name, owner=user)


def user_password_change(*, user: User, current_password: str, new_password: str) -> None:
    if not user.check_password(current_password):
        raise InvalidInput("The current password is wrong.", code="wrong_password", param="current_password")
    user.set_password(_validated_password(new_password, user=user))
    # The new hash changes the tokens' stamp: every JWT issued before is refused
    # at its next use (accounts.tokens), this request's own included.
    user.save(update_fields=["password"])


def user_deactivate(*, user: User) -> User:
    """Stops the user signing in, and ends every token and session issued before.

    Advancing the token generation refuses earlier JWTs for good, also after a later
    reactivation; Django refuses the sessions of an inactive user.
    """
    with transaction.atomic(durable=True):
        User.objects.filter(pk=user.pk).update(is_active=False)
        user_tokens_end(user=user)
    user.refresh_from_db(fields=["is_active", "token_generation"])
    return user


def user_tokens_end(*, user: User) -> None:
    """Refuses every JWT issued to the user so far (accounts.tokens), for good.

    One UPDATE, atomic on its own: the admin calls it inside its own transaction.
    """
    User.objects.filter(pk=user.pk).update(token_generation=F("token_generation") + 1)


# --- Organizations and members --------------------------------------------------


def _unique_slug(name: str) -> str:
    base = slugify(name)[:50] or "org"
    slug = base
    while Organization.objects.filter(slug=slug).exists():
        slug = f"{base}-{random_token(6).lower()}"
    return slug


def _organization_name(name: str) -> str:
    name = name.strip()
    limit = Organization._meta.get_field("name").max_length or 0
    if not name or len(name) > limit:
        raise InvalidInput(
            f"An organization needs a name of 1 to {limit} characters.", code="invalid_name", param="organization"
        )
    return name


def _organization_insert(*, name: str, owner: User) -> Organization:
    name = _organization_name(name)
    organization = Organization.objects.create(name=name, slug=_unique_slug(name))
    Membership.objects.create(organization=organization, user=owner, role=Membership.Role.OWNER)
    return organization


def organization_create(*, name: str, owner: User) -> Organization:
    """Creates an organization with ``owner`` as its first member, in the owner role.

    One person owns at most MAX_ORGANIZATIONS_PER_USER organizations; the owner's
    row is locked while counting, so concurrent creations cannot pass the cap.
    """
    with transaction.atomic(durable=True):
        User.objects.select_for_update().get(pk=owner.pk)
        owned = Membership.objects.filter(user=owner, role=Membership.Role.OWNER).count()
        if owned >= settings.MAX_ORGANIZATIONS_PER_USER:
            raise InvalidInput(
                f"You already own {owned} organizations, the most one person may own.",
                code="too_many_organizations",
            )
        return _organization_insert(name=name, owner=owner)


def organization_update(*, organization: Organization, actor: Membership, **fields: Any) -> Organization:
    if not actor.can_manage:
        raise NotAllowed("Only owners and admins may change the organization.")
    for name, value in fields.items():
        setattr(organization, name, value)
    organization.save(update_fields=list(fields))
    return organization


def _require_role_change_allowed(*, actor: Membership, role: str, target: Membership | None) -> None:
    if not actor.can_manage:
        raise NotAllowed("Only owners and admins may manage members.")
    touches_owner = role == Membership.Role.OWNER or (target is not None and target.role == Membership.Role.OWNER)
    if touches_owner and actor.role != Membership.Role.OWNER:
        raise NotAllowed("Only an owner may grant or take away the owner role.")


def _require_another_owner(membership: Membership) -> None:
    others = Membership.objects.filter(organization_id=membership.organization_id, role=Membership.Role.OWNER)
    if membership.role == Membership.Role.OWNER and not others.exclude(pk=membership.pk).exists():
        raise Conflict("An organization must keep at least one owner.", code="last_owner")


def membership_add(*, organization: Organization, actor: Membership, email: str, role: str) -> Membership:
    _require_role_change_allowed(actor=actor, role=role, target=None)
    user = User.objects.filter(email__iexact=email.strip()).first()
    if user is None:
        raise InvalidInput("No OneFlow user has this email; ask them to sign up first.", param="email")
    try:
        with transaction.atomic(durable=True):
            return Membership.objects.create(organization=organization, user=user, role=role)
    except IntegrityError:
        raise Conflict("This user is already a member.", code="already_member", param="email") from None


def membership_update(*, membership: Membership, actor: Membership, role: str) -> Membership:
    _require_role_change_allowed(actor=actor, role=role, target=membership)
    with transaction.atomic(durable=True):
        locked = Membership.objects.select_for_update().get(pk=membership.pk)
        if role != Membership.Role.OWNER:
            _require_another_owner(locked)
        locked.role = role
        locked.save(update_fields=["role"])
    return locked


def membership_remove(*, membership: Membership, actor: Membership) -> None:
    if actor.pk != membership.pk:
        _require_role_change_allowed(actor=actor, role=membership.role, target=membership)
    with transaction.atomic(durable=True):
        _require_another_owner(Membership.objects.select_for_update().get(pk=membership.pk))
        membership.delete()


# --- API keys -------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedSecret:
    """A freshly issued secret. ``raw`` exists only here: it is never stored."""

    key: ApiKey
    secret: ApiKeySecret
    raw: str


def _issue_secret(*, key: ApiKey, rotation: int, now: datetime, sealed: bool = False) -> IssuedSecret:
    raw, prefix = keys.new_raw_key()
    secret = ApiKeySecret.objects.create(
        key=key,
        rotation=rotation,
        prefix=prefix,
        secret_hash=keys.hash_raw_key(raw),
        created_at=now,
        sealed_secret=seal(raw) if sealed else "",
    )
    return IssuedSecret(key=key, secret=secret, raw=raw)


def _next_rotation(key: ApiKey, now: datetime) -> datetime | None:
    if not key.rotation_interval_days:
        return None
    return now + timedelta(days=key.rotation_interval_days)


def api_key_create(*, organization: Organization, name: str, created_by: User | None, **fields: Any) -> IssuedSecret:
    """Creates a key and its first secret. The raw secret is returned once."""
    now = timezone.now()
    if fields.get("expires_at") is not None and fields["expires_at"] <= now:
        raise InvalidInput("expires_at must be in the future.", param="expires_at")
    with transaction.atomic(durable=True):
        key = ApiKey(organization=organization, name=name, created_by=created_by, created_at=now, **fields)
        key.next_rotation_at = _next_rotation(key, now)
        key.save()
        issued = _issue_secret(key=key, rotation=0, now=now)
    logger.info("api key created", extra={"key_id": key.public_id, "org_id": organization.pk})
    return issued


def api_key_update(*, key: ApiKey, **fields: Any) -> ApiKey:
    """Changes a key's name, expiry, allowed models, limits or policies."""
    now = timezone.now()
    if fields.get("expires_at") is not None and fields["expires_at"] <= now:
        raise InvalidInput("expires_at must be in the future.", param="expires_at")
    with transaction.atomic(durable=True):
        key = ApiKey.objects.select_for_update().get(pk=key.pk)
        for name, value in fields.items():
            setattr(key, name, value)
        if "rotation_interval_days" in fields:
            current = key.secrets.filter(valid_until__isnull=True).order_by("-rotation").first()
            key.next_rotation_at = _next_rotation(key, current.created_at if current else now)
        key.save()
    return key


def _rotate_locked(*, key: ApiKey, now: datetime, grace_period: timedelta | None, sealed: bool) -> IssuedSecret:
    if not key.is_usable_at(now):
        raise Conflict("Only an active, unexpired key can be rotated.", code="key_not_active")
    grace = key.effective_grace_period() if grace_period is None else grace_period
    if grace > keys.GRACE_MAX:
        # A row stored before grace periods were bounded: refused, not an overflow.
        raise Conflict(
            f"This key's grace period is longer than {keys.ROTATION_INTERVAL_MAX_DAYS} days; shorten it to rotate.",
            code="grace_period_too_long",
            param="grace_period_seconds",
        )
    # Only the current secret gets a deadline: an older one already has its
    # own, and rotating again must not extend it.
    key.secrets.filter(valid_until__isnull=True, revoked_at__isnull=True).update(
        valid_until=now + grace,
        revoked_at=now if grace <= timedelta(0) else None,
    )
    rotation = (key.secrets.aggregate(last=Max("rotation"))["last"] or 0) + 1
    issued = _issue_secret(key=key, rotation=rotation, now=now, sealed=sealed)
    key.next_rotation_at = _next_rotation(key, now)
    key.save(update_fields=["next_rotation_at"])
    return issued


def api_key_rotate(*, key: ApiKey, grace_period: timedelta | None = None, sealed: bool = False) -> IssuedSecret:
    """Issues a successor secret; the current one keeps working for the grace period.

    The key row is locked for the rotation, so two rotations at once queue up
    and each leaves exactly one current secret. ``sealed`` keeps the new secret
    encrypted for one later reveal (scheduled rotations, where nobody is there
    to be shown it).
    """
    if grace_period is not None and grace_period < timedelta(0):
        raise InvalidInput("The grace period cannot be negative.", param="grace_period_seconds")
    with transaction.atomic(durable=True):
        locked = ApiKey.objects.select_for_update().select_related("organization").get(pk=key.pk)
        issued = _rotate_locked(key=locked, now=timezone.now(), grace_period=grace_period, sealed=sealed)
    logger.info("api key rotated", extra={"key_id": locked.public_id, "rotation": issued.secret.rotation})
    return issued


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    """Stops the key and every one of its secrets at once."""
    now = timezone.now()
    with transaction.atomic(durable=True):
        key = ApiKey.objects.select_for_update().get(pk=key.pk)
        key.status = ApiKey.Status.REVOKED
        key.revoked_at = key.revoked_at or now
        key.next_rotation_at = None
        key.save(update_fields=["status", "revoked_at", "next_rotation_at"])
        key.secrets.filter(revoked_at__isnull=True).update(revoked_at=now, sealed_secret="")
    logger.info("api key revoked", extra={"key_id": key.public_id})
    return key


def api_key_reveal(*, key: ApiKey) -> str | None:
    """The secret a scheduled rotation issued, once; None when there is none to show.

    Never a playground key's: its sealed secret is the playground's, not a person's."""
    if key.purpose == ApiKey.Purpose.PLAYGROUND:
        return None
    with transaction.atomic(durable=True):
        secret = (
            ApiKeySecret.objects.select_for_update()
            .filter(key=key, revoked_at__isnull=True)
            .exclude(sealed_secret="")
            .order_by("-rotation")
            .first()
        )
        if secret is None:
            return None
        raw = unseal(secret.sealed_secret)
        secret.sealed_secret = ""
        secret.save(update_fields=["sealed_secret"])
    return raw


# --- The dashboard playground's key -------------------------------------------------


def _playground_key_name(user: User) -> str:
    limit = ApiKey._meta.get_field("name").max_length or 0
    return f"Playground · {user.email}"[:limit]


def _playground_secret_locked(*, organization: Organization, user: User, now: datetime) -> str:
    key = (
        ApiKey.objects.select_for_update()
        .select_related("organization")
        .filter(organization=organization, created_by=user, purpose=ApiKey.Purpose.PLAYGROUND)
        .filter(status=ApiKey.Status.ACTIVE)
        .first()
    )
    if key is None:
        key = ApiKey.objects.create(
            organization=organization,
            name=_playground_key_name(user),
            created_by=user,
            created_at=now,
            purpose=ApiKey.Purpose.PLAYGROUND,
        )
        logger.info("playground key created", extra={"key_id": key.public_id, "org_id": organization.pk})
        return _issue_secret(key=key, rotation=0, now=now, sealed=True).raw
    current = (
        key.secrets.filter(revoked_at__isnull=True, valid_until__isnull=True)
        .exclude(sealed_secret="")
        .order_by("-rotation")
        .first()
    )
    raw = unseal(current.sealed_secret) if current is not None else None
    if raw is not None:
        return raw
    # Someone rotated or revealed it from the keys page, or ENCRYPTION_KEY changed.
    return _rotate_locked(key=key, now=now, grace_period=None, sealed=True).raw


def playground_key_for(*, organization: Organization, user: User) -> str:
    """The raw secret of ``user``'s playground key in ``organization``, issued on first use.

    The dashboard's playground calls the gateway in process with this key, so
    a try there is limited, held, charged and logged like any API call, and the
    browser never sees the secret. Unlike other secrets it is kept sealed
    (oneflow.lib.crypto), since it is needed again on every use. A revoked or
    expired key is replaced by a new one; a key whose sealed secret is gone
    gets a new secret. Members may use it: it spends the organization's
    credits like any key, and shows in its key list as "Playground · <email>".
    """
    now = timezone.now()
    expired = ApiKey.objects.filter(
        organization=organization, created_by=user, purpose=ApiKey.Purpose.PLAYGROUND, status=ApiKey.Status.ACTIVE
    ).exclude(expires_at=None)
    for key in expired.filter(expires_at__lte=now):
        api_key_revoke(key=key)  # makes way for a new one (one active playground key per person)
    try:
        with transaction.atomic(durable=True):
            return _playground_secret_locked(organization=organization, user=user, now=now)
    except IntegrityError:
        # A concurrent first use created it (the unique constraint let one win): use that one.
        with transaction.atomic(durable=True):
            return _playground_secret_locked(organization=organization, user=user, now=now)


# --- Scheduled work ---------------------------------------------------------------


def _rotate_due_key(*, key_id: int, now: datetime) -> bool:
    """Rotates one due key if it is still due and unclaimed; whether it did."""
    with transaction.atomic(durable=True):
        key = (
            ApiKey.objects.select_for_update(skip_locked=True)
            .select_related("organization")
            .filter(pk=key_id, status=ApiKey.Status.ACTIVE, next_rotation_at__lte=now)
            .first()
        )
        if key is None:
            return False
        if not key.is_usable_at(now):
            key.next_rotation_at = None
            key.save(update_fields=["next_rotation_at"])
            return False
        _rotate_locked(key=key, now=now, grace_period=None, sealed=True)
        return True


def api_keys_rotate_due(*, now: datetime | None = None) -> int:
    """Rotates every active key whose rotation policy is due; returns how many.

    Each key is claimed under a row lock and re-checked, so overlapping runs
    (or a retried task) rotate a key once, not twice. Each key is its own
    transaction and its own failure: a key that cannot rotate (a bad stored
    row of one organization) is logged and left due, and the others rotate.
    """
    now = now or timezone.now()
    due = ApiKey.objects.filter(status=ApiKey.Status.ACTIVE, next_rotation_at__lte=now)
    rotated = 0
    for key_id, org_id in due.values_list("pk", "organization_id").order_by("next_rotation_at")[:500]:
        try:
            rotated += _rotate_due_key(key_id=key_id, now=now)
        except Exception as exc:
            # Ids and the error's class only: the new secret must never reach a log.
            logger.exception(
                "scheduled api key rotation failed",
                extra={"key_pk": key_id, "org_id": org_id, "error": type(exc).__name__},
            )
    if rotated:
        logger.info("scheduled api key rotation", extra={"rotated": rotated})
    return rotated


def api_key_secrets_expire(*, now: datetime | None = None) -> int:
    """Marks revoked every rotated secret whose grace has ended; returns how many.

    Authentication already refuses such a secret from the second its grace
    ends; this makes the state visible and idempotent to re-run.
    """
    now = now or timezone.now()
    with transaction.atomic(durable=True):
        count = ApiKeySecret.objects.filter(revoked_at__isnull=True, valid_until__lte=now).update(
            revoked_at=F("valid_until"),
            sealed_secret="",
        )
    if count:
        logger.info("rotated api key secrets expired", extra={"expired": count})
    return count


# --- Demo -------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoCredentials:
    password: str
    api_key: str
    key_id: str


def demo_seed(*, email: str, organization_name: str, key_name: str) -> DemoCredentials:
    """Ensures a demo admin, organization and key; issues a fresh password and secret.

    The previous demo secret stops at once: a demo key has no clients to
    migrate, and an old printed key should not linger.
    """
    password = random_token(20)
    with transaction.atomic(durable=True):
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            user = User.objects.create_superuser(email, password, full_name="OneFlow Admin")
        else:
            user.set_password(password)
            user.save(update_fields=["password"])
        membership = Membership.objects.filter(user=user, organization__name=organization_name).first()
        organization = membership.organization if membership else None
    if organization is None:
        organization = organization_create(name=organization_name, owner=user)
    key = ApiKey.objects.filter(organization=organization, name=key_name, status=ApiKey.Status.ACTIVE).first()
    if key is None or not key.is_usable_at(timezone.now()):
        issued = api_key_create(organization=organization, name=key_name, created_by=user)
    else:
        issued = api_key_rotate(key=key, grace_period=timedelta(0))
    return DemoCredentials(password=password, api_key=issued.raw, key_id=issued.key.public_id)


# --- Invitations ----------------------------------------------------------------------


def membership_invite(
    *, organization: Organization, email: str, role: str, invited_by: Membership, site_url: str = ""
) -> Membership:
    """Adds the person with ``email`` to the organization, creating their user if need be,
    and emails them: a sign-in link, or for a new user a link to set their password.

    A new user gets an unusable password (not an inactive account): the set-password
    link then lets them sign in, with nothing else to switch on.
    """
    _require_role_change_allowed(actor=invited_by, role=role, target=None)
    email = User.objects.normalize_email(email).strip().lower()
    try:
        with transaction.atomic(durable=True):
            user = User.objects.filter(email__iexact=email).first()
            created = user is None
            if user is None:
                user = User.objects.create_user(email, None)
            membership = Membership.objects.create(organization=organization, user=user, role=role)
    except IntegrityError:
        raise Conflict("This user is already a member.", code="already_member", param="email") from None
    _invitation_email(membership=membership, invited_by=invited_by, new_user=created, site_url=site_url)
    logger.info("member invited", extra={"org_id": organization.pk, "membership_id": membership.pk})
    return membership


def _invitation_email(*, membership: Membership, invited_by: Membership, new_user: bool, site_url: str) -> None:
    user = membership.user
    if new_user:
        uid = urlsafe_base64_encode(force_bytes(user.pk))
        path = reverse("password-reset-confirm", args=[uid, default_token_generator.make_token(user)])
        action = f"Set your password to sign in: {site_url}{path}"
    else:
        action = f"Sign in to see it: {site_url}{reverse('signin')}"
    inviter = invited_by.user.full_name or invited_by.user.email
    # A line break in a name must not reach the header (send_mail would refuse it).
    subject = " ".join(f"OneFlow: you were added to {membership.organization.name}".split())
    body = (
        f"{inviter} added you to {membership.organization.name} on OneFlow as {membership.get_role_display()}.\n\n"
        f"{action}\n"
    )
    send_mail(subject, body, None, [user.email])
