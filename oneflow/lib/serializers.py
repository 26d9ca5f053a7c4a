"""Input fields of the REST API that take what their schema says and nothing else.

DRF's CharField turns a number into its text (``"name": 123`` becomes ``"123"``),
though the OpenAPI schema says "string": a client that sends a number has a bug
worth a 400, not a name it did not mean.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class StringOnly:
    """Refuses any JSON value but a string, before the field's own checks."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid")  # type: ignore[attr-defined]
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictCharField(StringOnly, serializers.CharField):
    pass


class StrictEmailField(StringOnly, serializers.EmailField):
    pass


def page_of(results: serializers.Serializer, name: str) -> type[serializers.Serializer]:
    """The schema of one page of a paginated list (DRF's PageNumberPagination)."""
    fields: dict[str, Any] = {
        "count": serializers.IntegerField(),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": results,
    }
    return type(name, (serializers.Serializer,), fields)
