"""Reads for routing."""

from __future__ import annotations

from collections import defaultdict

from routing.models import ModelAccess


def model_grants() -> dict[int, frozenset[int]]:
    """Organization id -> ids of the non-public models it was granted."""
    grants: defaultdict[int, set[int]] = defaultdict(set)
    for organization_id, model_id in ModelAccess.objects.values_list("organization_id", "public_model_id"):
        grants[organization_id].add(model_id)
    return {organization_id: frozenset(ids) for organization_id, ids in grants.items()}
