"""Seeds the beat schedule for key housekeeping. Operators edit it in the admin
(Periodic tasks); later migrations never overwrite what they changed."""

from django.db import migrations

from oneflow.lib.schedules import seed_schedules

SCHEDULES = [
    # (task name, registered task, every N seconds)
    ("Rotate API keys whose policy is due", "accounts.rotate_due_api_keys", 3600),
    ("Revoke rotated API key secrets past their grace", "accounts.expire_rotated_api_key_secrets", 300),
]


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [seed_schedules(SCHEDULES)]
