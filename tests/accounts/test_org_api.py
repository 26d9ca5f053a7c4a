"""Organizations, members and API keys over the REST API."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts import selectors, services
from accounts.models import ApiKey, ApiKeySecret, Membership, Organization, User


def keys_url(org: Organization, suffix: str = "") -> str:
    return f"/api/organizations/{org.pk}/keys{suffix}"


def test_creating_an_organization_makes_the_creator_its_owner(as_carol: APIClient, carol: User) -> None:
    response = as_carol.post("/api/organizations", {"name": "Carol's Lab"}, format="json")
    assert response.status_code == 201
    org = Organization.objects.get(pk=response.json()["id"])
    assert org.slug == "carols-lab"
    assert Membership.objects.get(organization=org, user=carol).role == "owner"
    assert [o["name"] for o in as_carol.get("/api/organizations").json()] == ["Carol's Lab"]


def test_outsiders_get_404_for_an_organization_they_do_not_belong_to(as_carol: APIClient, acme: Organization) -> None:
    for url in (f"/api/organizations/{acme.pk}", f"/api/organizations/{acme.pk}/members", keys_url(acme)):
        response = as_carol.get(url)
        assert response.status_code == 404, url
        assert response.json()["error"]["code"] == "organization_not_found"


def test_an_owner_creates_a_key_and_sees_its_secret_only_once(as_alice: APIClient, acme: Organization) -> None:
    payload = {
        "name": "backend",
        "allowed_models": ["gpt-4o-mini"],
        "limits": {"rpm": 120, "output_tpm": 50_000},
        "grace_period_seconds": 3600,
    }
    created = as_alice.post(keys_url(acme), payload, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["secret"].startswith("of_live_")
    assert selectors.api_key_authenticate(raw=body["secret"]) is not None
    assert body["limits"] == {"rpm": 120, "rph": None, "input_tpm": None, "output_tpm": 50_000, "concurrency": None}
    assert body["grace_period_seconds"] == 3600
    assert body["secrets"][0]["prefix"] == body["secret"][: len("of_live_") + 12]

    listed = as_alice.get(keys_url(acme)).json()
    assert [k["id"] for k in listed] == [body["id"]]
    assert body["secret"] not in str(listed)
    assert body["secret"] not in str(as_alice.get(keys_url(acme, f"/{body['id']}")).json())


def test_members_may_read_keys_but_not_manage_them(as_bob: APIClient, acme: Organization, acme_key) -> None:
    assert as_bob.get(keys_url(acme)).status_code == 200
    response = as_bob.post(keys_url(acme), {"name": "mine"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"
    assert as_bob.post(keys_url(acme, f"/{acme_key.key.public_id}/revoke")).status_code == 403
    assert selectors.api_key_authenticate(raw=acme_key.raw) is not None


def test_rotating_through_the_api_keeps_both_secrets_working(as_alice: APIClient, acme: Organization, acme_key) -> None:
    response = as_alice.post(keys_url(acme, f"/{acme_key.key.public_id}/rotate"), {}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["id"] == acme_key.key.public_id
    assert selectors.api_key_authenticate(raw=body["secret"]) is not None
    assert selectors.api_key_authenticate(raw=acme_key.raw) is not None
    assert [s["rotation"] for s in body["secrets"]] == [1, 0]
    assert body["secrets"][0]["valid_until"] is None
    assert body["secrets"][1]["valid_until"] is not None


def test_revoking_through_the_api_stops_the_key_at_once(as_alice: APIClient, acme: Organization, acme_key) -> None:
    response = as_alice.post(keys_url(acme, f"/{acme_key.key.public_id}/revoke"))
    assert response.status_code == 200
    assert response.json()["status"] == "revoked"
    assert response.json()["secrets"] == []
    assert selectors.api_key_authenticate(raw=acme_key.raw) is None
    again = as_alice.post(keys_url(acme, f"/{acme_key.key.public_id}/rotate"), {}, format="json")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "key_not_active"


def test_updating_limits_and_policies(as_alice: APIClient, acme: Organization, acme_key) -> None:
    url = keys_url(acme, f"/{acme_key.key.public_id}")
    response = as_alice.patch(
        url, {"limits": {"rpm": 10, "concurrency": 2}, "rotation_interval_days": 30, "name": "ci-2"}, format="json"
    )
    assert response.status_code == 200, response.content
    key = ApiKey.objects.get(pk=acme_key.key.pk)
    assert (key.name, key.limit_rpm, key.limit_concurrency, key.rotation_interval_days) == ("ci-2", 10, 2, 30)
    assert key.next_rotation_at is not None
    cleared = as_alice.patch(url, {"limits": {"rpm": None}, "rotation_interval_days": None}, format="json").json()
    assert cleared["limits"]["rpm"] is None
    assert cleared["limits"]["concurrency"] == 2
    assert cleared["next_rotation_at"] is None


def test_bad_input_gets_a_clear_error_naming_the_field(as_alice: APIClient, acme: Organization) -> None:
    response = as_alice.post(keys_url(acme), {"name": "x", "limits": {"rpm": 0}}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "limits.rpm"
    assert "greater than or equal to 1" in error["message"]
    past = as_alice.post(keys_url(acme), {"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, format="json")
    assert past.status_code == 400
    assert past.json()["error"]["param"] == "expires_at"
    not_json = as_alice.post(keys_url(acme), "{not json", content_type="application/json")
    assert not_json.status_code == 400
    assert "JSON parse error" in not_json.json()["error"]["message"]


def test_a_pending_scheduled_rotation_is_revealed_once(as_alice: APIClient, acme: Organization, acme_key) -> None:
    issued = services.api_key_rotate(key=acme_key.key, sealed=True)
    url = keys_url(acme, f"/{acme_key.key.public_id}")
    assert as_alice.get(url).json()["reveal_pending"] is True
    revealed = as_alice.post(f"{url}/reveal")
    assert revealed.json() == {"secret": issued.raw}
    assert revealed["Cache-Control"] == "no-store"
    assert as_alice.post(f"{url}/reveal").status_code == 404
    assert as_alice.get(url).json()["reveal_pending"] is False


def test_owners_manage_members_and_the_last_owner_stays(
    as_alice: APIClient, as_bob: APIClient, acme: Organization, alice: User, carol: User
) -> None:
    members_url = f"/api/organizations/{acme.pk}/members"
    added = as_alice.post(members_url, {"email": carol.email, "role": "admin"}, format="json")
    assert added.status_code == 201
    assert as_alice.post(members_url, {"email": carol.email}, format="json").status_code == 409
    assert as_bob.post(members_url, {"email": "x@example.com"}, format="json").status_code == 403

    alice_membership = Membership.objects.get(organization=acme, user=alice)
    demote = as_alice.patch(f"{members_url}/{alice_membership.pk}", {"role": "member"}, format="json")
    assert demote.status_code == 409
    assert demote.json()["error"]["code"] == "last_owner"
    assert as_alice.delete(f"{members_url}/{alice_membership.pk}").status_code == 409

    carol_id = added.json()["id"]
    as_carol = APIClient()
    as_carol.force_authenticate(carol)
    # An admin cannot make someone an owner.
    assert as_carol.patch(f"{members_url}/{carol_id}", {"role": "owner"}, format="json").status_code == 403
    assert as_alice.delete(f"{members_url}/{carol_id}").status_code == 204
    assert not Membership.objects.filter(organization=acme, user=carol).exists()


def test_organization_grace_period_applies_to_its_keys(as_alice: APIClient, acme: Organization, acme_key) -> None:
    response = as_alice.patch(f"/api/organizations/{acme.pk}", {"api_key_grace_period_seconds": 600}, format="json")
    assert response.status_code == 200
    rotated = as_alice.post(keys_url(acme, f"/{acme_key.key.public_id}/rotate"), {}, format="json").json()
    assert rotated["grace_period_seconds"] == 600
    old = ApiKeySecret.objects.get(pk=acme_key.secret.pk)
    assert old.valid_until is not None
    assert 590 <= (old.valid_until - old.key.secrets.get(rotation=1).created_at).total_seconds() <= 600


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"limits": {"rph": 2_147_483_648}}, "limits.rph"),
        ({"limits": {"rpm": 10**12}}, "limits.rpm"),
        ({"grace_period_seconds": 10**18}, "grace_period_seconds"),
    ],
)
def test_numbers_beyond_what_a_key_can_hold_are_refused_not_crashed_on(
    as_alice: APIClient, acme: Organization, acme_key, body: dict, param: str
) -> None:
    response = as_alice.patch(keys_url(acme, f"/{acme_key.key.public_id}"), body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_the_hourly_limit_is_set_through_the_api(as_alice: APIClient, acme: Organization, acme_key) -> None:
    url = keys_url(acme, f"/{acme_key.key.public_id}")
    assert as_alice.patch(url, {"limits": {"rph": 500}}, format="json").json()["limits"]["rph"] == 500
    assert ApiKey.objects.get(pk=acme_key.key.pk).limit_rph == 500


def test_a_playground_key_has_nothing_to_reveal(as_alice: APIClient, acme: Organization, alice: User) -> None:
    services.playground_key_for(organization=acme, user=alice)
    key = ApiKey.objects.get(organization=acme, purpose=ApiKey.Purpose.PLAYGROUND)
    url = keys_url(acme, f"/{key.public_id}")
    assert as_alice.get(url).json()["reveal_pending"] is False
    assert as_alice.post(f"{url}/reveal").status_code == 404
