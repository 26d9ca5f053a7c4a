"""What both directions share (``providers.translate.anthropic_format``): Anthropic's stop
reasons mapped into OpenAI's set of finish reasons."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers.translate.anthropic_format import finish_reason_from_anthropic


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
        ("something_new", "stop"),
        (None, "stop"),
    ],
)
def test_it_maps_anthropic_stop_reasons(stop_reason: str | None, finish_reason: str) -> None:
    assert finish_reason_from_anthropic(stop_reason) == finish_reason


@given(st.one_of(st.none(), st.text()))
def test_it_always_maps_stop_reasons_into_the_openai_set(stop_reason: str | None) -> None:
    assert finish_reason_from_anthropic(stop_reason) in {"stop", "length", "tool_calls", "content_filter"}
