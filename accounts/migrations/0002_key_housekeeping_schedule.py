"""Seeds the beat schedule for key housekeeping. Operators edit it in the admin
(Periodic tasks); later migrations never overwrite what they changed."""

from django.db import migrations

SCHEDULES = [
    # (task name, registered task, every N seconds)
    ("Rotate API keys whose policy is due", "accounts.rotate_due_api_keys", 3600),
    ("Revoke rotated API key secrets past their grace", "accounts.expire_rotated_api_key_secrets", 300),
]


def seed(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, seconds in SCHEDULES:
        interval, _ = IntervalSchedule.objects.get_or_create(every=seconds, period="seconds")
        PeriodicTask.objects.get_or_create(name=name, defaults={"task": task, "interval": interval})


def unseed(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[name for name, _, _ in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(seed, unseed)]
