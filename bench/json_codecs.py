"""Times the JSON codecs the gateway could use on the bodies it actually handles:
a chat request, a chat response and a stream chunk. Prints microseconds per
decode + encode round trip. Run: .venv/bin/python bench/json_codecs.py
"""

from __future__ import annotations

import functools
import json
import timeit
from typing import Any

import orjson

REQUEST = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant. " * 8},
        {"role": "user", "content": "Summarise the following text in three bullet points. " + "lorem ipsum " * 120},
    ],
    "temperature": 0.2,
    "max_tokens": 256,
    "stream": False,
}
RESPONSE = {
    "id": "chatcmpl-0123456789abcdef",
    "object": "chat.completion",
    "created": 1795854610,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "- one\n- two\n- three " * 10, "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 412, "completion_tokens": 96, "total_tokens": 508},
}
CHUNK = {
    "id": "chatcmpl-0123456789abcdef",
    "object": "chat.completion.chunk",
    "created": 1795854610,
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "delta": {"content": " word"}, "finish_reason": None}],
    "usage": None,
}

CODECS = {
    "json (stdlib)": (json.loads, lambda v: json.dumps(v, separators=(",", ":")).encode()),
    "orjson": (orjson.loads, orjson.dumps),
}


def _round_trip(raw: Any, loads: Any, dumps: Any) -> None:
    dumps(loads(raw))


def main() -> None:
    print(f"{'codec':<16}{'request µs':>12}{'response µs':>13}{'chunk µs':>10}")
    for name, (loads, dumps) in CODECS.items():
        row = []
        for body in (REQUEST, RESPONSE, CHUNK):
            raw = dumps(body)
            runs = 20_000
            seconds = timeit.timeit(functools.partial(_round_trip, raw, loads, dumps), number=runs)
            row.append(seconds / runs * 1e6)
        print(f"{name:<16}{row[0]:>12.2f}{row[1]:>13.2f}{row[2]:>10.2f}")


if __name__ == "__main__":
    main()
