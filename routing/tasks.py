"""Routing's scheduled work. Beat runs these; see the periodic tasks in the admin."""

from __future__ import annotations

from celery import shared_task

from routing import probes


@shared_task(name="routing.probe_deployments")
def probe_deployments() -> dict[int, str]:
    return probes.deployments_probe()
