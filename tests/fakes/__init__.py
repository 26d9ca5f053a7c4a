"""Fake upstream providers speaking the real wire protocols over HTTP on 127.0.0.1.

    with FakeUpstream(api_key="sk-upstream") as up:
        up.script(Behave(status=429, headers={"retry-after": "1"}), Behave(cut_after=2))
        ...  # point the gateway at up.url; inspect up.requests

Per-protocol expectations live in ``openai_api``, ``anthropic_api`` and ``gemini_api``
(``expected_prompt_tokens(request_json)``, ``expected_completion_tokens(text, tool_call=None)``).
"""

from tests.fakes.common import DEFAULT_REPLY, JSON_REPLY, Behave, RecordedRequest, split_reply
from tests.fakes.server import FakeUpstream

__all__ = ["DEFAULT_REPLY", "JSON_REPLY", "Behave", "FakeUpstream", "RecordedRequest", "split_reply"]
