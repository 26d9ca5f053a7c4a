"""The internal chat answer -> an OpenAI Response object, and usage both ways.

A chat completion (or, streamed, ``providers.translate.responses_stream``) from a
deployment that does not speak the Responses API goes back to the ``/v1/responses``
client as OpenAI would answer: its items, its status, its usage, and the request's
settings echoed. docs/translation.md has the rules.

Everything here is a pure function of decoded JSON; no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from providers.tokens import openai_usage
from providers.translate.responses import CUSTOM_INPUT, Json, ToolName, Translation, new_id

# --- usage ---


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from_responses(usage: Mapping[str, Any]) -> Json:
    """A Responses usage object in the internal (OpenAI chat) terms.

    Both count the same way: ``input_tokens`` (``prompt_tokens``) includes the
    cached tokens, ``output_tokens`` (``completion_tokens``) the reasoning tokens.
    """
    input_details = usage.get("input_tokens_details")
    output_details = usage.get("output_tokens_details")
    return openai_usage(
        prompt=_count(usage.get("input_tokens")),
        completion=_count(usage.get("output_tokens")),
        cached=_count(input_details.get("cached_tokens")) if isinstance(input_details, dict) else 0,
        reasoning=_count(output_details.get("reasoning_tokens")) if isinstance(output_details, dict) else 0,
    )


def usage_to_responses(usage: Mapping[str, Any] | None) -> Json:
    """Internal usage as a Responses usage object (cache writes, Anthropic's, in ``cache_write_tokens``)."""
    usage = usage or {}
    prompt_details = usage.get("prompt_tokens_details")
    prompt_details = prompt_details if isinstance(prompt_details, dict) else {}
    completion_details = usage.get("completion_tokens_details")
    completion_details = completion_details if isinstance(completion_details, dict) else {}
    prompt, completion = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    writes = _count(prompt_details.get("cache_write_5m_tokens")) + _count(prompt_details.get("cache_write_1h_tokens"))
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": _count(prompt_details.get("cached_tokens")),
            "cache_write_tokens": writes,
        },
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": _count(completion_details.get("reasoning_tokens"))},
        "total_tokens": prompt + completion,
    }


# --- the Response object ------------------------------------------------------------------


# The chat finish reasons that leave a Response incomplete, and the reason it then gives.
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_object(
    translation: Translation,
    *,
    response_id: str,
    model: str,
    created_at: int,
    status: str,
    output: list[Json],
    usage: Json | None = None,
    incomplete: str | None = None,
    error: Json | None = None,
) -> Json:
    """A Response object: the answer's items, and the request's settings echoed as OpenAI does."""
    request = translation.request
    reasoning: Json = request["reasoning"] if isinstance(request.get("reasoning"), dict) else {}
    text: Json = request["text"] if isinstance(request.get("text"), dict) else {}
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "max_tool_calls": request.get("max_tool_calls"),
        "model": model,
        "output": output,
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "prompt_cache_key": request.get("prompt_cache_key"),
        "reasoning": {"effort": None, "summary": None} | reasoning,
        "safety_identifier": request.get("safety_identifier"),
        "service_tier": request.get("service_tier") or "default",
        "store": False,
        "temperature": request.get("temperature", 1.0),
        "text": {"format": {"type": "text"}} | text,
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools") or [],
        "top_p": request.get("top_p", 1.0),
        "truncation": request.get("truncation") or "disabled",
        "usage": usage,
        "user": request.get("user"),
        "metadata": request.get("metadata") or {},
    }


def openai_response_to_responses(
    completion: Json, translation: Translation, *, response_id: str, model: str, created_at: int
) -> Json:
    """A chat completion (choice 0; Responses has no ``n``) as a Response object."""
    choices = completion.get("choices") or [{}]
    choice: Json = choices[0] if isinstance(choices[0], dict) else {}
    message: Json = choice["message"] if isinstance(choice.get("message"), dict) else {}
    incomplete = INCOMPLETE.get(str(choice.get("finish_reason")))
    output: list[Json] = []
    if isinstance(message.get("reasoning_content"), str) and message["reasoning_content"]:
        output.append(reasoning_item(new_id("rs"), message["reasoning_content"]))
    content = _content_text(message.get("content"))
    parts = [output_text(content)] if content else []
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    if parts:
        output.append(message_item(new_id("msg"), parts, status="incomplete" if incomplete else "completed"))
    for call in message.get("tool_calls") or []:
        if not isinstance(call, dict):
            continue
        function: Json = call["function"] if isinstance(call.get("function"), dict) else {}
        call_id = str(call.get("id") or new_id("call"))
        arguments = function["arguments"] if isinstance(function.get("arguments"), str) else ""
        tool = translation.tool(str(function.get("name") or ""))
        output.append(call_item(tool, call_id, arguments))
    return response_object(
        translation,
        response_id=response_id,
        model=model,
        created_at=created_at,
        status="incomplete" if incomplete else "completed",
        output=output,
        usage=usage_to_responses(completion.get("usage")),
        incomplete=incomplete,
    )


def _content_text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(part.get("text") or "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def output_text(text: str) -> Json:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, content: list[Json], *, status: str) -> Json:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def reasoning_item(item_id: str, text: str | None) -> Json:
    """Reasoning a chat upstream returned as text: Responses' ``reasoning_text`` content (as
    open-weight models report it), never a summary and never ``encrypted_content``."""
    content = [] if text is None else [{"type": "reasoning_text", "text": text}]
    return {"id": item_id, "type": "reasoning", "summary": [], "content": content}


def call_item(tool: ToolName, call_id: str, arguments: str, *, item_id: str | None = None, done: bool = True) -> Json:
    """A function_call item, or a custom_tool_call item for a custom tool."""
    status = "completed" if done else "in_progress"
    if tool.custom:
        item = {
            "id": item_id or new_id("ctc"),
            "type": "custom_tool_call",
            "status": status,
            "call_id": call_id,
            "name": tool.name,
            "input": custom_input(arguments) if done else "",
        }
    else:
        item = {
            "id": item_id or new_id("fc"),
            "type": "function_call",
            "status": status,
            "arguments": arguments,
            "call_id": call_id,
            "name": tool.name,
        }
    if tool.namespace:
        item["namespace"] = tool.namespace
    return item


def custom_input(arguments: str) -> str:
    """A custom tool's input from the function arguments it travelled in (as sent, if they are not that shape)."""
    try:
        decoded = json.loads(arguments)
    except ValueError:
        return arguments
    value = decoded.get(CUSTOM_INPUT) if isinstance(decoded, dict) else None
    return value if isinstance(value, str) else arguments
