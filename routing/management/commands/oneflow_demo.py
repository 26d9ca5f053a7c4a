"""Seeds the demo tenant and prints how to use it: ``manage.py oneflow_demo``.

Run by the README's first command. Each run issues a fresh demo API key and a
fresh admin password, since neither can be read back once shown.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts import services
from accounts.models import Organization
from billing.services import credits_grant
from providers.services import DEMO_CHAT_MODEL, catalog_seed_demo

DEMO_EMAIL = "admin@oneflow.local"
DEMO_ORG = "Demo"
DEMO_KEY_NAME = "demo"
DEMO_CREDITS = Decimal(100)


class Command(BaseCommand):
    help = "Create (or refresh) the demo organization, admin user and API key, and print them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="Where OneFlow will serve.")

    def handle(self, *args: Any, **options: Any) -> None:
        demo = services.demo_seed(email=DEMO_EMAIL, organization_name=DEMO_ORG, key_name=DEMO_KEY_NAME)
        served_by = "OpenAI (OPENAI_API_KEY)" if catalog_seed_demo() else "the built-in simulator"
        organization = Organization.objects.get(api_keys__public_id=demo.key_id)
        # Once per database: the key is the same on every start.
        credits_grant(organization=organization, amount=DEMO_CREDITS, idempotency_key="demo-credits", note="demo")
        base_url = options["base_url"].rstrip("/")
        self.stdout.write("")
        self.stdout.write(f"OneFlow admin:  {base_url}/admin/  {DEMO_EMAIL} / {demo.password}")
        # The admin owns the demo organization: the same login opens the customer dashboard.
        self.stdout.write(f"Dashboard:      {base_url}/dashboard/  (same login; try the Playground)")
        self.stdout.write("OneFlow demo API key:")
        self.stdout.write(demo.api_key)
        self.stdout.write(f"Model {DEMO_CHAT_MODEL} is served by {served_by}. Try:")
        self.stdout.write(
            f"  curl {base_url}/v1/chat/completions -H 'Authorization: Bearer <key>' "
            f"-H 'Content-Type: application/json' "
            f'-d \'{{"model": "{DEMO_CHAT_MODEL}", "messages": [{{"role": "user", "content": "Hello"}}]}}\''
        )
        self.stdout.write("")
