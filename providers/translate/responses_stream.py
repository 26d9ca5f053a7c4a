"""Internal chat chunks -> the Responses API's typed stream events.

The events come in the order OpenAI sends them (openai-python
``types/responses/*_event.py``; the SDK's ``responses.stream`` accumulates them
and checks that order): ``response.created``, ``response.in_progress``, then per
output item ``response.output_item.added``, its content part
(``response.content_part.added``, the deltas, the ``….done`` of the text and of
the part) or its argument deltas, ``response.output_item.done``; and last one
terminal event, ``response.completed``, ``response.incomplete`` or
``response.failed``. Every event has a ``sequence_number`` from 0. There is no
``[DONE]``.

Everything here is a pure function of decoded JSON; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from providers.translate.responses import Json, ToolName, Translation, new_id
from providers.translate.responses_answer import (
    INCOMPLETE,
    call_item,
    custom_input,
    message_item,
    output_text,
    reasoning_item,
    response_object,
    usage_to_responses,
)


@dataclass
class _Item:
    """One output item while it streams."""

    index: int  # its output_index
    item_id: str
    kind: str  # "message", "reasoning" or "call"
    parts: list[Json] = field(default_factory=list)  # a message's finished content parts
    part: str | None = None  # the content part being written: "output_text", "refusal", "reasoning_text"
    text: str = ""  # the open part's text so far, or a call's arguments
    tool: ToolName | None = None
    call_id: str = ""
    done: bool = False


class OpenAIStreamToResponses:
    """Turns internal ``chat.completion.chunk`` dicts into Responses stream events.

    ``feed`` each chunk in order, then ``finish`` once with the call's usage (and
    its cost) for the terminal event; or, when the upstream fails mid-stream,
    ``fail`` instead. Only choice 0 is translated: Responses has no ``n``.
    """

    def __init__(self, translation: Translation, *, response_id: str, model: str, created_at: int) -> None:
        self._translation = translation
        self._response_id, self._model, self._created_at = response_id, model, created_at
        self._sequence = 0
        self._started = False
        self._ended = False
        self._items: list[_Item] = []
        self._open: _Item | None = None  # the item deltas go to; a new kind of delta closes it
        self._calls: dict[int, _Item] = {}  # chat tool_calls index -> its item
        self._finish_reason: str | None = None

    # --- the public steps ---

    def feed(self, chunk: Json) -> list[Json]:
        events = self._start()
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta: Json = choice["delta"] if isinstance(choice.get("delta"), dict) else {}
            if isinstance(delta.get("reasoning_content"), str) and delta["reasoning_content"]:
                events += self._reasoning(delta["reasoning_content"])
            if isinstance(delta.get("content"), str) and delta["content"]:
                events += self._text("output_text", delta["content"])
            if isinstance(delta.get("refusal"), str) and delta["refusal"]:
                events += self._text("refusal", delta["refusal"])
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    events += self._tool_call(call)
            if choice.get("finish_reason"):
                self._finish_reason = str(choice["finish_reason"])
        return events

    def finish(self, usage: Json | None, cost: str | None = None) -> list[Json]:
        """Closes what is open and ends the response: completed, or incomplete (length, content filter)."""
        if self._ended:
            return []
        incomplete = INCOMPLETE.get(self._finish_reason or "")
        events = [*self._start(), *self._close(incomplete=incomplete is not None)]
        self._ended = True
        status = "incomplete" if incomplete else "completed"
        response = self._response(status, usage, cost, incomplete=incomplete)
        return [*events, self._event(f"response.{status}", response=response)]

    def fail(self, message: str, usage: Json | None, cost: str | None = None) -> list[Json]:
        """Ends the response as failed (the upstream broke off mid-stream): a terminal event all the
        same, since clients such as Codex CLI wait for one."""
        if self._ended:
            return []
        events = self._start()
        self._ended = True
        error = {"code": "server_error", "message": message}
        return [*events, self._event("response.failed", response=self._response("failed", usage, cost, error=error))]

    # --- the shape of events ---

    def _event(self, kind: str, **fields: Any) -> Json:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def _response(
        self,
        status: str,
        usage: Json | None,
        cost: str | None,
        *,
        incomplete: str | None = None,
        error: Json | None = None,
    ) -> Json:
        """The terminal response: every item in its final form, the usage with the cost (credits)."""
        reported = usage_to_responses(usage) if usage is not None else None
        if reported is not None and cost is not None:
            reported["cost"] = cost
        output = [self._final(item, incomplete=status != "completed") for item in self._items]
        return response_object(
            self._translation,
            response_id=self._response_id,
            model=self._model,
            created_at=self._created_at,
            status=status,
            output=output,
            usage=reported,
            incomplete=incomplete,
            error=error,
        )

    def _start(self) -> list[Json]:
        if self._started:
            return []
        self._started = True
        response = response_object(
            self._translation,
            response_id=self._response_id,
            model=self._model,
            created_at=self._created_at,
            status="in_progress",
            output=[],
        )
        return [
            self._event("response.created", response=response),
            self._event("response.in_progress", response=response),
        ]

    def _final(self, item: _Item, *, incomplete: bool) -> Json:
        """An item as ``response.output_item.done`` and the terminal response show it."""
        if item.kind == "message":
            return message_item(item.item_id, item.parts, status="incomplete" if incomplete else "completed")
        if item.kind == "reasoning":
            return reasoning_item(item.item_id, "".join(part["text"] for part in item.parts))
        assert item.tool is not None  # noqa: S101 - set for every call item
        return call_item(item.tool, item.call_id, item.text, item_id=item.item_id)

    # --- items ---

    def _add(self, item: _Item, shown: Json) -> list[Json]:
        events = self._close(incomplete=False)
        self._items.append(item)
        self._open = item
        return [*events, self._event("response.output_item.added", output_index=item.index, item=shown)]

    def _close(self, *, incomplete: bool) -> list[Json]:
        item, self._open = self._open, None
        if item is None:
            return []
        events = self._close_part(item)
        if item.kind == "call":
            events += self._close_call(item)
        item.done = True
        return [
            *events,
            self._event(
                "response.output_item.done", output_index=item.index, item=self._final(item, incomplete=incomplete)
            ),
        ]

    def _reasoning(self, text: str) -> list[Json]:
        events: list[Json] = []
        item = self._open
        if item is None or item.kind != "reasoning":
            item = _Item(index=len(self._items), item_id=new_id("rs"), kind="reasoning")
            events += self._add(item, reasoning_item(item.item_id, None))
        return [*events, *self._write(item, "reasoning_text", text)]

    def _text(self, part: str, text: str) -> list[Json]:
        events: list[Json] = []
        item = self._open
        if item is None or item.kind != "message":
            item = _Item(index=len(self._items), item_id=new_id("msg"), kind="message")
            events += self._add(item, message_item(item.item_id, [], status="in_progress"))
        return [*events, *self._write(item, part, text)]

    def _write(self, item: _Item, part: str, text: str) -> list[Json]:
        """A delta of ``part``, opening that part first (and closing another kind)."""
        events: list[Json] = []
        if item.part != part:
            events += self._close_part(item)
            item.part, item.text = part, ""
            events.append(self._part_event("response.content_part.added", item, _part(part, "")))
        item.text += text
        fields = self._part_fields(item) | {"delta": text}
        if part == "output_text":
            fields["logprobs"] = []
        events.append(self._event(_DELTA[part], **fields))
        return events

    def _close_part(self, item: _Item) -> list[Json]:
        if item.part is None or item.kind == "call":
            return []
        part, text = item.part, item.text
        done = self._part_fields(item)
        if part == "refusal":
            events = [self._event("response.refusal.done", **done, refusal=text)]
        elif part == "output_text":
            events = [self._event("response.output_text.done", **done, text=text, logprobs=[])]
        else:
            events = [self._event("response.reasoning_text.done", **done, text=text)]
        events.append(self._part_event("response.content_part.done", item, _part(part, text)))
        item.parts.append(_part(part, text))
        item.part, item.text = None, ""
        return events

    def _part_fields(self, item: _Item) -> Json:
        return {"item_id": item.item_id, "output_index": item.index, "content_index": len(item.parts)}

    def _part_event(self, kind: str, item: _Item, part: Json) -> Json:
        return self._event(kind, **self._part_fields(item), part=part)

    # --- tool calls ---

    def _tool_call(self, call: Json) -> list[Json]:
        position = call.get("index", 0)
        function: Json = call["function"] if isinstance(call.get("function"), dict) else {}
        item = self._calls.get(position)
        call_id = call.get("id")
        events: list[Json] = []
        # Some OpenAI-compatible upstreams reuse index 0 for every call; a new id means a new call.
        if item is None or (isinstance(call_id, str) and call_id and call_id != item.call_id):
            tool = self._translation.tool(str(function.get("name") or ""))
            item = _Item(
                index=len(self._items),
                item_id=new_id("ctc" if tool.custom else "fc"),
                kind="call",
                tool=tool,
                call_id=call_id if isinstance(call_id, str) and call_id else new_id("call"),
            )
            self._calls[position] = item
            events += self._add(item, call_item(tool, item.call_id, "", item_id=item.item_id, done=False))
        fragment = function.get("arguments")
        if not isinstance(fragment, str) or not fragment:
            return events
        item.text += fragment
        # A fragment for a call already closed (an upstream interleaving parallel calls) still
        # reaches the terminal response's copy of the item; its events are over.
        if not item.done and item.tool is not None and not item.tool.custom:
            events.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item.item_id,
                    output_index=item.index,
                    delta=fragment,
                )
            )
        return events

    def _close_call(self, item: _Item) -> list[Json]:
        assert item.tool is not None  # noqa: S101 - set for every call item
        where = {"item_id": item.item_id, "output_index": item.index}
        if not item.tool.custom:
            return [self._event("response.function_call_arguments.done", **where, arguments=item.text)]
        # A custom tool's input arrives wrapped in JSON arguments: it is known whole only at the end.
        value = custom_input(item.text)
        return [
            self._event("response.custom_tool_call_input.delta", **where, delta=value),
            self._event("response.custom_tool_call_input.done", **where, input=value),
        ]


_DELTA = {
    "output_text": "response.output_text.delta",
    "refusal": "response.refusal.delta",
    "reasoning_text": "response.reasoning_text.delta",
}


def _part(kind: str, text: str) -> Json:
    if kind == "output_text":
        return output_text(text)
    if kind == "refusal":
        return {"type": "refusal", "refusal": text}
    return {"type": "reasoning_text", "text": text}
