"""Pure translations between OneFlow's internal OpenAI format and other providers' wire formats."""

from __future__ import annotations

from typing import Any

# The deepest JSON a request may carry, arrays and objects counted: far beyond
# any real request (a JSON Schema 40 objects deep fits), far below orjson's 255
# levels of output and Python's recursion limit, which the prompt bound, the
# translators and the upstream call all depend on.
MAX_DEPTH = 100


def nests_deeper(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests arrays and objects deeper than ``limit``. Iterative: no recursion to exhaust."""
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
