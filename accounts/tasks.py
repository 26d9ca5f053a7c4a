"""Scheduled key housekeeping. Beat runs these; see the periodic tasks in the admin."""

from __future__ import annotations

from celery import shared_task

from accounts import services


@shared_task(name="accounts.rotate_due_api_keys")
def rotate_due_api_keys() -> int:
    return services.api_keys_rotate_due()


@shared_task(name="accounts.expire_rotated_api_key_secrets")
def expire_rotated_api_key_secrets() -> int:
    return services.api_key_secrets_expire()
