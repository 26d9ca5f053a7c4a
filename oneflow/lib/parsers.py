"""The REST API's JSON parser: DRF's, with the nesting depth bounded.

DRF's JSONParser lets the ``RecursionError`` of a deeply nested body (a
hundred thousand ``[``) through as a 500, before any authentication. No
OneFlow input nests deeper than a few levels, so anything past MAX_DEPTH is
a 400 ParseError, however deep it goes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# Far above any REST input's real shape (a key's limits are 2 levels deep).
MAX_DEPTH = 32


def nesting_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests arrays and objects more than ``limit`` levels deep (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, Mapping) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class BoundedJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        too_deep = ParseError(f"JSON parse error - the body nests deeper than {MAX_DEPTH} levels.")
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise too_deep from None
        if nesting_depth_exceeds(data, MAX_DEPTH):
            raise too_deep
        return data
