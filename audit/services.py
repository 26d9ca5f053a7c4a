"""Writes to the audit log. Entries are appended, never updated or deleted."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db.models import Model

from audit.models import AuditEncoder, AuditEntry

# What the log says for a secret that changed: never its value, sealed or not.
SECRET_MASK = "(changed)"  # noqa: S105 - the placeholder that stands for a secret
# A field or input whose name holds one of these is a secret: sealed_secret, secret_hash, password1...
_SECRET_WORDS = ("secret", "password")


def is_secret(name: str) -> bool:
    return any(word in name for word in _SECRET_WORDS)


def _change(before: Any, after: Any) -> dict[str, Any]:
    return {"before": before, "after": after}


def _masked(changes: dict[str, Any]) -> dict[str, Any]:
    return {name: SECRET_MASK if is_secret(name) else value for name, value in changes.items()}


def form_changes(form: forms.BaseModelForm[Any]) -> dict[str, Any]:
    """The model fields a ModelForm changed, as {"field": {"before": ..., "after": ...}},
    and its write-only secret inputs as SECRET_MASK.

    "Before" is what the form was given (nothing when adding). Other inputs a
    form carries, such as an amount to grant, feed an action that records
    itself, so they are left out here."""
    model_fields = {field.name for field in form.instance._meta.get_fields()}
    changes: dict[str, Any] = {}
    for name in form.changed_data:
        if is_secret(name):
            changes[name] = SECRET_MASK
        elif name in model_fields:
            before, after = _stored(form.initial.get(name)), _stored(form.cleaned_data.get(name))
            # Django counts a field with a callable default as changed when the page's hidden
            # initial value is missing from the post; the log keeps real changes only.
            if before != after:
                changes[name] = _change(before, after)
    return changes


def _stored(value: Any) -> Any:
    """A form value as the log stores it: a related row as its id, a time or an amount as text."""
    return json.loads(json.dumps(value, cls=AuditEncoder))


def row_changes(obj: Model, *, deleted: bool = False) -> dict[str, Any]:
    """A row's stored values as the changes of its creation (or, ``deleted``, of its
    deletion): every value against nothing, a stored secret as SECRET_MASK."""
    changes: dict[str, Any] = {}
    for field in obj._meta.concrete_fields:
        value = field.value_from_object(obj)
        if field.primary_key or (is_secret(field.name) and not value):
            continue
        changes[field.name] = _change(value, None) if deleted else _change(None, value)
    return _masked(changes)


def audit_record(
    *,
    actor: AbstractBaseUser | AnonymousUser | None,
    action: str,
    obj: Model | None = None,
    model: type[Model] | None = None,
    object_id: Any = None,
    changes: dict[str, Any] | None = None,
) -> AuditEntry:
    """Appends one entry to the audit log: ``actor`` did ``action`` (an AuditEntry.Action) to a row.

    ``obj`` is the row (its concrete model, id and text are recorded); without
    one, ``model`` and ``object_id`` name it. ``object_id`` also gives the id of
    a row already deleted. ``changes`` holds the changed fields only, as built
    by form_changes or row_changes; any entry named like a secret is masked
    here whoever built it. The entry joins the caller's transaction, so a
    change and its record commit or roll back together (the admin runs its
    add, change and delete views in one)."""
    if obj is not None:
        model = type(obj)
        object_id = obj.pk if object_id is None else object_id
    if model is None:
        raise ValueError("audit_record names the row acted on: obj, or model and object_id.")
    meta = (model._meta.concrete_model or model)._meta  # a proxy's rows are its concrete model's
    known = actor is not None and actor.is_authenticated
    return AuditEntry.objects.create(
        actor_id=actor.pk if known else None,  # type: ignore[union-attr]
        actor_email=getattr(actor, "email", "") if known else "",
        action=action,
        app_label=meta.app_label,
        model=meta.model_name or "",
        object_id="" if object_id is None else str(object_id),
        object_repr="" if obj is None else str(obj)[:200],
        changes=_masked(changes or {}),
    )
