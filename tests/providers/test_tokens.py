"""Token counting offline, and the cheap upper bound the credit hold uses."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from providers import tokens


def test_counts_match_the_known_encodings() -> None:
    assert tokens.count_text("hello world", model="gpt-4o-mini") == 2
    assert tokens.encoding_name("gpt-4o-mini") == "o200k_base"
    assert tokens.encoding_name("claude-sonnet-4") == "cl100k_base"
    assert tokens.count_text("<|endoftext|>", model="gpt-4") > 1, "special tokens are counted as text"
    body = {"messages": [{"role": "user", "content": "Hello"}]}
    assert tokens.count_chat_prompt(body, model="gpt-4o-mini") == 7  # 3 primer + 3 framing + 1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.text(max_size=300), min_size=1, max_size=5),
    st.sampled_from(["gpt-4o-mini", "gpt-4", "claude-sonnet-4"]),
)
def test_the_byte_bound_is_never_below_the_real_count(texts: list[str], model: str) -> None:
    body = {"messages": [{"role": "user", "content": text} for text in texts]}
    assert tokens.prompt_upper_bound(body) >= tokens.count_chat_prompt(body, model=model)


def test_the_bound_of_token_arrays_is_their_length() -> None:
    assert tokens.prompt_upper_bound({"input": [1, 2, 3]}) == 3
