"""Seeds a bench tenant: the fake upstream (bench/load/upstream.py, at BENCH_UPSTREAM)
as an OpenAI-compatible provider serving gpt-4o-mini, and an API key (printed on the
last line). bench/load/system.py runs it on a fresh database."""

from __future__ import annotations

import os
import sys
from decimal import Decimal

import django

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oneflow.settings")
django.setup()

from accounts import services as accounts  # noqa: E402
from accounts.models import Organization, User  # noqa: E402
from billing.services import credits_grant  # noqa: E402
from providers.models import Credential, Deployment, Provider, PublicModel  # noqa: E402
from providers.services import credential_set_secret  # noqa: E402

UPSTREAM = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:18001/v1")

provider = Provider.objects.create(name="bench-upstream", kind=Provider.Kind.OPENAI_COMPATIBLE, base_url=UPSTREAM)
credential = Credential.objects.create(provider=provider, name="bench")
# The fake upstream accepts any key; this one only has to be non-empty.
credential_set_secret(credential=credential, secret="sk-bench-upstream")  # noqa: S106
model = PublicModel.objects.create(name="gpt-4o-mini")
Deployment.objects.create(public_model=model, provider=provider, credential=credential, upstream_model="gpt-4o-mini")
owner = User.objects.create_user("bench@oneflow.local", None)
organization = accounts.organization_create(name="Bench", owner=owner)
credits_grant(organization=organization, amount=Decimal(10) ** 9, idempotency_key="bench-credits")
# Limits stay on (their scripts run on every request) but never bind.
Organization.objects.filter(pk=organization.pk).update(limit_rpm=2_000_000_000, limit_rph=2_000_000_000)
print(accounts.api_key_create(organization=organization, name="bench", created_by=owner).raw)
