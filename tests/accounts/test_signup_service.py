"""Sign-up creates a user and their first organization together, or neither."""

from __future__ import annotations

import pytest

from accounts import services
from accounts.models import Membership, Organization, User
from oneflow.lib.errors import Conflict, InvalidInput

PASSWORD = "correct horse battery staple"

pytestmark = pytest.mark.django_db(transaction=True)


def test_signup_makes_the_user_the_owner_of_a_new_organization() -> None:
    user, organization = services.signup(
        email="New.Person@Example.com", password=PASSWORD, full_name="New Person", organization_name="  Initech "
    )

    assert user.email == "new.person@example.com"
    assert user.check_password(PASSWORD)
    assert organization.name == "Initech"
    membership = Membership.objects.get(user=user, organization=organization)
    assert membership.role == Membership.Role.OWNER


@pytest.mark.parametrize("name", ["", "   ", "x" * 121])
def test_an_unusable_organization_name_leaves_no_user_behind(name: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        services.signup(email="new@example.com", password=PASSWORD, full_name="", organization_name=name)

    assert refused.value.param == "organization"
    assert not User.objects.filter(email="new@example.com").exists()
    assert not Organization.objects.exists()


def test_a_taken_address_creates_no_organization() -> None:
    services.signup(email="taken@example.com", password=PASSWORD, full_name="", organization_name="First")

    with pytest.raises(Conflict):
        services.signup(email="TAKEN@example.com", password=PASSWORD, full_name="", organization_name="Second")

    assert list(Organization.objects.values_list("name", flat=True)) == ["First"]


def test_a_weak_password_creates_nothing() -> None:
    with pytest.raises(InvalidInput) as refused:
        services.signup(email="new@example.com", password="short", full_name="", organization_name="Initech")

    assert refused.value.param == "password"
    assert not User.objects.exists()
    assert not Organization.objects.exists()
